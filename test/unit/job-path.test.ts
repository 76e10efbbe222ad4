/**
 * The job path without a server: deliveries, records, dead letters and the clock are fakes
 * (the test doubles of JobIO, Delivery and Clock in src/testing/), so each step is checked
 * exactly — what is written, in which order, and what is acked, NAKed (with which delay) or
 * dead-lettered.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RateLimitedError, type Handlers } from '../../src/actors/worker/handler.js';
import { JobPath, type JobIO } from '../../src/actors/worker/job-path.js';
import type { BackoffOptions, JobMessage } from '../../src/model/job.js';
import { ManualClock, settle } from '../../src/testing/clock.js';
import { fakeDelivery, memoryIO } from '../../src/testing/memory-io.js';

/** A delivery of `job` (a message with test defaults, or raw bytes) that remembers what was done with it. */
function delivery(job: Partial<JobMessage> | Uint8Array, subject = 'naq.jobs.q.j1') {
  const data = job instanceof Uint8Array ? job : new TextEncoder().encode(JSON.stringify(message(job)));
  return fakeDelivery(data, subject);
}

function message(over: Partial<JobMessage> = {}): JobMessage {
  return { v: 1, id: 'j1', name: 'work', queue: 'q', data: { n: 1 }, attempts: 1, ts: 500, ...over };
}

function path(handlers: Handlers, extra: { clock?: ManualClock; ackWaitMs?: number; activeAfterMs?: number; maxLogLines?: number; onHandlerDone?: () => void } = {}) {
  const clock = extra.clock ?? new ManualClock(1_000_000);
  const mem = memoryIO();
  const refused: unknown[] = [];
  const p = new JobPath({
    queue: 'q',
    workerId: 'w1',
    handlers,
    ackWaitMs: extra.ackWaitMs ?? 30_000,
    activeAfterMs: extra.activeAfterMs ?? 0,
    clock,
    io: mem.io,
    log: pino({ level: 'silent' }),
    onRefused: (e) => void refused.push(e),
    ...(extra.maxLogLines !== undefined ? { maxLogLines: extra.maxLogLines } : {}),
    ...(extra.onHandlerDone ? { onHandlerDone: extra.onHandlerDone } : {}),
  });
  return { p, clock, refused, ...mem };
}

/** Record writes wait until the test calls their answer (in the order they were made). */
function holdWrites(io: JobIO): Array<() => void> {
  const write = io.writeRecord;
  const answers: Array<() => void> = [];
  io.writeRecord = (id, bytes) => new Promise((resolve) => answers.push(() => resolve(write(id, bytes))));
  return answers;
}

