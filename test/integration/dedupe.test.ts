/**
 * Dedupe windows (issue 12): throttle and debounce on a real server, racing producers,
 * restarts of every process and of the server, the checks of the option, and how it goes
 * with job ids, enqueueBulk, cancel and promote.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/core/errors.js';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { elapse, startServer, stopAllServers, until, type TestServer } from '../support/harness.js';
import { producer, startNaq, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

interface Run {
  id: string;
  data: unknown;
  at: number;
}

/** A worker on `default` that records every run (it also leads the firing of delayed jobs), and a producer. */
async function setup(server?: TestServer) {
  server ??= await startServer();
  const runs: Run[] = [];
  const record = async (data: unknown, ctx: JobContext) => {
    runs.push({ id: ctx.jobId, data, at: Date.now() });
    return data;
  };
  const w = await worker(server, { record }, { concurrency: 10 });
  await until(() => w.isLeader());
  return { server, w, ops: await producer(server), runs, runsOf: (id: string) => runs.filter((r) => r.id === id) };
}

describe('throttle', () => {
  it('drops a second enqueue of the key within the window onto the first job; after the window, a new job', async () => {
    const { w, ops, runsOf } = await setup();
    const ttlMs = 1500;
    const opened = Date.now();
    const first = await ops.enqueue('record', { n: 1 }, { dedupe: { key: 'user.42', ttlMs } });
    const second = await ops.enqueue('record', { n: 2 }, { dedupe: { key: 'user.42', ttlMs, mode: 'throttle' } });
    expect(second).toBe(first);
    expect(await w.waitFor(first, { timeoutMs: 5000 })).toEqual({ n: 1 });
    // Still in the window after the job ran: dropped, from another process too.
    expect(await w.enqueue('record', { n: 3 }, { dedupe: { key: 'user.42', ttlMs } })).toBe(first);
    expect(runsOf(first)).toHaveLength(1);
    // The drops are in the event log, under the kept job.
    await Promise.all([ops.events.flush(), w.events.flush()]);
    const drops = (await ops.events.history({ jobId: first })).filter((e) => e.type === 'job.deduplicated');
    expect(drops).toHaveLength(2);
    expect(drops[0]!.data).toMatchObject({ name: 'record', key: 'user.42', mode: 'throttle', until: expect.any(Number) });

    await until(() => Date.now() > opened + ttlMs + 50);
    const next = await ops.enqueue('record', { n: 4 }, { dedupe: { key: 'user.42', ttlMs } });
    expect(next).not.toBe(first);
    expect(await w.waitFor(next, { timeoutMs: 5000 })).toEqual({ n: 4 });
    // Another key, and the other mode, are other windows.
    expect(await ops.enqueue('record', null, { dedupe: { key: 'user.43', ttlMs } })).not.toBe(next);
  });

  it('20 enqueues of one key racing from two producers: one id, one job', async () => {
    const { server, w, ops, runs } = await setup();
    const other = await producer(server);
    const ids = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? ops : other).enqueue('record', { i }, { dedupe: { key: 'race', ttlMs: 60_000 } })),
    );
    expect(new Set(ids).size).toBe(1);
    await w.waitFor(ids[0]!, { timeoutMs: 5000 });
    // Nothing else arrives: a second job would be pending or running by now.
    await elapse(500);
    expect((await ops.queueStats('default')).pending).toBe(0);
    expect(runs.map((r) => r.id)).toEqual([ids[0]]);
  });

  it('with enqueueIn: the window holds the delayed job; and jobId: the window keeps the first job\'s id', async () => {
    const { w, ops, runsOf } = await setup();
    const later = await ops.enqueueIn(300, 'record', { n: 1 }, { dedupe: { key: 'reminder', ttlMs: 60_000 } });
    expect(await ops.enqueueIn(300, 'record', { n: 2 }, { dedupe: { key: 'reminder', ttlMs: 60_000 } })).toBe(later);
    expect(await ops.enqueue('record', { n: 3 }, { dedupe: { key: 'reminder', ttlMs: 60_000 } })).toBe(later);
    expect(await w.waitFor(later, { timeoutMs: 5000 })).toEqual({ n: 1 });
    expect(runsOf(later)).toHaveLength(1);

    expect(await ops.enqueue('record', { n: 1 }, { jobId: 'chosen-1', dedupe: { key: 'chosen', ttlMs: 60_000 } })).toBe('chosen-1');
    expect(await ops.enqueue('record', { n: 2 }, { jobId: 'chosen-2', dedupe: { key: 'chosen', ttlMs: 60_000 } })).toBe('chosen-1');
    await w.waitFor('chosen-1', { timeoutMs: 5000 });
    expect(await ops.getJob('chosen-2')).toBeNull();
  });
});

