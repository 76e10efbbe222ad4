/**
 * naq/testing's createTestNaq, through its public API only: each job semantic it promises
 * (retries and backoff at their virtual times, timeouts, cancel, dependencies, delayed jobs,
 * dead letters, unknown handlers, middleware, validation, priorities) checked with the manual
 * clock — no server, no real sleeps.
 */
import { describe, expect, it } from 'vitest';
import { JobCancelledError, JobTimeoutError, type JobContext } from '../../src/actors/worker/handler.js';
import { JobFailedError } from '../../src/actors/jobs/reads.js';
import { InvalidArgumentError, NaqError } from '../../src/core/errors.js';
import type { BackoffOptions } from '../../src/model/job.js';
import { createTestNaq, ManualClock, type TestNaq } from '../../src/testing/index.js';

const T0 = Date.UTC(2030, 0, 1);

/** A handler that never settles by itself: only its signal (timeout, cancel) ends it. */
const untilAborted = (_data: unknown, ctx: JobContext) =>
  new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));

function failing(times: number, starts: number[], clock: ManualClock) {
  return async (_data: unknown, ctx: JobContext) => {
    starts.push(clock.now() - T0);
    if (ctx.attempt <= times) throw Object.assign(new Error(`boom ${ctx.attempt}`), { code: 'E_BOOM' });
    return { attempt: ctx.attempt };
  };
}

