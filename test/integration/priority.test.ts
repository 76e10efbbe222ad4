/**
 * Priorities (issue 12): 1 is the most urgent, 10 the least, 5 the default. A waiting job of a
 * more urgent level starts before any less urgent job that has not started; every operation on
 * a queue (stats, listing, purge, remove, the id's idempotency) sees every level.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

describe('priorities', () => {
  it('a backlog of four levels starts most urgent first, in enqueue order within a level; stats, listing and getJob see every level', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const levels = [10, 7, undefined, 1];
    const want: Array<{ id: string; level: number }> = [];
    for (let i = 0; i < 10; i++) {
      for (const priority of levels) {
        const id = await ops.enqueue('tick', { i }, priority === undefined ? {} : { priority });
        want.push({ id, level: priority ?? 5 });
      }
    }
    expect((await ops.queueStats('default')).pending).toBe(40);
    const listed = await ops.listJobs({ queue: 'default', state: 'pending', limit: 100 });
    expect(listed.jobs.map((j) => j.id).sort()).toEqual(want.map((w) => w.id).sort());
    expect(await ops.getJob(want[3]!.id)).toMatchObject({ status: 'pending', priority: 1 });
    expect((await ops.getJob(want[2]!.id))!.priority).toBeUndefined();

    const started: string[] = [];
    await worker(server, { tick: async (_d: unknown, ctx: JobContext) => void started.push(ctx.jobId) }, { concurrency: 1 });
    await until(() => started.length === 40);
    const expected = [...want].sort((a, b) => a.level - b.level).map((w) => w.id);
    expect(started).toEqual(expected);
    const record = await ops.getJob(want[0]!.id);
    expect(record).toMatchObject({ status: 'completed', priority: 10 });
  });

  it('a job more urgent than a running backlog starts next, ahead of every less urgent job not yet started', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const started: Array<[string, number]> = [];
    const work = async (d: { level: number }, ctx: JobContext) => {
      started.push([ctx.jobId, d.level]);
      await new Promise((r) => setTimeout(r, 20));
    };
    await worker(server, { work }, { concurrency: 2 });
    await ops.enqueueBulk(Array.from({ length: 60 }, () => ({ name: 'work' as const, data: { level: 10 }, opts: { priority: 10 } })));
    await until(() => started.length >= 6);
    const urgent = await ops.enqueue('work', { level: 1 }, { priority: 1 });
    await ops.waitFor(urgent, { timeoutMs: 10_000 });
    const at = started.findIndex(([id]) => id === urgent);
    const before = started.slice(0, at).length;
    // Started after the enqueue and before it: at most the slots that freed while it was on its
    // way to the worker (two slots of 20 ms jobs; the enqueue takes well under that).
    expect(at - 6).toBeLessThanOrEqual(4);
    expect(before).toBeLessThan(20);
    expect(started.length).toBeLessThan(60);
  });

  it('a less urgent job held while a long urgent one runs past ack_wait is kept alive: no other worker gets it, it runs once, as attempt 1', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const runs: Record<string, number[]> = {};
    const handlers = {
      job: async (d: { ms: number }, ctx: JobContext) => {
        (runs[ctx.jobId] ??= []).push(ctx.attempt);
        await new Promise((r) => setTimeout(r, d.ms));
      },
    };
    await worker(server, handlers, { concurrency: 1, ackWaitMs: 1000 });
    const long = await ops.enqueue('job', { ms: 2500 }, { priority: 1 });
    await until(() => runs[long] !== undefined);
    const held = await ops.enqueue('job', { ms: 0 }, { priority: 10 });
    // Delivered to the busy worker, which holds it: two jobs unacknowledged.
    await until(async () => (await ops.queueStats('default')).inFlight === 2);
    // An idle worker pulls the same lane: had the held job's ack_wait run out, it would get it.
    await worker(server, handlers, { concurrency: 1, ackWaitMs: 1000 });
    await ops.waitFor(held, { timeoutMs: 10_000 });
    expect(runs[long]).toEqual([1]);
    expect(runs[held]).toEqual([1]);
    expect((await ops.getJob(held))!.attempts.map((a) => a.n)).toEqual([1]);
  });

  it("an id's idempotency holds across levels; purge and remove reach every level; a delayed job keeps its level", async () => {
    const server = await startServer();
    const ops = await producer(server);
    expect(await ops.enqueue('x', null, { jobId: 'once', priority: 1 })).toBe('once');
    expect(await ops.enqueue('x', null, { jobId: 'once' })).toBe('once');
    expect(await ops.enqueue('x', null, { jobId: 'once', priority: 9 })).toBe('once');
    expect((await ops.queueStats('default')).pending).toBe(1);
    expect(await ops.getJob('once')).toMatchObject({ status: 'pending', priority: 1 });

    await ops.enqueue('x', null, { jobId: 'gone', priority: 3 });
    expect(await ops.removeJob('gone')).toMatchObject({ id: 'gone', removed: 'pending' });
    for (const priority of [2, 5, 8]) await ops.enqueue('x', null, { priority, queue: 'other' });
    expect(await ops.purgeQueue('other')).toEqual({ purged: 3 });
    expect((await ops.queueStats('other')).pending).toBe(0);

    const later = await ops.enqueueIn(300, 'tick', null, { priority: 2 });
    expect(await ops.getJob(later)).toMatchObject({ status: 'delayed', priority: 2 });
    await worker(server, { tick: async () => 'ran', x: async () => null });
    expect(await ops.waitFor(later, { timeoutMs: 10_000 })).toBe('ran');
    expect(await ops.getJob(later)).toMatchObject({ status: 'completed', priority: 2 });

    await expect(ops.enqueue('x', null, { priority: 0 })).rejects.toThrow(/priority must be an integer from 1 \(most urgent\) to 10/);
    await expect(ops.enqueue('x', null, { priority: 2.5 })).rejects.toThrow(/priority/);
  });
});