describe('debounce', () => {
  it('three enqueues 100 ms apart (ttl 500): one job, with the last data, at least ttl after the last enqueue; after it ran, a new one', async () => {
    const { w, ops, runs } = await setup();
    const dedupe = { dedupe: { key: 'digest.7', ttlMs: 500, mode: 'debounce' as const } };
    const ids: string[] = [];
    let lastAt = 0;
    for (const n of [1, 2, 3]) {
      if (n > 1) await elapse(100);
      lastAt = Date.now();
      ids.push(await ops.enqueue('record', { n }, dedupe));
    }
    expect(new Set(ids).size).toBe(1);
    const id = ids[0]!;
    expect(await ops.getJob(id)).toMatchObject({ status: 'delayed' });
    expect(await ops.jobData(id)).toEqual({ data: { n: 3 } });
    expect(await w.waitFor(id, { timeoutMs: 5000 })).toEqual({ n: 3 });
    expect(runs).toHaveLength(1);
    expect(runs[0]!.at - lastAt).toBeGreaterThanOrEqual(500);
    await ops.events.flush();
    const moves = (await ops.events.history({ jobId: id })).filter((e) => e.type === 'job.deduplicated');
    expect(moves.map((e) => e.data)).toEqual([
      expect.objectContaining({ key: 'digest.7', mode: 'debounce', runAt: expect.any(Number), wasDueAt: expect.any(Number) }),
      expect.objectContaining({ key: 'digest.7', mode: 'debounce' }),
    ]);

    const next = await ops.enqueue('record', { n: 4 }, dedupe);
    expect(next).not.toBe(id);
    expect(await w.waitFor(next, { timeoutMs: 5000 })).toEqual({ n: 4 });
    expect(runs.map((r) => r.id)).toEqual([id, next]);
  });

  it('a cancelled (or promoted) debounced job is over: the next enqueue of the key starts a new one', async () => {
    const { w, ops, runsOf } = await setup();
    const dedupe = { dedupe: { key: 'k', ttlMs: 60_000, mode: 'debounce' as const } };
    const cancelled = await ops.enqueue('record', { n: 1 }, dedupe);
    expect(await ops.cancel(cancelled)).toEqual({ id: cancelled, status: 'cancelled' });
    const promoted = await ops.enqueue('record', { n: 2 }, dedupe);
    expect(promoted).not.toBe(cancelled);
    expect(await ops.enqueue('record', { n: 3 }, dedupe)).toBe(promoted);
    await ops.promote(promoted);
    expect(await w.waitFor(promoted, { timeoutMs: 5000 })).toEqual({ n: 3 });
    const third = await ops.enqueue('record', { n: 4 }, dedupe);
    expect([cancelled, promoted]).not.toContain(third);
    expect(runsOf(cancelled)).toEqual([]);
    expect(runsOf(promoted)).toHaveLength(1);
  });

  it('a debounced job claimed by a leader that stopped before publishing it is fired by the next leader; its key starts a new job meanwhile', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const dedupe = { key: 'claimed', ttlMs: 60_000, mode: 'debounce' as const };
    const id = await ops.enqueue('record', { n: 1 }, { dedupe });
    // What a leader writes when it claims the job, left behind as if it had died next.
    const job = (await ops.getSchedule(id))!;
    const { revision: _revision, ...stored } = job;
    await ops.kv.put('naq_schedules', id, JSON.stringify({ ...stored, status: 'completed', nextRunAt: null, lastRunAt: Date.now(), runs: 1 }));
    const next = await ops.enqueue('record', { n: 2 }, { dedupe });
    expect(next).not.toBe(id);
    const { w, runsOf } = await setup(server);
    expect(await w.waitFor(id, { timeoutMs: 5000 })).toEqual({ n: 1 });
    expect(runsOf(id)).toHaveLength(1);
    expect(await ops.getSchedule(id)).toBeNull();
    expect(await ops.getJob(next)).toMatchObject({ status: 'delayed' });
  });

  it('enqueues racing across the due time: every id returned runs once, with the data of the last enqueue that got it', async () => {
    const { w, ops, runs } = await setup();
    // A short ttl and pauses around it: enqueues keep landing as the leader fires (and claims) the job.
    const last = new Map<string, number>();
    const until = Date.now() + 2500;
    await Promise.all(
      ['a', 'b', 'c', 'd'].map(async (key) => {
        for (let n = 0; Date.now() < until; n++) {
          const id = await ops.enqueue('record', { key, n }, { dedupe: { key, ttlMs: 40, mode: 'debounce' } });
          last.set(id, n);
          await elapse(Math.floor(Math.random() * 80));
        }
      }),
    );
    expect(last.size).toBeGreaterThan(8);
    for (const id of last.keys()) await w.waitFor(id, { timeoutMs: 10_000 });
    for (const [id, n] of last) {
      const ran = runs.filter((r) => r.id === id);
      expect(ran, id).toHaveLength(1);
      expect((ran[0]!.data as { n: number }).n, id).toBe(n);
    }
    expect(runs).toHaveLength(last.size);
  }, 30_000);
});

