/**
 * Flows and batches (issue 13) against a real server: a parent runs after its children and
 * reads their results; each onFailure; creation is all or nothing; a batch's completion job
 * runs once with the counts; a waiting parent can be cancelled; a new leader finishes what an
 * earlier one counted.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobContext } from '../../src/actors/worker/handler.js';
import type { BatchSummary, FlowRecord } from '../../src/model/flow.js';
import { startServer, stopAllServers, until } from '../support/harness.js';
import { producer, startNaq, stopNaqs, worker } from '../support/naqs.js';
import { runCli } from '../support/processes.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

const started: string[] = [];
const handlers = {
  double: async (d: { n: number }, ctx: JobContext) => {
    started.push(ctx.jobId);
    return d.n * 2;
  },
  boom: async () => {
    throw new Error('child broke');
  },
  sum: async (_d: unknown, ctx: JobContext) => {
    started.push(ctx.jobId);
    const results = await ctx.childResults<number>();
    const failures = await ctx.childFailures();
    return { total: Object.values(results).reduce((a, b) => a + b, 0), results, failed: Object.fromEntries(Object.entries(failures).map(([id, e]) => [id, e.message])) };
  },
  report: async (_d: unknown, ctx: JobContext) => ({ batch: ctx.batch }),
};

describe('flows', () => {
  it('a parent runs after its children (on two queues, one nested) and reads their results; getFlow shows the tree', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const flow = await ops.enqueueFlow({
      name: 'sum',
      children: [
        { name: 'double', data: { n: 1 } },
        { name: 'double', data: { n: 2 }, queue: 'other' },
        { name: 'sum', children: [{ name: 'double', data: { n: 10 } }, { name: 'double', data: { n: 20 }, queue: 'other' }] },
      ],
    });
    const [a, b, inner] = flow.children!;
    // Nothing runs yet: the parents wait, and say so.
    expect((await ops.getJob(flow.id))!.status).toBe('waiting');
    expect((await ops.getJob(inner!.id))!.status).toBe('waiting');
    await worker(server, handlers, { queues: ['default', 'other'] });
    const result = await ops.waitFor<{ total: number; results: Record<string, unknown> }>(flow.id, { timeoutMs: 15_000 });
    expect(result.results).toEqual({ [a!.id]: 2, [b!.id]: 4, [inner!.id]: { total: 60, results: { [inner!.children![0]!.id]: 20, [inner!.children![1]!.id]: 40 }, failed: {} } });
    // Each parent started after every one of its children.
    expect(started.indexOf(inner!.id)).toBeGreaterThan(Math.max(...inner!.children!.map((c) => started.indexOf(c.id))));
    expect(started.indexOf(flow.id)).toBe(started.length - 1);
    const tree = await ops.getFlow(flow.id);
    expect(tree.state).toBe('completed');
    expect(tree.children!.map((c) => [c.id, c.queue, c.state])).toEqual([
      [a!.id, 'default', 'completed'],
      [b!.id, 'other', 'completed'],
      [inner!.id, 'default', 'completed'],
    ]);
    expect(tree.children![2]!.children!.map((c) => c.state)).toEqual(['completed', 'completed']);
    expect((await ops.getJob(a!.id))!.parent).toBe(flow.id);
  });

  it('onFailure: fail fails the parent naming the child; ignore runs it without the result; continue shows the error', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await worker(server, handlers);
    const failing = await ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', data: { n: 1 } }, { name: 'boom', opts: { attempts: 1 } }] });
    await expect(ops.waitFor(failing.id, { timeoutMs: 10_000 })).rejects.toThrow(`child ${failing.children![1]!.id} failed: child broke`);
    expect((await ops.getJob(failing.id))!.error!.code).toBe('CHILD_FAILED');
    const tree = await ops.getFlow(failing.id);
    expect([tree.state, tree.children![1]!.state]).toEqual(['failed', 'failed']);

    const lenient = await ops.enqueueFlow({
      name: 'sum',
      children: [{ name: 'double', data: { n: 3 } }, { name: 'boom', opts: { attempts: 1 }, onFailure: 'ignore' }, { name: 'boom', opts: { attempts: 1 }, onFailure: 'continue' }],
    });
    const [ok, , seen] = lenient.children!;
    expect(await ops.waitFor(lenient.id, { timeoutMs: 10_000 })).toEqual({ total: 6, results: { [ok!.id]: 6 }, failed: { [seen!.id]: 'child broke' } });
    expect((await ops.getFlow(lenient.id)).children!.map((c) => c.onFailure)).toEqual([undefined, 'ignore', 'continue']);
  });

  it('is all or nothing: a child the server refuses rejects the call, and what was published is cancelled', async () => {
    const server = await startServer({ configText: 'max_payload: 4096\n' });
    const ops = await startNaq(server, { jobs: { maxPayloadBytes: 1_000_000 } });
    // A leader counts the notices the rollback's cancellations send.
    await worker(server, { ...handlers, double: async (d: { n: number }) => d.n * 2 }, { queues: ['elsewhere'] });
    const first = 'flow-first-child';
    await expect(
      ops.enqueueFlow({ name: 'sum', opts: { jobId: 'flow-parent' }, children: [{ name: 'double', data: { n: 1 }, opts: { jobId: first } }, { name: 'double', data: { big: 'x'.repeat(8000) } }] }),
    ).rejects.toThrow(/payload/i);
    expect((await ops.getJob(first))!.status).toBe('cancelled');
    expect(await ops.getJob('flow-parent')).toBeNull();
    await expect(ops.getFlow('flow-parent')).rejects.toThrow(/not found/);
    // The ids are free again, and the parent's notices from the rollback are gone: the new
    // flow waits for its own child only, and runs.
    const again = await ops.enqueueFlow({ name: 'sum', queue: 'elsewhere', opts: { jobId: 'flow-parent' }, children: [{ name: 'double', data: { n: 5 }, queue: 'elsewhere' }] });
    expect(again.id).toBe('flow-parent');
    expect(await ops.waitFor(again.id, { timeoutMs: 10_000 })).toMatchObject({ total: 10 });
  });

  it('refuses bad trees before anything is sent', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await expect(ops.enqueueFlow({ name: 'sum' })).rejects.toThrow(/no children/);
    await expect(ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', onFailure: 'maybe' as never }] })).rejects.toThrow(/onFailure must be one of fail, ignore, continue/);
    await expect(ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', opts: { dependsOn: ['x'] } as never }] })).rejects.toThrow(/dependsOn cannot be used/);
    await expect(ops.enqueueFlow({ name: 'sum', opts: { jobId: 'same' }, children: [{ name: 'double', opts: { jobId: 'same' } }] })).rejects.toThrow(/appears twice/);
    await expect(ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', queue: 'bad queue' }] })).rejects.toThrow(/invalid queue name/);
    expect((await ops.queueStats('default')).pending).toBe(0);
    // A chosen id that is pending already would never tell the parent.
    await ops.enqueue('double', { n: 1 }, { jobId: 'busy', queue: 'elsewhere' });
    await expect(ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', opts: { jobId: 'busy' } }] })).rejects.toThrow(/busy is already pending or waiting/);
    await expect(ops.enqueueBatch([{ name: 'double', opts: { jobId: 'busy' } }], { onComplete: { name: 'report' } })).rejects.toThrow(/busy is already pending/);
  });

  it('a parent waiting for its children can be removed; one that failed because of a child cannot be retried alone', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const flow = await ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', data: { n: 1 } }] });
    expect(await ops.removeJob(flow.id)).toEqual({ id: flow.id, removed: 'waiting' });
    await worker(server, handlers);
    expect(await ops.waitFor(flow.children![0]!.id, { timeoutMs: 10_000 })).toBe(2);
    const failing = await ops.enqueueFlow({ name: 'sum', children: [{ name: 'boom', opts: { attempts: 1 } }] });
    await expect(ops.waitFor(failing.id, { timeoutMs: 10_000 })).rejects.toThrow(/child .* failed/);
    await expect(ops.retryDead(failing.id)).rejects.toThrow(/flow parent that failed because child .* failed: child broke: it cannot be retried on its own/);
    // The removed parent never ran (its child finished long ago).
    expect(started).not.toContain(flow.id);
    expect(await ops.getJob(flow.id)).toBeNull();
    await expect(ops.enqueueBatch([{ name: 'double' }], { onComplete: { name: 'report', opts: { jobId: 'x' } } })).rejects.toThrow(/give it as batchId/);
  });

  it('a parent waiting for its children can be cancelled; its children go on', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const flow = await ops.enqueueFlow({ name: 'sum', children: [{ name: 'double', data: { n: 1 } }] });
    expect(await ops.cancel(flow.id)).toEqual({ id: flow.id, status: 'cancelled' });
    await worker(server, handlers);
    expect(await ops.waitFor(flow.children![0]!.id, { timeoutMs: 10_000 })).toBe(2);
    await expect(ops.waitFor(flow.id, { timeoutMs: 2000 })).rejects.toThrow(/cancelled/);
    expect(started).not.toContain(flow.id);
  });
});

describe('naq flow and naq batch', () => {
  it('print the tree and the progress (text and --json); an unknown id exits 1, a bad one 2', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const url = ['--nats-url', server.url];
    const flow = await ops.enqueueFlow({ name: 'sum', opts: { jobId: 'root' }, children: [{ name: 'double', opts: { jobId: 'kid' }, queue: 'other', onFailure: 'ignore' }] });
    const text = await runCli(['flow', flow.id, ...url]);
    expect([text.code, text.stdout]).toEqual([0, 'root sum (default) waiting\n  kid double (other) pending [onFailure ignore]\n']);
    const json = JSON.parse((await runCli(['flow', flow.id, '--json', ...url])).stdout);
    expect(json).toMatchObject({ id: 'root', state: 'waiting', children: [{ id: 'kid', state: 'pending', onFailure: 'ignore' }] });
    const batch = await ops.enqueueBatch([{ name: 'double', data: { n: 1 } }], { batchId: 'b1', onComplete: { name: 'report' } });
    const shown = await runCli(['batch', batch, ...url]);
    expect(shown.stdout).toContain('batch b1: running\n  jobs 1: 0 completed, 0 failed, 1 not finished\n  on completion: report (default), job b1\n');
    const missing = await runCli(['flow', 'nope', ...url]);
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringContaining('flow nope not found')]);
    const bad = await runCli(['batch', 'a.b', ...url]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('invalid id: expected a job id')]);
  });
});

describe('batches', () => {
  it('runs the completion job once, with the counts and the failed ids; getBatch shows progress then the outcome', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const jobs = [...Array.from({ length: 18 }, (_, n) => ({ name: 'double', data: { n } })), { name: 'boom', opts: { attempts: 1, jobId: 'bad-1' } }, { name: 'boom', opts: { attempts: 1, jobId: 'bad-2' } }];
    const id = await ops.enqueueBatch(jobs, { onComplete: { name: 'report', queue: 'done' } });
    expect(await ops.getBatch(id)).toMatchObject({ id, state: 'running', total: 20, completed: 0, failed: 0, pending: 20 });
    await worker(server, handlers, { queues: ['default', 'done'] });
    const { batch } = await ops.waitFor<{ batch: BatchSummary }>(id, { timeoutMs: 15_000 });
    expect({ ...batch, failedIds: [...batch.failedIds].sort() }).toEqual({ id, total: 20, completed: 18, failed: 2, failedIds: ['bad-1', 'bad-2'] });
    expect(await ops.getBatch(id)).toMatchObject({ id, state: 'completed', total: 20, completed: 18, failed: 2, pending: 0, completion: { id, name: 'report', queue: 'done' } });
    // Once: one record of one run.
    expect((await ops.getJob(id))!.attempts).toHaveLength(1);
    await expect(ops.enqueueBatch(jobs, { onComplete: { name: 'report' }, batchId: id })).rejects.toThrow(/already the parent/);
  });

  it('a new leader counts what the first one did not see', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const fast = { scheduler: { leaderTtlMs: 1500, renewMs: 300, electionRetryMs: 100 } };
    // A worker that is not a candidate for leadership runs the jobs: nobody counts yet.
    const runner = await startNaq(server, { roles: ['worker'], worker: { queues: ['default'], concurrency: 4, fireSchedules: false } }, handlers);
    const id = await ops.enqueueBatch(Array.from({ length: 10 }, (_, n) => ({ name: 'double', data: { n } })), { onComplete: { name: 'report' } });
    await until(async () => (await ops.getBatch(id)).completed === 10);
    expect((await ops.getJob(id))!.status).toBe('waiting');
    // A leader comes up: it reads the notices it missed and releases the completion job.
    await startNaq(server, { roles: ['worker'], ...fast, worker: { queues: ['other'] } }, handlers);
    expect(await ops.waitFor<{ batch: BatchSummary }>(id, { timeoutMs: 10_000 })).toEqual({ batch: { id, total: 10, completed: 10, failed: 0, failedIds: [] } });
    expect(runner).toBeDefined();
  });

  it('a leader that died after closing a parent\'s record but before releasing it: the next one releases it', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await startNaq(server, { roles: ['worker'], worker: { queues: ['default'], fireSchedules: false } }, handlers);
    const id = await ops.enqueueBatch([{ name: 'double', data: { n: 1 } }], { onComplete: { name: 'report' } });
    await until(async () => (await ops.getBatch(id)).completed === 1);
    // What a leader leaves when it dies between its close and its publish: the record says
    // released, the notices are still there, the completion job is nowhere.
    const entry = (await ops.kv.get('naq_flows', id))!;
    const record = JSON.parse(entry.value as string) as FlowRecord;
    const summary = { id, total: 1, completed: 1, failed: 0, failedIds: [] };
    await ops.kv.update('naq_flows', id, JSON.stringify({ ...record, state: 'released', closedAt: Date.now(), summary }), entry.revision);
    expect(await ops.getJob(id)).toBeNull();
    await startNaq(server, { roles: ['worker'], worker: { queues: ['other'] } }, handlers);
    expect(await ops.waitFor(id, { timeoutMs: 10_000 })).toEqual({ batch: summary });
  });
});