describe('createTestNaq (no server, manual clock)', () => {
  it('retries with exponential backoff at the right virtual times: nothing early, each retry when its delay is over', async () => {
    const clock = new ManualClock(T0);
    const starts: number[] = [];
    const naq = createTestNaq({ handlers: { flaky: failing(3, starts, clock) }, clock });
    const id = await naq.enqueue('flaky', null, { attempts: 4, backoff: { type: 'exponential', delay: 1000 } });
    await naq.runUntilIdle();
    expect(starts).toEqual([0]);
    expect(await naq.getJob(id)).toMatchObject({ status: 'retrying', attempts: [{ n: 1, error: { message: 'boom 1', code: 'E_BOOM' } }] });
    await naq.advance(999);
    expect(starts).toEqual([0]);
    await naq.advance(1);
    expect(starts).toEqual([0, 1000]);
    // 2 s after the second attempt, then 4 s after the third.
    await naq.advance(1999);
    expect(starts).toEqual([0, 1000]);
    await naq.advance(1 + 4000);
    expect(starts).toEqual([0, 1000, 3000, 7000]);
    const record = await naq.getJob(id);
    expect(record).toMatchObject({ status: 'completed', result: { attempt: 4 }, maxAttempts: 4 });
    expect(record!.attempts.map((a) => a.n)).toEqual([1, 2, 3, 4]);
    expect(naq.events.filter((e) => e.type === 'job.retrying').map((e) => e.data?.delayMs)).toEqual([1000, 2000, 4000]);
  });

  it.each<[string, BackoffOptions, number[]]>([
    ['fixed', { type: 'fixed', delay: 500 }, [0, 500, 1000]],
    ['list', { type: 'list', delays: [100, 2000] }, [0, 100, 2100]],
  ])('%s backoff: drain() moves the clock from one retry to the next', async (_name, backoff, expected) => {
    const clock = new ManualClock(T0);
    const starts: number[] = [];
    const naq = createTestNaq({ handlers: { flaky: failing(2, starts, clock) }, clock });
    const id = await naq.enqueue('flaky', null, { attempts: 3, backoff });
    await naq.drain();
    expect(starts).toEqual(expected);
    expect(await naq.getJob(id)).toMatchObject({ status: 'completed' });
  });

  it('jitter shortens each wait by up to its fraction, and the retry starts exactly when the recorded delay is over', async () => {
    const clock = new ManualClock(T0);
    const starts: number[] = [];
    const naq = createTestNaq({ handlers: { flaky: failing(3, starts, clock) }, clock });
    await naq.enqueue('flaky', null, { attempts: 4, backoff: { type: 'fixed', delay: 10_000, jitter: 0.5 } });
    await naq.drain();
    const delays = naq.events.filter((e) => e.type === 'job.retrying').map((e) => e.data?.delayMs as number);
    expect(delays).toHaveLength(3);
    for (const d of delays) expect(d).toBeGreaterThanOrEqual(5000), expect(d).toBeLessThanOrEqual(10_000);
    expect(starts.slice(1).map((s, i) => s - starts[i]!)).toEqual(delays);
  });

  it('waitFor returns the result, moving the clock through the backoff waits', async () => {
    const clock = new ManualClock(T0);
    const naq = createTestNaq({ handlers: { flaky: failing(2, [], clock) }, clock });
    const id = await naq.enqueue('flaky', null, { attempts: 3, backoff: { type: 'fixed', delay: 10_000 } });
    await expect(naq.waitFor(id, { timeoutMs: 60_000 })).resolves.toEqual({ attempt: 3 });
    expect(clock.now() - T0).toBe(20_000);
  });

  it('a timeout aborts the signal with JobTimeoutError when the clock reaches timeoutMs, and fails the attempt', async () => {
    let reason: unknown;
    const naq = createTestNaq({
      handlers: {
        slow: (_d: unknown, ctx: JobContext) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              reason = ctx.signal.reason;
              reject(ctx.signal.reason);
            }),
          ),
      },
    });
    const id = await naq.enqueue('slow', null, { timeoutMs: 5000, attempts: 2, backoff: { type: 'fixed', delay: 1000 } });
    await naq.advance(4999);
    expect(reason).toBeUndefined();
    expect((await naq.getJob(id))!.status).toBe('active');
    await naq.advance(1);
    expect(reason).toBeInstanceOf(JobTimeoutError);
    expect(await naq.getJob(id)).toMatchObject({ status: 'retrying', attempts: [{ n: 1, error: { code: 'JOB_TIMEOUT', message: 'job timed out after 5000 ms' } }] });
    // The second attempt times out too: the job is dead.
    await naq.drain();
    expect(await naq.getJob(id)).toMatchObject({ status: 'failed', error: { code: 'JOB_TIMEOUT' }, deadSeq: 1 });
    expect(naq.deadLetters).toHaveLength(1);
  });

  it('cancel while running: the signal aborts with JobCancelledError, the record says cancelled, waitFor throws JOB_CANCELLED', async () => {
    let reason: unknown;
    const naq = createTestNaq({
      handlers: {
        work: (_d: unknown, ctx: JobContext) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              reason = ctx.signal.reason;
              reject(ctx.signal.reason);
            }),
          ),
      },
    });
    const id = await naq.enqueue('work', null, { attempts: 3 });
    await naq.runUntilIdle();
    expect(naq.events.map((e) => e.type)).toEqual(['job.enqueued', 'job.started']);
    expect(await naq.cancel(id)).toEqual({ id, status: 'cancelled' });
    await naq.runUntilIdle();
    expect(reason).toBeInstanceOf(JobCancelledError);
    expect(await naq.getJob(id)).toMatchObject({ status: 'cancelled' });
    const error = await naq.waitFor(id).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFailedError);
    expect((error as JobFailedError).code).toBe('JOB_CANCELLED');
    // Cancelled, not retried: no second start.
    await naq.drain();
    expect(naq.events.filter((e) => e.type === 'job.started')).toHaveLength(1);
  });

  it('cancel of a pending job and of a delayed job: neither runs', async () => {
    const ran: string[] = [];
    const naq = createTestNaq({
      handlers: { block: untilAborted, work: async (d: string) => void ran.push(d) },
      config: { worker: { concurrency: 1 } },
    });
    const blocker = await naq.enqueue('block', null);
    const pending = await naq.enqueue('work', 'pending');
    const delayed = await naq.enqueueIn(1000, 'work', 'delayed');
    await naq.runUntilIdle();
    expect(await naq.getJob(pending)).toMatchObject({ status: 'pending' });
    expect(await naq.cancel(pending)).toEqual({ id: pending, status: 'cancelled' });
    expect(await naq.cancel(delayed)).toEqual({ id: delayed, status: 'cancelled' });
    await naq.cancel(blocker);
    await naq.drain();
    expect(ran).toEqual([]);
    expect(await naq.getJob(delayed)).toMatchObject({ status: 'cancelled' });
    await expect(naq.cancel('never-enqueued')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('dependsOn: the dependent waits until every dependency completed, then runs', async () => {
    const order: string[] = [];
    const clock = new ManualClock(T0);
    const naq = createTestNaq({
      clock,
      handlers: {
        step: async (name: string, ctx: JobContext) => {
          if (name === 'b' && ctx.attempt === 1) throw new Error('b fails once');
          order.push(name);
          return name;
        },
      },
    });
    await naq.enqueue('step', 'a', { jobId: 'a' });
    await naq.enqueue('step', 'b', { jobId: 'b', attempts: 2, backoff: { type: 'fixed', delay: 5000 } });
    const c = await naq.enqueue('step', 'c', { dependsOn: ['a', 'b'] });
    await naq.runUntilIdle();
    expect(order).toEqual(['a']);
    expect(await naq.getJob(c)).toMatchObject({ status: 'waiting', dependsOn: ['a', 'b'] });
    await naq.advance(5000);
    expect(order).toEqual(['a', 'b', 'c']);
    expect(await naq.getJob(c)).toMatchObject({ status: 'completed', result: 'c' });
  });

  it('dependsOn: a failed dependency fails the dependent for good, naming it; the dependent never runs; a cycle is refused', async () => {
    const ran: string[] = [];
    const naq = createTestNaq({
      handlers: {
        bad: async () => {
          throw new Error('no');
        },
        later: async () => void ran.push('later'),
      },
    });
    await naq.enqueue('bad', null, { jobId: 'a' });
    const c = await naq.enqueue('later', null, { dependsOn: ['a'], attempts: 3 });
    await naq.drain();
    expect(ran).toEqual([]);
    expect(await naq.getJob(c)).toMatchObject({ status: 'failed', error: { code: 'DEPENDENCY_FAILED', message: 'dependency a failed' } });
    expect(naq.deadLetters.map((d) => d.jobId)).toEqual(['a', c]);
    await naq.enqueue('later', null, { jobId: 'x', dependsOn: ['y'] });
    await expect(naq.enqueue('later', null, { jobId: 'y', dependsOn: ['x'] })).rejects.toThrow('job y would wait for itself: dependency cycle y → x → y');
  });

  it('flows: a parent runs after its children (one retried on the clock) and reads their results; onFailure fail / ignore / continue', async () => {
    const clock = new ManualClock(T0);
    const order: string[] = [];
    const naq = createTestNaq({
      clock,
      handlers: {
        part: async (n: number, ctx: JobContext) => {
          if (n === 2 && ctx.attempt === 1) throw new Error('flaky');
          if (n < 0) throw new Error(`bad ${n}`);
          order.push(`part ${n}`);
          return n * 10;
        },
        whole: async (_d: unknown, ctx: JobContext) => {
          order.push('whole');
          return { results: await ctx.childResults(), failed: Object.keys(await ctx.childFailures()) };
        },
      },
    });
    const flow = await naq.enqueueFlow({ name: 'whole', children: [{ name: 'part', data: 1, opts: { jobId: 'p1' } }, { name: 'part', data: 2, opts: { jobId: 'p2', attempts: 2, backoff: { type: 'fixed', delay: 1000 } } }] });
    await naq.runUntilIdle();
    expect(order).toEqual(['part 1']);
    expect(await naq.getJob(flow.id)).toMatchObject({ status: 'waiting' });
    await naq.advance(1000);
    expect(order).toEqual(['part 1', 'part 2', 'whole']);
    expect(await naq.waitFor(flow.id)).toEqual({ results: { p1: 10, p2: 20 }, failed: [] });
    expect((await naq.getFlow(flow.id)).children!.map((c) => [c.id, c.state])).toEqual([['p1', 'completed'], ['p2', 'completed']]);

    const failing = await naq.enqueueFlow({ name: 'whole', children: [{ name: 'part', data: -1, opts: { jobId: 'n1' } }, { name: 'part', data: 3 }] });
    await naq.drain();
    expect(await naq.getJob(failing.id)).toMatchObject({ status: 'failed', error: { code: 'CHILD_FAILED', message: 'child n1 failed: bad -1' } });
    const lenient = await naq.enqueueFlow({ name: 'whole', children: [{ name: 'part', data: -2, onFailure: 'ignore' }, { name: 'part', data: -3, opts: { jobId: 'n3' }, onFailure: 'continue' }, { name: 'part', data: 4, opts: { jobId: 'p4' } }] });
    expect(await naq.waitFor(lenient.id)).toEqual({ results: { p4: 40 }, failed: ['n3'] });
  });

  it('batches: the completion job runs once with the counts; a job cancelled while running counts as failed; getBatch shows the progress', async () => {
    const runs: unknown[] = [];
    const naq = createTestNaq({
      handlers: {
        item: async (n: number) => n,
        hang: untilAborted,
        done: async (_d: unknown, ctx: JobContext) => void runs.push(ctx.batch),
      },
    });
    const id = await naq.enqueueBatch([{ name: 'item', data: 1 }, { name: 'hang', opts: { jobId: 'stuck' } }], { onComplete: { name: 'done' } });
    await naq.runUntilIdle();
    expect(await naq.getBatch(id)).toMatchObject({ state: 'running', total: 2, completed: 1, failed: 0, pending: 1 });
    await naq.cancel('stuck');
    await naq.drain();
    expect(runs).toEqual([{ id, total: 2, completed: 1, failed: 1, failedIds: ['stuck'] }]);
    expect(await naq.getBatch(id)).toMatchObject({ state: 'completed', completed: 1, failed: 1, pending: 0 });
    await expect(naq.enqueueBatch([{ name: 'item', data: 3 }], { batchId: id, onComplete: { name: 'done' } })).rejects.toThrow(/already the parent/);
  });

  it('enqueueIn runs only once the clock reaches its time; enqueueAt likewise; getJob says delayed until then', async () => {
    const clock = new ManualClock(T0);
    const ran: number[] = [];
    const naq = createTestNaq({ clock, handlers: { tick: async () => void ran.push(clock.now() - T0) } });
    const id = await naq.enqueueIn(60_000, 'tick', null);
    await naq.enqueueAt(new Date(T0 + 90_000), 'tick', null);
    await naq.runUntilIdle();
    expect(await naq.getJob(id)).toMatchObject({ status: 'delayed' });
    await naq.advance(59_999);
    expect(ran).toEqual([]);
    await naq.advance(1);
    expect(ran).toEqual([60_000]);
    expect(await naq.getJob(id)).toMatchObject({ status: 'completed' });
    await naq.advance(30_000);
    expect(ran).toEqual([60_000, 90_000]);
    // A time already past: due now, run without moving the clock.
    await naq.enqueueAt(T0, 'tick', null);
    await naq.runUntilIdle();
    expect(ran).toEqual([60_000, 90_000, 90_000]);
  });

  it('dead letter after the last attempt: getJob shows failed with the error and every attempt; waitFor throws JobFailedError', async () => {
    const naq = createTestNaq({
      handlers: {
        bad: async () => {
          throw Object.assign(new Error('upstream down'), { code: 'E_UPSTREAM' });
        },
      },
    });
    const id = await naq.enqueue('bad', { n: 1 }, { attempts: 3, backoff: { type: 'fixed', delay: 100 } });
    const error = await naq.waitFor(id).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFailedError);
    expect((error as JobFailedError).error).toMatchObject({ code: 'E_UPSTREAM', message: 'upstream down' });
    const record = await naq.getJob(id);
    expect(record).toMatchObject({ status: 'failed', deadSeq: 1, error: { code: 'E_UPSTREAM' } });
    expect(record!.attempts.map((a) => a.error?.message)).toEqual(['upstream down', 'upstream down', 'upstream down']);
    expect(naq.deadLetters).toEqual([expect.objectContaining({ jobId: id, reason: 'failed after 3 attempts: upstream down', job: expect.objectContaining({ data: { n: 1 } }) })]);
    expect(naq.events.map((e) => e.type).slice(-2)).toEqual(['job.failed', 'job.dead']);
  });

  it('unknown handler: dead-lettered at once with UNKNOWN_HANDLER, whatever attempts remain', async () => {
    const naq = createTestNaq({ handlers: { known: async () => 1 } }) as TestNaq;
    const id = await naq.enqueue('nope', null, { attempts: 5 });
    await naq.drain();
    expect(await naq.getJob(id)).toMatchObject({ status: 'failed', error: { code: 'UNKNOWN_HANDLER', message: 'no handler named nope on this worker' } });
    expect(naq.events.filter((e) => e.type === 'job.started')).toHaveLength(0);
    expect(naq.deadLetters).toHaveLength(1);
  });

  it('middleware runs in order around the handler (given, then use()); what it returns is the result, what it throws fails the attempt', async () => {
    const calls: string[] = [];
    const naq = createTestNaq({
      handlers: {
        work: async (d: number) => {
          calls.push('handler');
          if (d < 0) throw new Error('negative');
          return d * 2;
        },
      },
      middleware: [
        async (job, _ctx, next) => {
          calls.push(`outer in ${job.name}#${job.attempt}`);
          const result = await next();
          calls.push('outer out');
          return { wrapped: result };
        },
      ],
    });
    naq.use(async (job, _ctx, next) => {
      calls.push('inner in');
      if (job.data === 0) throw new Error('refused by middleware');
      const result = await next();
      calls.push('inner out');
      return result;
    });
    const id = await naq.enqueue('work', 21);
    expect(await naq.waitFor(id)).toEqual({ wrapped: 42 });
    expect(calls).toEqual(['outer in work#1', 'inner in', 'handler', 'inner out', 'outer out']);
    const refused = await naq.enqueue('work', 0);
    await expect(naq.waitFor(refused)).rejects.toThrow('refused by middleware');
  });

  it('job options are validated by the real buildJob: a bad option throws what production throws, and nothing is enqueued', async () => {
    const naq = createTestNaq({ handlers: { work: async () => 1 } });
    await expect(naq.enqueue('work', null, { attempts: 0 })).rejects.toThrow(new InvalidArgumentError('attempts must be an integer >= 1, got 0'));
    await expect(naq.enqueue('work', null, { backoff: { type: 'fixed', delay: -1 } })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(naq.enqueue('work', new Map() as never)).rejects.toThrow(/job data cannot be sent as JSON/);
    await expect(naq.enqueue('work', null, { queue: 'bad queue' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(naq.enqueueIn(-5, 'work', null)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(naq.enqueue('work', null, { dedupe: { key: 'k', ttlMs: 1000 } })).rejects.toThrow(/does not support dedupe/);
    expect(naq.events).toEqual([]);
  });

  it('priorities: the most urgent due job starts first; a chosen jobId enqueued twice while pending runs once', async () => {
    const order: string[] = [];
    const naq = createTestNaq({ handlers: { work: async (d: string) => void order.push(d) }, config: { worker: { concurrency: 1 } } });
    await naq.enqueue('work', 'low', { priority: 10 });
    await naq.enqueue('work', 'normal');
    await naq.enqueue('work', 'urgent', { priority: 1 });
    await naq.enqueue('work', 'once', { jobId: 'same', priority: 10 });
    await naq.enqueue('work', 'twice', { jobId: 'same', priority: 10 });
    await naq.drain();
    expect(order).toEqual(['urgent', 'normal', 'low', 'once']);
  });

  it('ctx.rateLimit holds the queue: no job of it starts until the wait is over, and the attempt is not used', async () => {
    const clock = new ManualClock(T0);
    const starts: Array<[string, number, number]> = [];
    let limited = false;
    const naq = createTestNaq({
      clock,
      handlers: {
        call: async (d: string, ctx: JobContext) => {
          starts.push([d, ctx.attempt, clock.now() - T0]);
          if (!limited) {
            limited = true;
            ctx.rateLimit(2000);
          }
          return d;
        },
      },
      config: { worker: { concurrency: 1 } },
    });
    await naq.enqueue('call', 'first');
    await naq.enqueue('call', 'second');
    await naq.drain();
    expect(starts).toEqual([
      ['first', 1, 0],
      ['first', 1, 2000],
      ['second', 1, 2000],
    ]);
  });

  it('waitFor gives up with TIMEOUT after timeoutMs of virtual time when the job cannot finish', async () => {
    const clock = new ManualClock(T0);
    const naq = createTestNaq({ clock, handlers: { work: async () => 1 } });
    const id = await naq.enqueue('work', null, { dependsOn: ['never-enqueued'] });
    const error = await naq.waitFor(id, { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NaqError);
    expect((error as NaqError).code).toBe('TIMEOUT');
    expect(clock.now() - T0).toBe(1000);
    await expect(naq.waitFor('unknown-id')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('a handler sleeping on the shared clock: drain moves time to its timer', async () => {
    const clock = new ManualClock(T0);
    const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
    const naq = createTestNaq({
      clock,
      handlers: {
        poll: async () => {
          await sleep(30_000);
          return clock.now() - T0;
        },
      },
    });
    const id = await naq.enqueue('poll', null);
    await naq.drain();
    expect(await naq.getJob(id)).toMatchObject({ status: 'completed', result: 30_000 });
  });

  it('a handler waiting on real I/O: waitFor gives it real time rather than jumping the clock past it', async () => {
    const clock = new ManualClock(T0);
    const naq = createTestNaq({
      clock,
      handlers: {
        io: async () => {
          await new Promise((r) => setTimeout(r, 20));
          return 'read';
        },
      },
    });
    // Something due much later: no reason to jump to it while the handler reads.
    await naq.enqueueIn(3_600_000, 'io', null);
    const id = await naq.enqueue('io', null);
    await expect(naq.waitFor(id, { timeoutMs: 5000 })).resolves.toBe('read');
    expect(clock.now()).toBe(T0);
  });

  it('stop() aborts running jobs; enqueue afterwards is refused', async () => {
    let reason: unknown;
    const naq = createTestNaq({
      handlers: {
        work: (_d: unknown, ctx: JobContext) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              reason = ctx.signal.reason;
              reject(ctx.signal.reason);
            }),
          ),
      },
    });
    await naq.enqueue('work', null);
    await naq.runUntilIdle();
    await naq.stop();
    expect(reason).toMatchObject({ code: 'DRAINED' });
    await expect(naq.enqueue('work', null)).rejects.toMatchObject({ code: 'NOT_CONNECTED' });
  });
});

describe('createTestNaq (real clock)', () => {
  it('runs retries on real time; advance() is refused', async () => {
    const naq = createTestNaq({ clock: 'real', handlers: { flaky: failing(1, [], new ManualClock(T0)) } });
    const started = Date.now();
    const id = await naq.enqueue('flaky', null, { attempts: 2, backoff: { type: 'fixed', delay: 50 } });
    await expect(naq.waitFor(id, { timeoutMs: 5000 })).resolves.toEqual({ attempt: 2 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    await expect(naq.advance(10)).rejects.toBeInstanceOf(InvalidArgumentError);
    await naq.stop();
  });
});
