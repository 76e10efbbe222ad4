/**
 * Groups (issue 12): jobs with a `group` take turns; a queue's group limits bound each group's
 * running jobs and starts across every worker; a rate-limited handler holds its group only.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connectTo, until, startServer, stopAllServers } from '../support/harness.js';
import { producer, startNaq, stopNaqs, worker } from '../support/naqs.js';
import { busiestWindow } from '../support/windows.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('groups', () => {
  it('fair: a group enqueued behind a 2,000-job backlog of another gets its turn at once; listing, stats and getJob see waiting grouped jobs', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const done: Array<[string, number]> = [];
    await worker(server, { job: async (d: { g: string }) => void (await sleep(10), done.push([d.g, Date.now()])) }, { concurrency: 5 });
    const big = await ops.enqueueBulk(Array.from({ length: 2000 }, () => ({ name: 'job' as const, data: { g: 'A' }, opts: { group: 'tenant-a' } })));
    expect(await ops.getJob(big[1999]!)).toMatchObject({ status: 'pending', group: 'tenant-a' });
    const listed = await ops.listJobs({ queue: 'default', state: 'pending', limit: 10 });
    expect(listed.jobs).toHaveLength(10);
    const enqueuedAt = Date.now();
    const small = await Promise.all(Array.from({ length: 10 }, () => ops.enqueue('job', { g: 'B' }, { group: 'tenant-b' })));
    for (const id of small) await ops.waitFor(id, { timeoutMs: 10_000 });
    const lastB = Math.max(...done.filter(([g]) => g === 'B').map(([, t]) => t));
    // First come, first served would take 2,000 × 10 ms / 5 = 4 s.
    expect(lastB - enqueuedAt).toBeLessThan(1000);
    expect(done.filter(([g]) => g === 'A').length).toBeLessThan(1500);
    expect((await ops.queueStats('default')).pending).toBeGreaterThan(0);
    expect(await ops.getJob(small[0]!)).toMatchObject({ status: 'completed', group: 'tenant-b' });
  });

  it('per-group concurrency holds across two workers, and both groups move together', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await ops.setGroupLimit('default', { concurrency: 2 });
    const running = new Map<string, number>();
    const most = new Map<string, number>();
    const order: string[] = [];
    const job = async (d: { g: string }) => {
      running.set(d.g, (running.get(d.g) ?? 0) + 1);
      most.set(d.g, Math.max(most.get(d.g) ?? 0, running.get(d.g)!));
      order.push(d.g);
      await sleep(100);
      running.set(d.g, running.get(d.g)! - 1);
    };
    await Promise.all([worker(server, { job }, { concurrency: 4 }), worker(server, { job }, { concurrency: 4 })]);
    const ids = await ops.enqueueBulk(['A', 'B'].flatMap((g) => Array.from({ length: 12 }, () => ({ name: 'job' as const, data: { g }, opts: { group: g } }))));
    for (const id of ids) await ops.waitFor(id, { timeoutMs: 20_000 });
    expect(most.get('A')).toBe(2);
    expect(most.get('B')).toBe(2);
    // Turns: B did not wait for A's twelve.
    expect(order.slice(0, 6)).toContain('B');
    expect(await ops.queueStats('default')).toMatchObject({ groups: { concurrency: 2 } });
  });

  it('without a group limit of its own, a queue gets jobs.groupConcurrency from the config of the process releasing its jobs', async () => {
    const server = await startServer();
    const ops = await producer(server);
    let running = 0;
    let most = 0;
    const job = async () => {
      most = Math.max(most, ++running);
      await sleep(50);
      running--;
    };
    await startNaq(server, { roles: ['worker'], worker: { queues: ['default'], concurrency: 8, ackWaitMs: 5000 }, jobs: { groupConcurrency: 1 } }, { job });
    const ids = await ops.enqueueBulk(Array.from({ length: 6 }, () => ({ name: 'job' as const, data: null, opts: { group: 'solo' } })));
    for (const id of ids) await ops.waitFor(id, { timeoutMs: 10_000 });
    expect(most).toBe(1);
  });

  it('a per-group rate limit: no group starts more than 3 in any second, and the groups do not wait for one another', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await ops.setGroupLimit('default', { rate: { max: 3, durationMs: 1000 } });
    const starts = new Map<string, number[]>();
    await worker(server, { job: async (d: { g: string }) => void (starts.get(d.g) ?? starts.set(d.g, []).get(d.g)!).push(Date.now()) }, { concurrency: 10 });
    const ids = await ops.enqueueBulk(['A', 'B', 'C'].flatMap((g) => Array.from({ length: 7 }, () => ({ name: 'job' as const, data: { g }, opts: { group: g } }))));
    for (const id of ids) await ops.waitFor(id, { timeoutMs: 20_000 });
    for (const g of ['A', 'B', 'C']) {
      const at = starts.get(g)!.sort((a, b) => a - b);
      expect(at).toHaveLength(7);
      expect(busiestWindow(at, 1000)).toBeLessThanOrEqual(3);
      // 7 starts at 3 a second: the last one in the third window, not later.
      expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(2000);
      expect(at.at(-1)! - at[0]!).toBeLessThan(4000);
    }
  });

  it("ctx.rateLimit in a grouped job holds that group only; the job comes back without using an attempt", async () => {
    const server = await startServer();
    const ops = await producer(server);
    const starts: Array<[string, number]> = [];
    let told = false;
    const job = async (d: { g: string }, ctx: JobContext) => {
      starts.push([d.g, Date.now()]);
      if (d.g === 'A' && !told) {
        told = true;
        ctx.rateLimit(1500);
      }
      return ctx.attempt;
    };
    await worker(server, { job }, { concurrency: 2 });
    const first = await ops.enqueue('job', { g: 'A' }, { group: 'A', attempts: 1 });
    await until(() => told);
    const heldAt = Date.now();
    const more = await ops.enqueueBulk([...Array.from({ length: 3 }, () => ({ name: 'job' as const, data: { g: 'A' }, opts: { group: 'A' } })), ...Array.from({ length: 3 }, () => ({ name: 'job' as const, data: { g: 'B' }, opts: { group: 'B' } }))]);
    for (const id of more) await ops.waitFor(id, { timeoutMs: 10_000 });
    expect(await ops.waitFor(first, { timeoutMs: 10_000 })).toBe(1);
    const laterA = starts.filter(([g], i) => g === 'A' && i > 0).map(([, t]) => t);
    const b = starts.filter(([g]) => g === 'B').map(([, t]) => t);
    // B ran during A's hold; A's other jobs waited for its end.
    expect(Math.max(...b)).toBeLessThan(heldAt + 1000);
    expect(Math.min(...laterA)).toBeGreaterThanOrEqual(heldAt + 1200);
    expect((await ops.queueStats('default')).heldUntil).toBeUndefined();
  });

  it('a new leader counts the grouped jobs an earlier one released and no worker finished: the limit holds across the change', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await ops.setGroupLimit('default', { concurrency: 1 });
    // As an earlier leader left it: one job of group g taken from the staging lane and released
    // to its lane, one still staged.
    await ops.enqueue('job', { id: 'released-1' }, { group: 'g', jobId: 'released-1' });
    const nc = await connectTo(server);
    const js = jetstream(nc);
    // The staging lane's consumer as the workers make it (no worker has run yet).
    await (await jetstreamManager(nc)).consumers.add('NAQ_JOBS', { durable_name: 'naq-default~g', filter_subject: 'naq.jobs.default~g.>', ack_policy: AckPolicy.Explicit });
    const staging = await js.consumers.get('NAQ_JOBS', 'naq-default~g');
    const taken = await staging.next({ expires: 5000 });
    expect(taken?.subject).toBe('naq.jobs.default~g.released-1');
    await js.publish('naq.jobs.default.released-1', taken!.data);
    await taken!.ackAck();
    await nc.close();
    const staged = await ops.enqueue('job', { id: 'staged' }, { group: 'g' });
    const spans = new Map<string, [number, number]>();
    await worker(server, { job: async (d: { id: string }) => {
      const start = Date.now();
      await sleep(800);
      spans.set(d.id, [start, Date.now()]);
    } }, { concurrency: 4 });
    await ops.waitFor(staged, { timeoutMs: 15_000 });
    await until(() => spans.has('released-1'));
    expect(spans.get('staged')![0]).toBeGreaterThanOrEqual(spans.get('released-1')![1]);
  });

  it('a grouped job the dispatcher holds is not released once cancelled, removed or purged', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await ops.setGroupLimit('default', { concurrency: 1 });
    const ran: string[] = [];
    await worker(server, { job: async (d: { n: number }) => void (ran.push(`g${d.n}`), await sleep(d.n === 0 ? 1500 : 10)) }, { concurrency: 4 });
    const first = await ops.enqueue('job', { n: 0 }, { group: 'g' });
    await until(() => ran.length === 1);
    // Held by the dispatcher behind the running one (the group may run one at a time).
    const cancelled = await ops.enqueue('job', { n: 1 }, { group: 'g' });
    const removed = await ops.enqueue('job', { n: 2 }, { group: 'g' });
    const kept = await ops.enqueue('job', { n: 3 }, { group: 'g' });
    await sleep(300);
    expect(await ops.cancel(cancelled)).toMatchObject({ id: cancelled });
    expect(await ops.removeJob(removed)).toMatchObject({ id: removed, removed: 'pending' });
    await ops.waitFor(first, { timeoutMs: 10_000 });
    await ops.waitFor(kept, { timeoutMs: 10_000 });
    await sleep(300);
    expect(ran).toEqual(['g0', 'g3']);
    expect(await ops.getJob(cancelled)).toMatchObject({ status: 'cancelled' });
    expect(await ops.getJob(removed)).toBeNull();
    // Purged while held: none runs.
    await ops.enqueueBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'job' as const, data: { n: 10 + i }, opts: { group: 'h' } })));
    expect((await ops.purgeQueue('default')).purged).toBeGreaterThanOrEqual(1);
    await sleep(2500);
    expect(ran.filter((r) => Number(r.slice(1)) >= 10).length).toBeLessThanOrEqual(1);
  });

  it('bad group options are refused, naming them', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await expect(ops.enqueue('x', null, { group: '' })).rejects.toThrow(/group must be a string of 1 to 256 characters/);
    await expect(ops.setGroupLimit('default', { concurrency: 0 })).rejects.toThrow(/groups.concurrency must be an integer from 1/);
    await expect(ops.setGroupLimit('default', {})).rejects.toThrow(/needs concurrency or rate/);
    await expect(ops.setGroupLimit('default', { rate: { max: 0, durationMs: 10 } })).rejects.toThrow(/limit.max/);
    expect(await ops.setGroupLimit('default', null)).toEqual({ queue: 'default', groups: null });
  });
});
