/**
 * naq/testing's time, where the test mode meets real time: a handler on real I/O with a
 * timeout of its own is not timed out by the manual clock's jump, and a test that fakes the
 * global timers (vi.useFakeTimers) still drives createTestNaq.
 */
import { setTimeout as realSleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { createTestNaq, ManualClock } from '../../src/testing/index.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('createTestNaq and real time', () => {
  it('a handler waiting 20 ms on real I/O, with a 5 s timeout of its own, completes: the clock does not jump to its timeout', async () => {
    const naq = createTestNaq({
      handlers: {
        fetchish: async (_d: unknown, ctx: JobContext) => {
          await realSleep(20);
          return { aborted: ctx.signal.aborted };
        },
      },
    });
    const id = await naq.enqueue('fetchish', null, { timeoutMs: 5000 });
    expect(await naq.waitFor(id)).toEqual({ aborted: false });
    // A handler that never ends still times out, at its virtual time.
    const stuck = createTestNaq({ clock: new ManualClock(0), handlers: { stuck: (_d: unknown, ctx: JobContext) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))) } });
    const s = await stuck.enqueue('stuck', null, { timeoutMs: 5000 });
    await expect(stuck.waitFor(s)).rejects.toThrow(/timed out after 5000 ms/);
    expect((await stuck.getJob(s))!.finishedAt).toBe(5000);
  });

  it('works while the test fakes the global timers', async () => {
    vi.useFakeTimers();
    const naq = createTestNaq({ handlers: { add: async (d: { a: number; b: number }) => d.a + d.b } });
    const id = await naq.enqueue('add', { a: 1, b: 2 }, { attempts: 2, backoff: { type: 'fixed', delay: 60_000 } });
    expect(await naq.waitFor(id)).toBe(3);
    const later = await naq.enqueueIn(3_600_000, 'add', { a: 2, b: 2 });
    expect(await naq.waitFor(later, { timeoutMs: 4_000_000 })).toBe(4);
  });
});
