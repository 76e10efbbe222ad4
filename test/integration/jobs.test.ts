import { Kvm } from '@nats-io/kv';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { JobFailedError } from '../../src/actors/jobs/reads.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import type { JobRecord } from '../../src/model/job.js';
import type { Naq } from '../../src/naq.js';
import { until, connectTo, startServer, stopAllServers } from '../support/harness.js';
import { deadLetters, producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

describe('jobs', () => {
  it('runs a job and records its result; waitFor returns it', async () => {
    const server = await startServer();
    const w = await worker(server, { add: async (d: { a: number; b: number }) => d.a + d.b });
    const id = await w.enqueue('add', { a: 2, b: 3 });
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe(5);
    const record = (await w.getJob(id))!;
    expect(record).toMatchObject({ id, name: 'add', queue: 'default', status: 'completed', result: 5, maxAttempts: 1 });
    expect(record.attempts).toHaveLength(1);
    expect(record.finishedAt! >= record.startedAt!).toBe(true);
  });

  it('shows a job as pending before any worker takes it', async () => {
    const server = await startServer();
    const p = await producer(server);
    const id = await p.enqueue('later', { x: 1 }, { queue: 'idle' });
    expect(await p.getJob(id)).toMatchObject({ id, status: 'pending', queue: 'idle', name: 'later' });
    expect(await p.queueStats('idle')).toMatchObject({ pending: 1, inFlight: 0, dead: 0, workers: 0 });
    expect(await p.getJob('nope')).toBeNull();
  });

  it('rejects bad input before it reaches the server', async () => {
    const server = await startServer();
    const p = await producer(server);
    await expect(p.enqueue('x', {}, { queue: 'bad.queue' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(p.enqueue('x', {}, { attempts: 0 })).rejects.toThrow(/attempts/);
    await expect(p.enqueue('x', 'y'.repeat(2_000_000))).rejects.toThrow(/over the 1048576-byte limit/);
    // A bad job in a bulk sends nothing.
    await expect(p.enqueueBulk([{ name: 'ok', data: 1, opts: { queue: 'bulk' } }, { name: 'bad', data: 1, opts: { queue: 'no spaces' } }])).rejects.toThrow(/queue/);
    expect((await p.queueStats('bulk')).pending).toBe(0);
  });

  it('retries with fixed backoff delays and records every attempt’s error', async () => {
    const server = await startServer();
    const starts: number[] = [];
    const w = await worker(server, {
      flaky: async () => {
        starts.push(Date.now());
        if (starts.length < 3) throw new Error(`boom ${starts.length}`);
        return 'ok';
      },
    });
    const id = await w.enqueue('flaky', null, { attempts: 3, backoff: { type: 'fixed', delay: 300 } });
    await expect(w.waitFor(id, { timeoutMs: 10_000 })).resolves.toBe('ok');
    expect(starts).toHaveLength(3);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(290);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(290);
    const record = (await w.getJob(id))!;
    expect(record.status).toBe('completed');
    expect(record.attempts.map((a) => a.error?.message ?? 'ok')).toEqual(['boom 1', 'boom 2', 'ok']);
  });

  it('backs off exponentially, then dead-letters after the last attempt; retryDead runs it again', async () => {
    const server = await startServer();
    const starts: number[] = [];
    let healthy = false;
    const w = await worker(server, {
      doomed: async (d: { n: number }) => {
        starts.push(Date.now());
        if (!healthy) throw new Error(`always fails ${d.n}`);
        return 'recovered';
      },
    });
    const id = await w.enqueue('doomed', { n: 7 }, { attempts: 3, backoff: { type: 'exponential', delay: 150 } });
    const err = await w.waitFor(id, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).error?.message).toBe('always fails 7');
    expect(starts).toHaveLength(3);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(140);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(290);
    const record = (await w.getJob(id))!;
    expect(record.status).toBe('failed');
    expect(record.attempts).toHaveLength(3);
    const dead = await deadLetters(server);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ jobId: id, reason: 'failed after 3 attempts: always fails 7', job: { name: 'doomed', data: { n: 7 } } });
    expect((await w.queueStats('default')).dead).toBe(1);

    healthy = true;
    await w.retryDead(id);
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe('recovered');
  });

  it('gives a handler its context: ids, attempt numbers, progress recorded while it runs, a logger', async () => {
    const server = await startServer();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: Record<string, unknown>[] = [];
    const w = await worker(server, {
      report: async (_d: null, ctx) => {
        seen.push({ jobId: ctx.jobId, name: ctx.name, queue: ctx.queue, attempt: ctx.attempt, maxAttempts: ctx.maxAttempts, aborted: ctx.signal.aborted });
        ctx.log.info('reporting');
        ctx.progress({ done: 1, of: 2 });
        await gate;
        ctx.progress({ done: 2, of: 2 });
        return 'reported';
      },
    });
    const id = await w.enqueue('report', null, { attempts: 3 });
    await until(async () => (await w.getJob(id))?.progress !== undefined, 5000);
    expect(await w.getJob(id)).toMatchObject({ status: 'active', progress: { done: 1, of: 2 } });
    release();
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe('reported');
    expect(seen).toEqual([{ jobId: id, name: 'report', queue: 'default', attempt: 1, maxAttempts: 3, aborted: false }]);
    expect(await w.getJob(id)).toMatchObject({ status: 'completed', progress: { done: 2, of: 2 } });
  });

  it('times out a handler through its AbortSignal; the attempt fails with a timeout error', async () => {
    const server = await startServer();
    let sawAbort = false;
    const w = await worker(server, {
      slow: (_d: null, ctx) =>
        new Promise((_, reject) => {
          ctx.signal.addEventListener('abort', () => {
            sawAbort = true;
            reject(ctx.signal.reason);
          });
        }),
    });
    const id = await w.enqueue('slow', null, { timeoutMs: 200 });
    const err = (await w.waitFor(id, { timeoutMs: 5000 }).catch((e: unknown) => e)) as JobFailedError;
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err.error).toMatchObject({ code: 'JOB_TIMEOUT', message: 'job timed out after 200 ms' });
    expect(sawAbort).toBe(true);
  });

  it('enqueues the same job id once while it is pending', async () => {
    const server = await startServer();
    const p = await producer(server);
    const a = await p.enqueue('count', { n: 1 }, { jobId: 'same-id' });
    const b = await p.enqueue('count', { n: 2 }, { jobId: 'same-id' });
    expect(a).toBe('same-id');
    expect(b).toBe('same-id');
    let runs = 0;
    const w = await worker(server, { count: async () => ++runs });
    await expect(w.waitFor('same-id', { timeoutMs: 5000 })).resolves.toBe(1);
    // Nothing else is left to deliver: the second enqueue added no message.
    await until(async () => {
      const stats = await w.queueStats('default');
      return stats.pending === 0 && stats.inFlight === 0;
    });
    expect(runs).toBe(1);
  });

  it('one rule for a job id at every moment: a no-op while pending or waiting, a new run once its outcome is recorded', async () => {
    const server = await startServer();
    let runs = 0;
    const w = await worker(server, { count: async () => ++runs });
    await w.enqueue('count', null, { jobId: 'again' });
    await expect(w.waitFor('again', { timeoutMs: 5000 })).resolves.toBe(1);
    // At once, well inside the server's 2-minute duplicate window: it runs again, and waitFor
    // answers with the new run, not the recorded one.
    await w.enqueue('count', null, { jobId: 'again' });
    await expect(w.waitFor('again', { timeoutMs: 5000 })).resolves.toBe(2);
    expect(runs).toBe(2);

    // On a queue no worker serves, the new enqueue is what the id is now: pending, not the old result.
    await w.enqueue('count', null, { jobId: 'again', queue: 'unserved' });
    expect(await w.getJob('again')).toMatchObject({ status: 'pending', queue: 'unserved' });
    await expect(w.waitFor('again', { timeoutMs: 300 })).rejects.toMatchObject({ code: 'TIMEOUT' });

    // Waiting on a dependency that never completes: enqueueing the id again, with or without
    // dependencies, changes nothing.
    await w.enqueue('count', null, { jobId: 'parked', dependsOn: ['never-runs'] });
    const first = await w.getJob('parked');
    expect(first).toMatchObject({ status: 'waiting' });
    await new Promise((r) => setTimeout(r, 5)); // a later enqueue time, which would show
    await w.enqueue('count', null, { jobId: 'parked', dependsOn: ['never-runs'] });
    await w.enqueue('count', null, { jobId: 'parked' });
    expect(await w.getJob('parked')).toEqual(first);
    expect((await w.queueStats('default')).pending).toBe(0);
    expect(runs).toBe(2);
  });

  it('a stored record that breaks the wire format (a foreign worker wrote it) is a clear error naming the field', async () => {
    const server = await startServer();
    const p = await producer(server);
    const nc = await connectTo(server);
    const kv = await new Kvm(nc).open('naq_jobs');
    const record = { v: 1, id: 'foreign', name: 'x', queue: 'default', status: 'completed', maxAttempts: 1, enqueuedAt: 1, attempts: null };
    await kv.put('foreign', JSON.stringify(record));
    await expect(p.getJob('foreign')).rejects.toMatchObject({
      code: 'BAD_RECORD',
      message: 'the record of job foreign does not follow the wire format: attempts is null, expected an array',
    });
    await kv.put('foreign', JSON.stringify({ ...record, attempts: [{ n: 1, startedAt: 2, finishedAt: 3 }] }));
    await expect(p.getJob('foreign')).resolves.toMatchObject({ status: 'completed' });
    await nc.close();
  });

  it('runs a dependent only after its dependencies completed', async () => {
    const server = await startServer();
    const order: string[] = [];
    const w = await worker(server, {
      step: async (d: { name: string; ms: number }) => {
        await new Promise((r) => setTimeout(r, d.ms));
        order.push(d.name);
        return d.name;
      },
    });
    const a = await w.enqueue('step', { name: 'a', ms: 400 });
    const b = await w.enqueue('step', { name: 'b', ms: 200 });
    const c = await w.enqueue('step', { name: 'c', ms: 0 }, { dependsOn: [a, b] });
    expect((await w.getJob(c))?.status).toBe('waiting');
    await expect(w.waitFor(c, { timeoutMs: 10_000 })).resolves.toBe('c');
    expect(order).toEqual(['b', 'a', 'c']);
    // A dependency that already completed releases a new dependent at once.
    const d = await w.enqueue('step', { name: 'd', ms: 0 }, { dependsOn: [a] });
    await expect(w.waitFor(d, { timeoutMs: 10_000 })).resolves.toBe('d');
  });

  it('fails a dependent, naming the dependency, when a dependency fails for good', async () => {
    const server = await startServer();
    let dependentRan = false;
    const w = await worker(server, {
      bad: async () => {
        throw new Error('nope');
      },
      after: async () => {
        dependentRan = true;
      },
    });
    const dep = await w.enqueue('bad', null, { jobId: 'the-dep' });
    const child = await w.enqueue('after', null, { dependsOn: [dep] });
    const err = (await w.waitFor(child, { timeoutMs: 10_000 }).catch((e: unknown) => e)) as JobFailedError;
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err.error?.message).toBe('dependency the-dep failed');
    expect(dependentRan).toBe(false);
  });

  it('cancels a pending job: it never runs', async () => {
    const server = await startServer();
    const p = await producer(server);
    const id = await p.enqueue('never', null, { queue: 'cq' });
    await expect(p.cancel(id)).resolves.toEqual({ id, status: 'cancelled' });
    let ran = false;
    const w = await worker(server, { never: async () => (ran = true), marker: async () => 'm' }, { queues: ['cq'] });
    const marker = await w.enqueue('marker', null, { queue: 'cq' });
    await w.waitFor(marker, { timeoutMs: 5000 });
    expect(ran).toBe(false);
    expect((await w.getJob(id))?.status).toBe('cancelled');
    await expect(w.waitFor(id, { timeoutMs: 1000 })).rejects.toMatchObject({ code: 'JOB_CANCELLED' });
  });

  it('cancels a running job through its AbortSignal', async () => {
    const server = await startServer();
    let started = false;
    let aborted = false;
    const w = await worker(server, {
      long: (_d: null, ctx) =>
        new Promise((_, reject) => {
          started = true;
          ctx.signal.addEventListener('abort', () => {
            aborted = true;
            reject(ctx.signal.reason);
          });
        }),
    });
    const id = await w.enqueue('long', null);
    await until(() => started);
    const r = await w.cancel(id);
    expect(['cancelled', 'cancelling']).toContain(r.status);
    await until(async () => (await w.getJob(id))?.status === 'cancelled');
    expect(aborted).toBe(true);
  });

  it('dead-letters a job whose handler this worker does not have', async () => {
    const server = await startServer();
    const w = await worker(server, { known: async () => 1 });
    const id = await (w as Naq).enqueue('unknown-thing', { x: 1 });
    const err = (await w.waitFor(id, { timeoutMs: 5000 }).catch((e: unknown) => e)) as JobFailedError;
    expect(err.error?.message).toBe('no handler named unknown-thing on this worker');
    const dead = await deadLetters(server);
    expect(dead[0]).toMatchObject({ jobId: id, reason: 'no handler named unknown-thing on this worker' });
  });

  it('dead-letters malformed messages with the decode error and keeps serving', async () => {
    const server = await startServer();
    const w = await worker(server, { ok: async () => 'fine' });
    const nc = await connectTo(server);
    const { jetstream } = await import('@nats-io/jetstream');
    const js = jetstream(nc);
    await js.publish('naq.jobs.default.garbage1', 'this is not json');
    await js.publish('naq.jobs.default.garbage2', JSON.stringify({ v: 99, id: 'x', name: 'ok', queue: 'default', attempts: 1, ts: 1 }));
    await js.publish('naq.jobs.default.garbage3', JSON.stringify({ v: 1, name: 'ok' }));
    await js.publish('naq.jobs.default.garbage4', new Uint8Array([0xff, 0xfe, 0x00, 0x01]));
    const id = await w.enqueue('ok', null);
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe('fine');
    await until(async () => (await deadLetters(server)).length === 4);
    const dead = await deadLetters(server);
    const reasons = Object.fromEntries(dead.map((d) => [d.jobId, d.reason]));
    expect(reasons.garbage1).toMatch(/^undecodable job: not JSON/);
    expect(reasons.garbage2).toBe('undecodable job: unsupported wire version 99 (this worker reads v1)');
    expect(reasons.garbage3).toBe('undecodable job: missing or empty field "id"');
    expect(reasons.garbage4).toMatch(/^undecodable job: not JSON/);
    expect(dead.find((d) => d.jobId === 'garbage1')?.raw).toBe('this is not json');
    expect((await w.getJob('garbage1'))?.status).toBe('failed');
  });

  it('reports heartbeats and queue stats', async () => {
    const server = await startServer();
    const w = await worker(server, { ok: async () => 1 }, { heartbeatMs: 200 });
    const id = await w.enqueue('ok', null);
    await w.waitFor(id, { timeoutMs: 5000 });
    await until(async () => (await w.listWorkers()).some((x) => x.processed === 1));
    const [info] = await w.listWorkers();
    expect(info).toMatchObject({ queues: ['default'], pid: process.pid, processed: 1, failed: 0, status: 'running', concurrency: 4 });
    expect(await w.queueStats('default')).toMatchObject({ pending: 0, inFlight: 0, dead: 0, workers: 1 });
    expect((await w.listQueues()).map((q) => q.queue)).toEqual(['default']);
    await expect(w.purgeQueue('default')).resolves.toEqual({ purged: 0 });
  });

  it('pauses across a nats-server restart and completes every job', async () => {
    const server = await startServer();
    const done = new Set<number>();
    const w = await worker(server, {
      tick: async (d: { i: number }) => {
        await new Promise((r) => setTimeout(r, 10));
        done.add(d.i);
        return d.i;
      },
    }, { concurrency: 8 });
    const ids = await w.enqueueBulk(Array.from({ length: 300 }, (_, i) => ({ name: 'tick' as const, data: { i } })));
    await until(() => done.size >= 50);
    await server.kill('SIGKILL');
    await until(() => w.health().actors['worker:default']?.state.includes('paused') ?? false, 5000);
    await server.restart();
    await until(() => w.health().healthy, 15_000);
    await until(() => done.size === 300, 30_000);
    await until(async () => (await w.queueStats('default')).pending === 0 && (await w.queueStats('default')).inFlight === 0);
    const records = await Promise.all(ids.map((id) => w.getJob(id)));
    expect(records.every((r: JobRecord | null) => r?.status === 'completed')).toBe(true);
  });
});
