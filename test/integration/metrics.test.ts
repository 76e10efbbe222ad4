/**
 * Prometheus metrics (issue 11): scraped during a run, the numbers move as jobs start, end,
 * retry and die, and queue depths, workers and the connection are read from the server.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { startNaq, stopNaqs } from '../support/naqs.js';
import { createNaq } from '../../src/naq.js';
import { pino } from 'pino';
import { serveMetrics } from '../../src/metrics/server.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

/** One sample's value from the text exposition, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v) && Object.keys(have).length === Object.keys(labels).length) return Number(m[4]);
  }
  return undefined;
}

describe('metrics', () => {
  it('count and time jobs by queue, name and outcome; read depths, workers and the connection when scraped', async () => {
    const server = await startServer();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const naq = createNaq(
      { nats: { url: server.url }, roles: ['worker'], worker: { queues: ['default'], concurrency: 4 } },
      {
        logger: pino({ level: 'silent' }),
        metrics: true,
        handlers: {
          ok: async () => 'ok',
          flaky: async (_d: unknown, ctx: { attempt: number }) => {
            if (ctx.attempt < 2) throw new Error('once');
            return 'ok';
          },
          bad: async () => {
            throw new Error('never');
          },
          held: async () => gate,
        },
      },
    );
    await naq.start({ timeoutMs: 10_000 });
    const http = await serveMetrics(naq.metrics!, 0);
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${http.port}/metrics`);
      expect(res.headers.get('content-type')).toContain('text/plain');
      return res.text();
    };
    try {
      const before = await scrape();
      expect(sample(before, 'naq_connection_up')).toBe(1);
      expect(sample(before, 'naq_jobs_ended_total', { queue: 'default', name: 'ok', outcome: 'completed' })).toBeUndefined();

      for (let i = 0; i < 3; i++) await naq.waitFor(await naq.enqueue('ok', null), { timeoutMs: 5000 });
      await naq.waitFor(await naq.enqueue('flaky', null, { attempts: 2, backoff: { type: 'fixed', delay: 10 } }), { timeoutMs: 5000 });
      await naq.waitFor(await naq.enqueue('bad', null, { attempts: 1 }), { timeoutMs: 5000 }).catch(() => undefined);
      const held = await naq.enqueue('held', null);
      const parked = await naq.enqueue('ok', null, { queue: 'other' });
      await until(async () => (await naq.queueStats('default')).inFlight === 1);

      const during = await scrape();
      expect(sample(during, 'naq_jobs_ended_total', { queue: 'default', name: 'ok', outcome: 'completed' })).toBe(3);
      expect(sample(during, 'naq_jobs_ended_total', { queue: 'default', name: 'flaky', outcome: 'retried' })).toBe(1);
      expect(sample(during, 'naq_jobs_ended_total', { queue: 'default', name: 'flaky', outcome: 'completed' })).toBe(1);
      expect(sample(during, 'naq_jobs_ended_total', { queue: 'default', name: 'bad', outcome: 'failed' })).toBe(1);
      expect(sample(during, 'naq_job_duration_seconds_count', { queue: 'default', name: 'ok' })).toBe(3);
      expect(sample(during, 'naq_job_wait_seconds_count', { queue: 'default' })).toBe(7);
      expect(sample(during, 'naq_jobs', { queue: 'default', state: 'in_flight' })).toBe(1);
      expect(sample(during, 'naq_jobs', { queue: 'default', state: 'dead' })).toBe(1);
      expect(sample(during, 'naq_jobs', { queue: 'other', state: 'pending' })).toBe(1);
      expect(sample(during, 'naq_workers', { queue: 'default' })).toBe(1);
      expect(sample(during, 'naq_queue_paused', { queue: 'default' })).toBe(0);
      await naq.pauseQueue('other');
      expect(sample(await scrape(), 'naq_queue_paused', { queue: 'other' })).toBe(1);

      release();
      await naq.waitFor(held, { timeoutMs: 5000 });
      expect(sample(await scrape(), 'naq_jobs', { queue: 'default', state: 'in_flight' })).toBe(0);
      expect(parked).toBeTruthy();
      expect((await fetch(`http://127.0.0.1:${http.port}/other`)).status).toBe(404);
    } finally {
      await http.close();
      await naq.stop();
    }
  });

  it('is off unless asked for: no metrics object, nothing counted', async () => {
    const server = await startServer();
    const naq = await startNaq(server);
    expect(naq.metrics).toBeUndefined();
  });
});
