/**
 * Rate limits (issue 12): a queue's limit holds across all its workers, over any window; it is
 * followed live; a handler told to slow down holds the queue and loses no attempt.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RateLimitedError } from '../../src/actors/worker/handler.js';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';
import { busiestWindow } from '../support/windows.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

describe('queue rate limits', () => {
  it('5 per second across two workers: no one-second window holds more than 5 starts, and the backlog keeps moving', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await ops.setQueueLimit('default', { max: 5, durationMs: 1000 });
    const starts: number[] = [];
    const handlers = { tick: async () => void starts.push(Date.now()) };
    await Promise.all([worker(server, handlers, { concurrency: 4 }), worker(server, handlers, { concurrency: 4 })]);
    const ids = await ops.enqueueBulk(Array.from({ length: 20 }, (_, i) => ({ name: 'tick' as const, data: { i } })));
    for (const id of ids) await ops.waitFor(id, { timeoutMs: 20_000 });
    expect(starts).toHaveLength(20);
    expect(busiestWindow(starts, 1000)).toBeLessThanOrEqual(5);
    // 20 starts at 5 per second: at least three windows after the first start.
    const span = Math.max(...starts) - Math.min(...starts);
    expect(span).toBeGreaterThanOrEqual(3000);
    expect(span).toBeLessThan(8000);
    expect(await ops.queueStats('default')).toMatchObject({ limit: { max: 5, durationMs: 1000 } });
  });

  it('is followed live: a limit set while workers run slows them; cleared, the rest start at once', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const starts: number[] = [];
    await worker(server, { tick: async () => void starts.push(Date.now()) }, { concurrency: 10 });
    await ops.setQueueLimit('default', { max: 2, durationMs: 60_000 });
    // The worker hears of it through its watch of the queue's settings.
    await new Promise((r) => setTimeout(r, 300));
    const ids = await ops.enqueueBulk(Array.from({ length: 6 }, () => ({ name: 'tick' as const, data: null })));
    await until(() => starts.length === 2);
    await new Promise((r) => setTimeout(r, 500));
    expect(starts).toHaveLength(2);
    await ops.setQueueLimit('default', null);
    for (const id of ids) await ops.waitFor(id, { timeoutMs: 10_000 });
    expect(starts).toHaveLength(6);
    expect((await ops.queueStats('default')).limit).toBeNull();
  });

  it('ctx.rateLimit(ms) and RateLimitedError hold the queue on every worker; the job comes back without using an attempt', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const starts: Array<[string, number]> = [];
    let told = 0;
    const handlers = {
      upstream: async (_d: unknown, ctx: { attempt: number; rateLimit(ms: number): never }) => {
        starts.push(['upstream', Date.now()]);
        if (told++ === 0) ctx.rateLimit(1200);
        if (told === 2) throw new RateLimitedError(300);
        return ctx.attempt;
      },
      other: async () => void starts.push(['other', Date.now()]),
    };
    await Promise.all([worker(server, handlers, { concurrency: 4 }), worker(server, handlers, { concurrency: 4 })]);
    // One attempt only: a deferral must not use it (or the job would be dead-lettered).
    const limited = await ops.enqueue('upstream', null, { attempts: 1 });
    // The hold is written to the queue's settings, which every worker watches.
    let heldUntil = 0;
    await until(async () => (heldUntil = (await ops.queueStats('default')).heldUntil ?? 0) > 0);
    const later = await Promise.all(Array.from({ length: 4 }, () => ops.enqueue('other', null)));
    expect(await ops.waitFor(limited, { timeoutMs: 15_000 })).toBe(1);
    for (const id of later) await ops.waitFor(id, { timeoutMs: 15_000 });
    // No start on either worker while the queue was held.
    const others = starts.filter(([n]) => n === 'other').map(([, t]) => t);
    expect(Math.min(...others)).toBeGreaterThanOrEqual(heldUntil);
    const record = (await ops.getJob(limited))!;
    expect(record).toMatchObject({ status: 'completed', result: 1, deferred: 2 });
    expect(record.attempts.map((a) => a.n)).toEqual([1]);
    await expect
      .poll(async () => (await ops.events.history({ jobId: limited })).filter((e) => e.type === 'job.deferred').map((e) => e.data?.delayMs), { timeout: 5000 })
      .toEqual([1200, 300]);
  });

  it('refuses a limit that is not whole numbers >= 1, naming the field', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await expect(ops.setQueueLimit('default', { max: 0, durationMs: 1000 })).rejects.toThrow(/limit\.max/);
    await expect(ops.setQueueLimit('default', { max: 5, durationMs: 1.5 })).rejects.toThrow(/limit\.durationMs/);
    await expect(ops.setQueueLimit('a b', { max: 5, durationMs: 1000 })).rejects.toThrow(/queue/);
  });
});