describe('the job path', () => {
  it('rate limited (ctx.rateLimit or RateLimitedError): back after the wait without using an attempt, the queue held; the next delivery is still attempt 1 of 2', async () => {
    const seen: number[] = [];
    let limited = 2;
    const { p, records, writes, holds, flush, types } = path({
      work: async (_d: unknown, ctx) => {
        seen.push(ctx.attempt);
        if (limited-- === 2) ctx.rateLimit(750);
        if (limited === 0) throw new RateLimitedError(1500);
        return 'done';
      },
    });
    const first = delivery({ attempts: 2 });
    await p.process(first, 1);
    expect(first.calls).toEqual(['nak 750']);
    expect(holds).toEqual([750]);
    expect(records.get('j1')).toMatchObject({ status: 'pending', deferred: 1, attempts: [] });
    // The server counts a second delivery; the record says one of them did not count.
    const second = delivery({ attempts: 2 });
    await p.process(second, 2);
    expect(second.calls).toEqual(['nak 1500']);
    expect(holds).toEqual([750, 1500]);
    expect(records.get('j1')).toMatchObject({ status: 'pending', deferred: 2, attempts: [] });
    const third = delivery({ attempts: 2 });
    await p.process(third, 3);
    flush();
    expect(third.calls).toEqual(['ack']);
    expect(seen).toEqual([1, 1, 1]);
    expect(records.get('j1')).toMatchObject({ status: 'completed', result: 'done', attempts: [{ n: 1 }] });
    expect(writes.map((w) => w.status)).toEqual(['pending', 'pending', 'completed']);
    expect(types()).toEqual(['job.started', 'job.deferred', 'job.started', 'job.deferred', 'job.started', 'job.completed']);
  });

  it('a rate-limited attempt after a failed one keeps the history: the retry after it is attempt 2', async () => {
    const seen: number[] = [];
    const { p, records } = path({
      work: async (_d: unknown, ctx) => {
        seen.push(ctx.attempt);
        if (seen.length === 1) throw new Error('flaky');
        if (seen.length === 2) ctx.rateLimit(100);
        return 'ok';
      },
    });
    await p.process(delivery({ attempts: 3 }), 1);
    await p.process(delivery({ attempts: 3 }), 2);
    expect(records.get('j1')).toMatchObject({ status: 'pending', deferred: 1, attempts: [{ n: 1, error: { message: 'flaky' } }] });
    await p.process(delivery({ attempts: 3 }), 3);
    expect(seen).toEqual([1, 2, 2]);
    expect(records.get('j1')).toMatchObject({ status: 'completed', attempts: [{ n: 1 }, { n: 2 }] });
  });

  it("a grouped job: its group's slot is freed on its final outcome only (not on a retry), and a rate limit holds its group, not the queue", async () => {
    let runs = 0;
    const { p, records, holds, groupHolds, groupsDone } = path({
      work: async (_d: unknown, ctx) => {
        runs++;
        if (runs === 1) ctx.rateLimit(500);
        if (runs === 2) throw new Error('flaky');
        return 'ok';
      },
    });
    await p.process(delivery({ attempts: 2, group: 'tenant-a' }), 1);
    expect(groupHolds).toEqual([[500, 'tenant-a']]);
    expect(holds).toEqual([]);
    await p.process(delivery({ attempts: 2, group: 'tenant-a' }), 2);
    expect(groupsDone).toEqual([]);
    await p.process(delivery({ attempts: 2, group: 'tenant-a' }), 3);
    expect(groupsDone).toEqual(['j1']);
    expect(records.get('j1')).toMatchObject({ status: 'completed', group: 'tenant-a', attempts: [{ n: 1 }, { n: 2 }] });
  });

  it('first attempt: runs the handler, records the completion with its result, then acks', async () => {
    const { p, records, writes, flush, types } = path({ work: async (d: { n: number }) => ({ doubled: d.n * 2 }) });
    const msg = delivery({});
    await p.process(msg, 1);
    expect(writes).toHaveLength(1);
    expect(records.get('j1')).toMatchObject({ status: 'completed', result: { doubled: 2 }, enqueuedAt: 500, attempts: [{ n: 1, workerId: 'w1' }] });
    // The ack waits for the record write, and goes out with the next batch.
    expect(msg.calls).toEqual([]);
    flush();
    expect(msg.calls).toEqual(['ack']);
    expect(types()).toEqual(['job.started', 'job.completed']);
    expect(p.processed).toBe(1);
  });

  it('keeps its liveness sweep through short gaps between jobs, and leaves no timer behind after 5 s without one', async () => {
    const { p, clock } = path({ work: async () => 'ok' });
    await p.process(delivery({}), 1);
    expect(clock.pendingTimers).toBe(1);
    // Four sweeps found no job running: a job starting now finds the sweep still there.
    await clock.advance(1000);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(4000);
    expect(clock.pendingTimers).toBe(0);
  });

  it.each<[string, BackoffOptions, number[]]>([
    ['fixed', { type: 'fixed', delay: 100 }, [100, 100]],
    ['exponential', { type: 'exponential', delay: 100 }, [100, 200]],
    ['list', { type: 'list', delays: [10, 20] }, [10, 20]],
  ])('retry with %s backoff: records "retrying" with each error, NAKs with the delay, keeps the history', async (_name, backoff, delays) => {
    let runs = 0;
    const { p, records } = path({
      work: async () => {
        runs++;
        throw new Error(`boom ${runs}`);
      },
    });
    const job = { attempts: 3, backoff };
    const first = delivery(job);
    await p.process(first, 1);
    expect(first.calls).toEqual([`nak ${delays[0]}`]);
    expect(records.get('j1')).toMatchObject({ status: 'retrying', attempts: [{ n: 1, error: { message: 'boom 1' } }] });
    const second = delivery(job);
    await p.process(second, 2);
    expect(second.calls).toEqual([`nak ${delays[1]}`]);
    expect(records.get('j1')!.attempts.map((a) => a.error?.message)).toEqual(['boom 1', 'boom 2']);
  });

  it('dead letter after the last attempt: reason, payload and sequence recorded, acked, job.failed and job.dead emitted', async () => {
    const { p, records, dead, flush, types } = path({
      work: async () => {
        throw Object.assign(new Error('boom'), { code: 'E_BOOM' });
      },
    });
    records.set('j1', { v: 1, id: 'j1', name: 'work', queue: 'q', status: 'retrying', maxAttempts: 2, attempts: [{ n: 1, startedAt: 1, finishedAt: 2, error: { name: 'Error', message: 'first' } }], enqueuedAt: 500 });
    const msg = delivery({ attempts: 2 });
    await p.process(msg, 2);
    flush();
    expect(msg.calls).toEqual(['ack']);
    expect(dead).toEqual([expect.objectContaining({ reason: 'failed after 2 attempts: boom', jobId: 'j1', job: expect.objectContaining({ data: { n: 1 } }) })]);
    expect(records.get('j1')).toMatchObject({ status: 'failed', deadSeq: 1, error: { code: 'E_BOOM' }, attempts: [{ n: 1 }, { n: 2, error: { message: 'boom' } }] });
    expect(types()).toEqual(['job.started', 'job.failed', 'job.dead']);
    expect(p.failed).toBe(1);
    // The stack is kept once, on the record's latest error and in the dead letter; not per attempt.
    expect(records.get('j1')!.error!.stack).toMatch(/^Error: boom\n\s+at /);
    expect(dead[0]!.error!.stack).toMatch(/^Error: boom\n/);
    expect(records.get('j1')!.attempts[1]!.error).not.toHaveProperty('stack');
  });

  it('every final outcome gets its index entry, just before its record; a retry gets none', async () => {
    let runs = 0;
    const { p, indexed, order } = path({
      work: async () => 'ok',
      flaky: async () => {
        runs++;
        throw new Error('no');
      },
      stop: (_d, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))),
    });
    await p.process(delivery({ id: 'a', name: 'work' }, 'naq.jobs.q.a'), 1);
    await p.process(delivery({ id: 'b', name: 'flaky', attempts: 2 }, 'naq.jobs.q.b'), 1);
    await p.process(delivery({ id: 'b', name: 'flaky', attempts: 2 }, 'naq.jobs.q.b'), 2);
    const running = p.process(delivery({ id: 'c', name: 'stop' }, 'naq.jobs.q.c'), 1);
    await settle();
    p.cancel('c');
    await running;
    expect(runs).toBe(2);
    expect(indexed).toEqual([
      { id: 'a', queue: 'q', name: 'work', state: 'completed', enqueuedAt: 500 },
      { id: 'b', queue: 'q', name: 'flaky', state: 'failed', enqueuedAt: 500 },
      { id: 'c', queue: 'q', name: 'stop', state: 'cancelled', enqueuedAt: 500 },
    ]);
    expect(order).toEqual(['index completed', 'record completed', 'record retrying', 'index failed', 'record failed', 'index cancelled', 'record cancelled']);
  });

  it('ctx.log lines are kept with the record: level and text, the last N, across the retries of one enqueue', async () => {
    const { p, records, clock } = path(
      {
        work: async (_d, ctx) => {
          ctx.log(`attempt ${ctx.attempt} starts`);
          ctx.log.debug('not kept: the logger is silent below info');
          if (ctx.attempt === 1) {
            ctx.log.warn({ user: 7 }, 'retrying for %s', 'user');
            throw new Error('first fails');
          }
          ctx.log.error(new Error('a handled problem'), 'noted');
          ctx.log.info('done');
          return 'ok';
        },
      },
      { maxLogLines: 3 },
    );
    await p.process(delivery({ attempts: 2 }), 1);
    expect(records.get('j1')).toMatchObject({
      status: 'retrying',
      logs: [
        { level: 'info', msg: 'attempt 1 starts', attempt: 1, ts: clock.now() },
        { level: 'warn', msg: 'retrying for user {"user":7}', attempt: 1 },
      ],
    });
    await p.process(delivery({ attempts: 2 }), 2);
    const done = records.get('j1')!;
    expect(done.status).toBe('completed');
    // Five lines over two attempts, three kept: the last ones, and how many were dropped.
    expect(done.logs!.map((l) => [l.attempt, l.level, l.msg])).toEqual([
      [2, 'info', 'attempt 2 starts'],
      [2, 'error', 'noted: a handled problem'],
      [2, 'info', 'done'],
    ]);
    expect(done.logsDropped).toBe(2);
  });

  it('a first attempt that completes carries its lines in the fast-path record; without lines there is no logs field', async () => {
    const { p, records } = path({ work: async (_d, ctx) => void ctx.log.info('hello %d', 42), quiet: async () => 'q' });
    await p.process(delivery({}), 1);
    expect(records.get('j1')!.logs).toEqual([expect.objectContaining({ level: 'info', msg: 'hello 42', attempt: 1 })]);
    await p.process(delivery({ id: 'j2', name: 'quiet' }, 'naq.jobs.q.j2'), 1);
    expect(records.get('j2')).not.toHaveProperty('logs');
  });

  it('timeout: the handler is aborted through its signal when the clock passes timeoutMs; the attempt fails with JOB_TIMEOUT', async () => {
    let aborted: unknown;
    const { p, clock, records, dead } = path({
      work: (_d, ctx) =>
        new Promise((_, reject) =>
          ctx.signal.addEventListener('abort', () => {
            aborted = ctx.signal.reason;
            reject(ctx.signal.reason);
          }),
        ),
    });
    const done = p.process(delivery({ timeoutMs: 1000 }), 1);
    await settle();
    await clock.advance(999);
    expect(records.get('j1')).toBeUndefined();
    await clock.advance(1);
    await done;
    expect(aborted).toMatchObject({ code: 'JOB_TIMEOUT' });
    expect(records.get('j1')).toMatchObject({ status: 'failed', error: { code: 'JOB_TIMEOUT', message: 'job timed out after 1000 ms' } });
    expect(dead).toHaveLength(1);
  });

  it('a timeout ends the wait even when the handler ignores its signal', async () => {
    const { p, clock, records } = path({ work: () => new Promise(() => {}) });
    const done = p.process(delivery({ timeoutMs: 5000 }), 1);
    await settle();
    await clock.advance(4999);
    expect(records.size).toBe(0);
    await clock.advance(1);
    await done;
    expect(records.get('j1')).toMatchObject({ status: 'failed', error: { code: 'JOB_TIMEOUT' } });
  });

  it('cancel while running: the handler is aborted and the job recorded cancelled, then acked', async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const { p, records, flush, types } = path({
      work: (_d, ctx) =>
        new Promise((_, reject) => {
          started();
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        }),
    });
    const msg = delivery({ attempts: 3 });
    const done = p.process(msg, 1);
    await running;
    p.cancel('j1');
    await done;
    flush();
    expect(records.get('j1')).toMatchObject({ status: 'cancelled' });
    expect(msg.calls).toEqual(['ack']);
    expect(types()).toEqual(['job.started', 'job.cancelled']);
  });

  it('a cancel notice that came first: the job is recorded cancelled without running', async () => {
    let runs = 0;
    const { p, records } = path({ work: async () => void runs++ });
    p.cancel('j1');
    const msg = delivery({});
    await p.process(msg, 1);
    expect(runs).toBe(0);
    expect(records.get('j1')).toMatchObject({ status: 'cancelled' });
  });

  it('a cancel notice covers the jobs enqueued before it: the same id enqueued after it runs', async () => {
    let runs = 0;
    const { p, records, clock } = path({ work: async () => void runs++ });
    p.cancel('j1');
    await p.process(delivery({ ts: clock.now() + 1 }), 1);
    expect(runs).toBe(1);
    expect(records.get('j1')).toMatchObject({ status: 'completed' });
  });

  it('a retry keeps the history of its own enqueue only, not of an earlier run of the same id', async () => {
    const { p, records, writes } = path({
      work: async () => {
        throw new Error('again');
      },
    });
    // An earlier enqueue of j1 (enqueued at 100) ran and failed; this one was enqueued at 500.
    records.set('j1', {
      v: 1, id: 'j1', name: 'work', queue: 'q', status: 'failed', maxAttempts: 2, enqueuedAt: 100,
      attempts: [{ n: 1, startedAt: 1, finishedAt: 2 }, { n: 2, startedAt: 3, finishedAt: 4 }],
    });
    await p.process(delivery({ attempts: 3, ts: 500 }), 2);
    expect(writes.at(-1)).toMatchObject({ status: 'retrying', enqueuedAt: 500 });
    expect(writes.at(-1)!.attempts.map((a) => a.n)).toEqual([2]);
  });

  it('a duplicate delivery while the job runs: not run again, acked with the outcome', async () => {
    let release!: () => void;
    let runs = 0;
    const { p, flush } = path({
      work: () => {
        runs++;
        return new Promise<string>((r) => (release = () => r('ok')));
      },
    });
    const original = delivery({});
    const copy = delivery({});
    const done = p.process(original, 1);
    await settle();
    await p.process(copy, 2);
    expect(copy.calls).toEqual([]);
    release();
    await done;
    flush();
    expect(runs).toBe(1);
    expect(original.calls).toEqual(['ack']);
    expect(copy.calls).toEqual(['ack']);
  });

  it('a duplicate delivery while the job runs, then the attempt fails: not run again, NAKed with the original; one that comes while the retry is written is not run either', async () => {
    let fail!: () => void;
    let runs = 0;
    const { p, io } = path({
      work: () => {
        runs++;
        return new Promise<string>((_, reject) => (fail = () => reject(new Error('boom'))));
      },
    });
    const answers = holdWrites(io);
    const original = delivery({ attempts: 2 });
    const copy = delivery({ attempts: 2 });
    const done = p.process(original, 1);
    await settle();
    await p.process(copy, 2);
    fail();
    await settle();
    // The retry's record is being written: a third copy finds the job still here.
    const late = delivery({ attempts: 2 });
    const lateDone = p.process(late, 2);
    await settle();
    expect(runs).toBe(1);
    answers.shift()!();
    await done;
    await lateDone;
    expect(original.calls).toEqual(['nak 0']);
    expect(copy.calls).toEqual(['nak']);
    expect(late.calls).toEqual(['nak']);
  });

  it('a redelivery after the outcome was recorded (its ack was lost): indexed again, acked, not run', async () => {
    let runs = 0;
    const { p, records, writes, indexed, flush } = path({ work: async () => void runs++ });
    records.set('j1', { v: 1, id: 'j1', name: 'work', queue: 'q', status: 'completed', maxAttempts: 3, attempts: [{ n: 1, startedAt: 1, finishedAt: 2 }], enqueuedAt: 500 });
    const msg = delivery({ attempts: 3 });
    await p.process(msg, 2);
    flush();
    expect(runs).toBe(0);
    expect(writes).toHaveLength(0);
    expect(msg.calls).toEqual(['ack']);
    expect(indexed).toEqual([{ id: 'j1', queue: 'q', name: 'work', state: 'completed', enqueuedAt: 500 }]);
    // The same id enqueued again later (another enqueue time) is a new job: it runs.
    await p.process(delivery({ attempts: 3, ts: 600 }), 2);
    expect(runs).toBe(1);
  });

  it("a rate gate's grant is told of the handler's start (the clock's time, before the handler runs): a first attempt, a redelivery read back first; not a job that does not run", async () => {
    const clock = new ManualClock(1_000_000);
    const began: number[] = [];
    const grant = { began: (at: number) => void began.push(at) };
    const { p, records } = path({ work: async () => void began.push(-1) }, { clock });
    await p.process(delivery({ attempts: 3 }), 1, grant);
    expect(began).toEqual([1_000_000, -1]);
    // A redelivery of another job, its record read first (an attempt that did not finish).
    clock.advance(50);
    records.set('j2', { v: 1, id: 'j2', name: 'work', queue: 'q', status: 'active', maxAttempts: 3, attempts: [{ n: 1, startedAt: 1 }], enqueuedAt: 500 });
    await p.process(delivery({ attempts: 3, id: 'j2' }, 'naq.jobs.q.j2'), 2, grant);
    expect(began).toEqual([1_000_000, -1, 1_000_050, -1]);
    // Finished already (remembered), and a job no handler here can run: no start to count.
    await p.process(delivery({ attempts: 3 }), 2, grant);
    await p.process(delivery({ attempts: 3, name: 'missing', id: 'j3' }, 'naq.jobs.q.j3'), 1, grant);
    expect(began).toEqual([1_000_000, -1, 1_000_050, -1]);
  });

  it('a child of a flow or batch: its parent is told each final outcome after the record is written and before the ack; a retry tells nothing', async () => {
    let fail = true;
    const { p, told, order, flush } = path({
      work: async () => {
        if (fail) throw new Error('no');
        return 1;
      },
    });
    const first = delivery({ attempts: 2, parent: 'P' });
    await p.process(first, 1);
    expect(told).toEqual([]);
    fail = false;
    const second = delivery({ attempts: 2, parent: 'P' });
    await p.process(second, 2);
    expect(told).toEqual(['P j1 completed']);
    expect(order.slice(-2)).toEqual(['record completed', 'told completed']);
    expect(second.calls).toEqual([]);
    flush();
    expect(second.calls).toEqual(['ack']);
    // Failed for good, and cancelled: told too.
    const dead = path({ work: async () => Promise.reject(new Error('no')) });
    await dead.p.process(delivery({ id: 'j2', parent: 'P' }, 'naq.jobs.q.j2'), 1);
    expect(dead.told).toEqual(['P j2 failed']);
  });

  it('a redelivered child whose outcome was recorded (crash before the notice or the ack): its parent is told again, then it is acked', async () => {
    const { p, records, told, flush } = path({ work: async () => 1 });
    records.set('j1', { v: 1, id: 'j1', name: 'work', queue: 'q', status: 'failed', maxAttempts: 1, attempts: [{ n: 1, startedAt: 1, finishedAt: 2 }], enqueuedAt: 500, parent: 'P' });
    const msg = delivery({ parent: 'P' });
    await p.process(msg, 2);
    flush();
    expect(told).toEqual(['P j1 failed']);
    expect(msg.calls).toEqual(['ack']);
  });

  it('a notice the server did not take: not acked, so the job comes back', async () => {
    const { p, io, flush } = path({ work: async () => 1 });
    io.tellParent = async () => {
      throw new Error('no stream answered');
    };
    const msg = delivery({ parent: 'P' });
    await p.process(msg, 1);
    flush();
    expect(msg.calls).toEqual([]);
  });

  it("the worker is told once per delivery that it runs no handler any more: when the handler settles, before its record write is answered; at once for one that runs none", async () => {
    let told = 0;
    let release!: () => void;
    const { p, io } = path(
      {
        work: async () => 'ok',
        slow: () => new Promise<string>((r) => (release = () => r('ok'))),
        broken: async () => {
          throw new Error('boom');
        },
      },
      { onHandlerDone: () => void told++ },
    );
    const answers = holdWrites(io);

    let settled = false;
    const completing = p.process(delivery({}), 1).then(() => (settled = true));
    await settle();
    expect(told).toBe(1);
    expect(settled).toBe(false);
    answers.shift()!();
    await completing;
    expect(told).toBe(1);

    // A handler that throws: told once, before its retry is recorded.
    const failing = p.process(delivery({ id: 'f1', name: 'broken', attempts: 2 }, 'naq.jobs.q.f1'), 1);
    await settle();
    expect(told).toBe(2);
    answers.shift()!();
    await failing;

    // A copy of a running job runs nothing: told at once, and the original once, when its handler returns.
    const original = p.process(delivery({ id: 's1', name: 'slow' }, 'naq.jobs.q.s1'), 1);
    await settle();
    expect(told).toBe(2);
    await p.process(delivery({ id: 's1', name: 'slow' }, 'naq.jobs.q.s1'), 2);
    expect(told).toBe(3);
    release();
    await settle();
    expect(told).toBe(4);
    answers.shift()!();
    await original;

    // No handler of that name, and a body that is not a job: nothing runs, each told once.
    const unknown = p.process(delivery({ id: 'u1', name: 'nope' }, 'naq.jobs.q.u1'), 1);
    await settle();
    expect(told).toBe(5);
    answers.shift()!();
    await unknown;
    expect(told).toBe(5);
    const undecodable = p.process(delivery(new TextEncoder().encode('{"v":1,"id":'), 'naq.jobs.q.broken'), 1);
    await settle();
    answers.splice(0).forEach((a) => a());
    await undecodable;
    expect(told).toBe(6);
  });

  it('unknown handler: dead-lettered at once with UNKNOWN_HANDLER, whatever attempts remain', async () => {
    const { p, records, dead, flush } = path({ work: async () => 1 });
    const msg = delivery({ name: 'nope', attempts: 5 });
    await p.process(msg, 1);
    flush();
    expect(msg.calls).toEqual(['ack']);
    expect(dead).toEqual([expect.objectContaining({ reason: 'no handler named nope on this worker', error: expect.objectContaining({ code: 'UNKNOWN_HANDLER' }) })]);
    expect(records.get('j1')).toMatchObject({ status: 'failed', deadSeq: 1 });
  });

  it('undecodable message: dead-lettered with its raw text and the reason, recorded failed under the subject id, acked', async () => {
    const { p, records, dead, types } = path({ work: async () => 1 });
    const msg = delivery(new TextEncoder().encode('{"v":1,"id":'), 'naq.jobs.q.broken');
    await p.process(msg, 1);
    expect(msg.calls).toEqual(['ack']);
    expect(dead).toEqual([expect.objectContaining({ jobId: 'broken', raw: '{"v":1,"id":', reason: expect.stringMatching(/^undecodable job: not JSON/) })]);
    expect(records.get('broken')).toMatchObject({ name: '(undecodable)', status: 'failed', error: { code: 'DECODE' } });
    expect(types()).toEqual(['job.failed', 'job.dead']);
  });

  it('a body whose queue or id is not its subject\'s: dead-lettered as undecodable under the subject\'s id, acked', async () => {
    for (const over of [{ queue: 'other' }, { queue: 'a b' }, { id: 'j2' }, { id: '1' }, { priority: 1 }]) {
      let runs = 0;
      const { p, records, dead, flush } = path({ work: async () => void runs++ });
      const msg = delivery(over);
      await p.process(msg, 1);
      flush();
      expect(runs).toBe(0);
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ queue: 'q', jobId: 'j1', subject: 'naq.jobs.q.j1', error: { code: 'DECODE' } });
      expect(dead[0]!.reason).toMatch(/are not those of its subject naq\.jobs\.q\.j1/);
      expect(records.get('j1')).toMatchObject({ status: 'failed', error: { code: 'DECODE' } });
      expect(msg.calls).toEqual(['ack']);
    }
  });

  it('a record write refused for permissions: the job goes back at once and the worker is told to stop', async () => {
    const { p, io, refused } = path({ work: async () => 1 });
    const violation = Object.assign(new Error('Permissions Violation for Publish to "$KV.naq_jobs.j1"'), {
      name: 'PermissionViolationError',
      operation: 'publish',
      subject: '$KV.naq_jobs.j1',
    });
    io.writeRecord = async () => {
      throw violation;
    };
    const msg = delivery({});
    await p.process(msg, 1);
    expect(msg.calls).toEqual(['nak']);
    expect(refused).toEqual([expect.objectContaining({ code: 'PERMISSION_DENIED', subject: '$KV.naq_jobs.j1' })]);
  });

  it('a long job is marked active in its record and kept alive with working() while it runs', async () => {
    let release!: () => void;
    const { p, clock, records, writes } = path({ work: () => new Promise<void>((r) => (release = r)) }, { ackWaitMs: 2000, activeAfterMs: 500 });
    const msg = delivery({});
    const done = p.process(msg, 1);
    await settle();
    await clock.advance(2600);
    expect(writes[0]).toMatchObject({ status: 'active', attempts: [{ n: 1 }] });
    expect(msg.calls.filter((c) => c === 'working')).toHaveLength(2);
    release();
    await done;
    expect(records.get('j1')).toMatchObject({ status: 'completed' });
  });

  it('after a restart, a first attempt is checked against its record before it runs, for two ack waits after pulling resumed', async () => {
    let runs = 0;
    const clock = new ManualClock(1_000_000);
    const { p, records } = path({ work: async () => void runs++ }, { clock, ackWaitMs: 1000 });
    records.set('j1', { v: 1, id: 'j1', name: 'work', queue: 'q', status: 'completed', maxAttempts: 1, attempts: [], enqueuedAt: 500 });
    p.verifyAfterRestart();
    p.resumed();
    await p.process(delivery({}), 1);
    expect(runs).toBe(0);
    await clock.advance(2001);
    await p.process(delivery({}), 1);
    expect(runs).toBe(1);
  });
});
