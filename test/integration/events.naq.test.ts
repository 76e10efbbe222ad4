import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../src/model/event.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { until, startServer, stopAllServers } from '../support/harness.js';

const running: Naq<any>[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

describe('events from a running system', () => {
  it('records a job’s whole story in order, tails live, and counts what ran', async () => {
    const server = await startServer();
    let calls = 0;
    const naq = createNaq(
      { nats: { url: server.url }, roles: ['worker'], worker: { queues: ['ev'], concurrency: 4 }, events: { flushMs: 20 } },
      {
        logger: pino({ level: 'silent' }),
        handlers: {
          flaky: async () => {
            if (++calls === 1) throw new Error('first try fails');
            return 'ok';
          },
          fine: async () => 1,
          broken: async () => {
            throw new Error('always');
          },
        },
      },
    );
    running.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    const since = Date.now();
    const live = await naq.events.subscribe({ queue: 'ev' });
    const tailed: StoredEvent[] = [];
    void (async () => {
      for await (const e of live) tailed.push(e);
    })();

    const id = await naq.enqueue('flaky', null, { queue: 'ev', attempts: 2, backoff: { type: 'fixed', delay: 50 } });
    await naq.waitFor(id, { timeoutMs: 5000 });
    const others = await naq.enqueueBulk([
      { name: 'fine', data: null, opts: { queue: 'ev' } },
      { name: 'fine', data: null, opts: { queue: 'ev' } },
      { name: 'broken', data: null, opts: { queue: 'ev' } },
    ]);
    await Promise.allSettled(others.map((o) => naq.waitFor(o, { timeoutMs: 5000 })));
    await naq.events.flush();

    const story = await naq.events.history({ jobId: id });
    expect(story.map((e) => e.type)).toEqual(['job.enqueued', 'job.started', 'job.retrying', 'job.started', 'job.completed']);
    expect(story[2]!.data).toMatchObject({ attempt: 1, error: 'first try fails', delayMs: 50 });
    expect(story.every((e, i) => i === 0 || e.seq >= story[i - 1]!.seq)).toBe(true);

    await until(() => tailed.filter((e) => e.type === 'job.completed').length === 3);
    live.stop();
    expect(tailed.some((e) => e.type === 'job.dead' && e.jobId === others[2])).toBe(true);

    const stats = await naq.events.stats({ since });
    expect(stats.byType['job.enqueued']).toBe(4);
    expect(stats.byType['job.completed']).toBe(3);
    expect(stats.byType['job.failed']).toBe(1);
    expect(stats.byType['job.retrying']).toBe(1);
    expect(stats.failureRatio).toBeCloseTo(1 / 4, 5);
    expect(stats.durationMs.count).toBe(4);
    expect(stats.byQueue.ev).toBeGreaterThanOrEqual(12);
    const workerEvents = await naq.events.history({ types: ['worker.started'] });
    expect(workerEvents.map((e) => e.queue)).toEqual(['ev']);
  });
});
