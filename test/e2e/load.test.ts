import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createNaq, type Naq } from '../../src/naq.js';
import { cleanEnv, startServer, stopAllServers } from '../support/harness.js';
import { CLI, fixture } from '../support/paths.js';
import { killSpawned, spawned } from '../support/processes.js';

/** The V8 flags bin/naq.js runs with: what a deployed naq process uses. */
const NAQ_NODE_FLAGS = ['--max-semi-space-size=8'];
const MiB = 1024 * 1024;
const clients: Naq[] = [];

afterEach(async () => {
  killSpawned();
  await Promise.all(clients.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

function peakRss(pid: number): number {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(hwm?.[1] ?? 0) * 1024;
}

describe('load: memory stays bounded', () => {
  it('enqueueBulk of 100k jobs stays under 200 MB in the producer; a worker drains the 100k backlog under 150 MB', async () => {
    const server = await startServer();
    const N = 100_000;
    const producer = spawned(process.execPath, [...NAQ_NODE_FLAGS, fixture('produce.mjs'), server.url, String(N)], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    producer.stdout!.on('data', (d) => (out += d));
    await new Promise((r) => producer.on('exit', r));
    const produced = JSON.parse(out.trim()) as { enqueued: number; peakRssBytes: number };
    expect(produced.enqueued).toBe(N);
    expect(produced.peakRssBytes).toBeGreaterThan(0);
    expect(produced.peakRssBytes).toBeLessThan(200 * MiB);

    const naq = createNaq({ nats: { url: server.url } }, { logger: pino({ level: 'silent' }) });
    clients.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    expect((await naq.queueStats('load')).pending).toBe(N);

    const worker = spawned(
      process.execPath,
      [...NAQ_NODE_FLAGS, CLI, 'worker', '--queue', 'load', '--concurrency', '100', '--handlers', fixture('noop-handlers.mjs'), '--nats-url', server.url],
      { env: cleanEnv(), stdio: ['ignore', 'ignore', 'ignore'] },
    );
    const end = Date.now() + 120_000;
    for (;;) {
      const s = await naq.queueStats('load');
      if (s.pending === 0 && s.inFlight === 0) break;
      if (Date.now() > end) throw new Error(`backlog not drained: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const rss = peakRss(worker.pid!);
    worker.kill('SIGTERM');
    expect(rss).toBeLessThan(150 * MiB);
    const sample = await naq.getJob((await naq.events.history({ queue: 'load', types: ['job.completed'], limit: 1 }))[0]!.jobId!);
    expect(sample?.status).toBe('completed');
  }, 180_000);
});
