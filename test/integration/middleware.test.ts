/**
 * Middleware on a running worker (issue 13): `use()` wraps every handler; a middleware that
 * throws fails the attempt like a handler error (retried, then recorded with its error).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { startServer, stopAllServers } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

describe('middleware on a worker', () => {
  it('wraps every job in order; what it returns is the result; a throw fails the attempt and the retry runs it again', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const trace: string[] = [];
    const w = await worker(server, { add: async (d: { a: number; b: number }) => d.a + d.b }, { concurrency: 2 });
    w.use(async (job, ctx: JobContext, next) => {
      trace.push(`start ${job.name} ${job.queue} #${ctx.attempt}`);
      try {
        return { sum: await next() };
      } finally {
        trace.push(`end ${job.id}`);
      }
    }).use(async (job, _ctx, next) => {
      // Authorization: the first attempt of a job whose data says so is refused.
      if ((job.data as { deny?: boolean }).deny && job.attempt === 1) throw new Error('refused by policy');
      return next();
    });
    const ok = await ops.enqueue('add', { a: 1, b: 2 });
    expect(await ops.waitFor(ok, { timeoutMs: 10_000 })).toEqual({ sum: 3 });
    const denied = await ops.enqueue('add', { a: 2, b: 2, deny: true }, { attempts: 2 });
    expect(await ops.waitFor(denied, { timeoutMs: 10_000 })).toEqual({ sum: 4 });
    const record = (await ops.getJob(denied))!;
    expect(record.attempts.map((a) => [a.n, a.error?.message])).toEqual([[1, 'refused by policy'], [2, undefined]]);
    expect(trace).toEqual([`start add default #1`, `end ${ok}`, 'start add default #1', `end ${denied}`, 'start add default #2', `end ${denied}`]);
  });
});