describe('dedupe windows', () => {
  it('survive a restart of every naq process and of the server', async () => {
    const server = await startServer();
    let ops = await producer(server);
    const throttled = await ops.enqueue('record', { n: 1 }, { queue: 'unserved', dedupe: { key: 'once', ttlMs: 600_000 } });
    const debounced = await ops.enqueue('record', { n: 1 }, { dedupe: { key: 'later', ttlMs: 3000, mode: 'debounce' } });
    await stopNaqs();
    await server.restart();
    ops = await producer(server);
    expect(await ops.enqueue('record', { n: 2 }, { queue: 'unserved', dedupe: { key: 'once', ttlMs: 600_000 } })).toBe(throttled);
    expect((await ops.queueStats('unserved')).pending).toBe(1);
    const lastAt = Date.now();
    expect(await ops.enqueue('record', { n: 2 }, { dedupe: { key: 'later', ttlMs: 3000, mode: 'debounce' } })).toBe(debounced);
    const { w, runs } = await setup(server);
    expect(await w.waitFor(debounced, { timeoutMs: 10_000 })).toEqual({ n: 2 });
    expect(runs).toHaveLength(1);
    expect(runs[0]!.at - lastAt).toBeGreaterThanOrEqual(3000);
  });

  it('enqueueBulk: jobs of one key share its window, in their order', async () => {
    const { w, ops } = await setup();
    const ids = await ops.enqueueBulk([
      { name: 'record', data: { n: 1 }, opts: { dedupe: { key: 't', ttlMs: 60_000 } } },
      { name: 'record', data: { n: 1 }, opts: { dedupe: { key: 'd', ttlMs: 300, mode: 'debounce' } } },
      { name: 'record', data: { n: 2 }, opts: { dedupe: { key: 't', ttlMs: 60_000 } } },
      { name: 'record', data: { n: 2 }, opts: { dedupe: { key: 'd', ttlMs: 300, mode: 'debounce' } } },
      { name: 'record', data: { plain: true } },
      { name: 'record', data: { n: 3 }, opts: { dedupe: { key: 'd', ttlMs: 300, mode: 'debounce' } } },
    ]);
    expect(ids[2]).toBe(ids[0]);
    expect(ids[3]).toBe(ids[1]);
    expect(ids[5]).toBe(ids[1]);
    expect(new Set(ids).size).toBe(3);
    expect(await w.waitFor(ids[0]!, { timeoutMs: 5000 })).toEqual({ n: 1 });
    expect(await w.waitFor(ids[1]!, { timeoutMs: 5000 })).toEqual({ n: 3 });
    expect(await w.waitFor(ids[4]!, { timeoutMs: 5000 })).toEqual({ plain: true });
  });

  it('a bad option is refused naming its field, and nothing is written', async () => {
    const server = await startServer();
    const ops = await startNaq(server, { jobs: { dedupeMaxTtlMs: 60_000 } });
    const refused = async (promise: Promise<unknown>, message: RegExp) => {
      const error = await promise.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(message);
    };
    await refused(ops.enqueue('x', null, { dedupe: { key: 'a b', ttlMs: 1000 } }), /^invalid dedupe\.key "a b": use letters/);
    await refused(ops.enqueue('x', null, { dedupe: { key: '.a', ttlMs: 1000 } }), /^invalid dedupe\.key/);
    await refused(ops.enqueue('x', null, { dedupe: { key: 'k'.repeat(257), ttlMs: 1000 } }), /^invalid dedupe\.key .*at most 256 characters/);
    await refused(ops.enqueue('x', null, { dedupe: { key: 'a', ttlMs: 0 } }), /^invalid dedupe\.ttlMs: expected at least 1 ms/);
    await refused(ops.enqueue('x', null, { dedupe: { key: 'a', ttlMs: 60_001 } }), /^invalid dedupe\.ttlMs: 60001 ms is over jobs\.dedupeMaxTtlMs \(60000 ms\)/);
    await refused(ops.enqueue('x', null, { dedupe: { key: 'a', ttlMs: 1000, mode: 'later' as never } }), /^invalid dedupe\.mode "later"/);
    await refused(ops.enqueue('x', null, { dependsOn: ['y'], dedupe: { key: 'a', ttlMs: 1000, mode: 'debounce' } }), /debounce" cannot be combined with dependsOn/);
    await refused(ops.enqueueIn(1000, 'x', null, { dedupe: { key: 'a', ttlMs: 1000, mode: 'debounce' } }), /debounce" cannot be combined with enqueueAt \/ enqueueIn/);
    await refused(
      ops.enqueueBulk([{ name: 'x', data: null }, { name: 'x', data: null, opts: { dedupe: { key: 'a', ttlMs: -1 } } }]),
      /^invalid dedupe\.ttlMs/,
    );
    expect((await ops.queueStats('default')).pending).toBe(0);
    expect(await ops.listSchedules()).toEqual([]);
    expect(await ops.kv.keys('naq_dedupe')).toEqual([]);
  });
});
