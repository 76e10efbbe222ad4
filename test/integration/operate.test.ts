/**
 * Operator actions on one job (issue 11): promote a delayed job, remove a job from wherever it
 * is, and what a delayed job looks like to readers.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

/** A worker counting its runs of `later`, leading the firing of delayed jobs (its default), and a producer. */
async function withLeader() {
  const server = await startServer();
  let runs = 0;
  const w = await worker(server, { later: async () => ++runs }, {});
  await until(() => w.isLeader());
  return { w, ops: await producer(server), runs: () => runs };
}

describe('job operations', () => {
  it('promote: a delayed job runs now, once, even with its scheduler leader up', async () => {
    const { w, ops, runs } = await withLeader();
    const id = await ops.enqueueIn(3_600_000, 'later', null);
    expect(await ops.getJob(id)).toMatchObject({ id, status: 'delayed', name: 'later', queue: 'default' });
    await expect(ops.promote(id)).resolves.toEqual({ id, promoted: true });
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe(1);
    // No longer delayed: a second promote says what it is now.
    await expect(ops.promote(id)).rejects.toMatchObject({ message: `job ${id} is completed, not delayed: only a delayed job can be promoted` });
    await expect(ops.promote('no-such-job')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(runs()).toBe(1);
  });

  it('removeJob: a delayed, waiting, pending or finished job goes, with its record; a running one is refused', async () => {
    const server = await startServer();
    const ops = await producer(server);
    // Delayed.
    const later = await ops.enqueueIn(3_600_000, 'x', null);
    await expect(ops.removeJob(later)).resolves.toEqual({ id: later, removed: 'delayed' });
    expect(await ops.getJob(later)).toBeNull();
    // Waiting on a dependency.
    const parked = await ops.enqueue('x', null, { dependsOn: ['never'] });
    await expect(ops.removeJob(parked)).resolves.toEqual({ id: parked, removed: 'waiting' });
    expect(await ops.getJob(parked)).toBeNull();
    // Pending on a queue no worker serves.
    const pending = await ops.enqueue('x', null, { queue: 'unserved' });
    await expect(ops.removeJob(pending)).resolves.toEqual({ id: pending, removed: 'pending' });
    expect(await ops.getJob(pending)).toBeNull();
    expect((await ops.queueStats('unserved')).pending).toBe(0);

    // Running: refused; finished: its record goes.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const w = await worker(server, { slow: async () => gate.then(() => 'ok') });
    const running = await w.enqueue('slow', null);
    await until(async () => (await w.queueStats('default')).inFlight === 1);
    await expect(ops.removeJob(running)).rejects.toMatchObject({ message: expect.stringContaining('cancel it first') });
    release();
    await w.waitFor(running, { timeoutMs: 5000 });
    await expect(ops.removeJob(running)).resolves.toEqual({ id: running, removed: 'completed' });
    expect(await ops.getJob(running)).toBeNull();
    await expect(ops.removeJob(running)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('cancel and changeDelay on a delayed job: cancelled for good, or moved, with its scheduler leader up', async () => {
    const { w, ops, runs } = await withLeader();

    const doomed = await ops.enqueueIn(3_600_000, 'later', null);
    await expect(ops.cancel(doomed)).resolves.toEqual({ id: doomed, status: 'cancelled' });
    expect(await ops.getJob(doomed)).toMatchObject({ status: 'cancelled', name: 'later', queue: 'default' });
    expect((await ops.listJobs({ state: 'delayed' })).jobs).toEqual([]);
    // The index is written in batches (up to 20 ms after the record).
    await expect.poll(async () => (await ops.listJobs({ state: 'cancelled' })).jobs.map((j) => j.id)).toEqual([doomed]);

    const moved = await ops.enqueueIn(3_600_000, 'later', null);
    const before = Date.now();
    const { runAt } = await ops.changeDelay(moved, 300);
    expect(runAt).toBeGreaterThanOrEqual(before + 300);
    await expect(w.waitFor(moved, { timeoutMs: 10_000 })).resolves.toBe(1);
    expect((await ops.getJob(moved))!.startedAt).toBeGreaterThanOrEqual(runAt);
    await expect(ops.changeDelay(moved, 10)).rejects.toMatchObject({ message: `job ${moved} is completed, not delayed: only a delayed job's delay can change` });
    await expect(ops.changeDelay('no-such-job', 10)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(runs()).toBe(1);
  });

  it('jobData: a job\'s data while its message, waiting entry, schedule or dead letter keeps it; null once it completed', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const pending = await ops.enqueue('x', { n: 1 }, { queue: 'unserved' });
    const later = await ops.enqueueIn(3_600_000, 'x', { n: 2 });
    const parked = await ops.enqueue('x', { n: 3 }, { dependsOn: ['never'] });
    expect(await ops.jobData(pending)).toEqual({ data: { n: 1 } });
    expect(await ops.jobData(later)).toEqual({ data: { n: 2 } });
    expect(await ops.jobData(parked)).toEqual({ data: { n: 3 } });
    const w = await worker(server, {
      ok: async () => 'fine',
      bad: async () => {
        throw new Error('no');
      },
    });
    const done = await w.enqueue('ok', { n: 4 });
    await w.waitFor(done, { timeoutMs: 5000 });
    const dead = await w.enqueue('bad', { n: 5 });
    await expect(w.waitFor(dead, { timeoutMs: 5000 })).rejects.toThrow('no');
    expect(await ops.jobData(done)).toBeNull();
    expect(await ops.jobData(dead)).toEqual({ data: { n: 5 } });
    expect(await ops.jobData('no-such-job')).toBeNull();
  });
});
