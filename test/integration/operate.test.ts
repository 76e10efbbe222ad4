/**
 * Operator actions on one job (issue 11): promote a delayed job, remove a job from wherever it
 * is, and what a delayed job looks like to readers.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { producer, startNaq, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

describe('job operations', () => {
  it('promote: a delayed job runs now, once, even with its scheduler leader up', async () => {
    const server = await startServer();
    let runs = 0;
    const w = await worker(server, { later: async () => ++runs }, {});
    const leader = await startNaq(server, { roles: ['scheduler'] });
    await until(() => leader.isLeader());
    const ops = await producer(server);
    const id = await ops.enqueueIn(3_600_000, 'later', null);
    expect(await ops.getJob(id)).toMatchObject({ id, status: 'delayed', name: 'later', queue: 'default' });
    await expect(ops.promote(id)).resolves.toEqual({ id, promoted: true });
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe(1);
    // No longer delayed: a second promote says what it is now.
    await expect(ops.promote(id)).rejects.toMatchObject({ message: `job ${id} is completed, not delayed: only a delayed job can be promoted` });
    await expect(ops.promote('no-such-job')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(runs).toBe(1);
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
    const server = await startServer();
    let runs = 0;
    const w = await worker(server, { later: async () => ++runs }, {});
    const leader = await startNaq(server, { roles: ['scheduler'] });
    await until(() => leader.isLeader());
    const ops = await producer(server);

    const doomed = await ops.enqueueIn(3_600_000, 'later', null);
    await expect(ops.cancel(doomed)).resolves.toEqual({ id: doomed, status: 'cancelled' });
    expect(await ops.getJob(doomed)).toMatchObject({ status: 'cancelled', name: 'later', queue: 'default' });
    expect((await ops.listJobs({ state: 'delayed' })).jobs).toEqual([]);
    expect((await ops.listJobs({ state: 'cancelled' })).jobs.map((j) => j.id)).toEqual([doomed]);

    const moved = await ops.enqueueIn(3_600_000, 'later', null);
    const before = Date.now();
    const { runAt } = await ops.changeDelay(moved, 300);
    expect(runAt).toBeGreaterThanOrEqual(before + 300);
    await expect(w.waitFor(moved, { timeoutMs: 10_000 })).resolves.toBe(1);
    expect((await ops.getJob(moved))!.startedAt).toBeGreaterThanOrEqual(runAt);
    await expect(ops.changeDelay(moved, 10)).rejects.toMatchObject({ message: `job ${moved} is completed, not delayed: only a delayed job's delay can change` });
    await expect(ops.changeDelay('no-such-job', 10)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(runs).toBe(1);
  });
});
