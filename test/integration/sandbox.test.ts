/**
 * Sandboxed processors (issue 13): a handlers module's handlers in worker threads
 * (actors/worker/sandbox.ts), with the handlers of test/support/fixtures/sandbox-handlers.mjs.
 * The busy loop is the issue's: 5 s with an ack wait of 2 s (run in-process, the same job was
 * delivered 3 times, measured while writing this).
 */
import { isMainThread } from 'node:worker_threads';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadSandboxedHandlers, type SandboxPool } from '../../src/actors/worker/sandbox.js';
import { JobFailedError } from '../../src/actors/jobs/reads.js';
import { cleanEnv, connectTo, startServer, stopAllServers, until, type TestServer } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';
import { CLI, fixture } from '../support/paths.js';
import { killSpawned, spawned } from '../support/processes.js';

const HANDLERS = fixture('sandbox-handlers.mjs');
const pools: SandboxPool[] = [];

afterEach(async () => {
  killSpawned();
  await stopNaqs();
  await Promise.all(pools.splice(0).map((p) => p.close()));
});
afterAll(stopAllServers);

/** The fixture's handlers in a pool of `threads`, closed after the test. */
async function sandboxed(threads: number) {
  const loaded = await loadSandboxedHandlers(HANDLERS, { threads });
  pools.push(loaded.pool);
  return loaded;
}

/** The module's middleware wraps every result: `{ middlewareInMain, result }`. */
const wrapped = (result: unknown) => ({ middlewareInMain: true, result });

/**
 * Deliveries the queue's consumer made, redeliveries included (num_redelivered counts only
 * those still unacked: after the ack it reads 0 whatever happened).
 */
async function deliveries(server: TestServer, queue = 'default'): Promise<number> {
  const nc = await connectTo(server);
  try {
    return (await (await jetstreamManager(nc)).consumers.info('NAQ_JOBS', `naq-${queue}`)).delivered.consumer_seq;
  } finally {
    await nc.close();
  }
}

describe('sandboxed processors', () => {
  it('a 5 s busy loop with a 2 s ack wait runs once, in a thread, and is never redelivered: the main thread keeps it alive', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const { handlers } = await sandboxed(2);
    const runs: string[] = [];
    const w = await worker(server, handlers, { concurrency: 2, ackWaitMs: 2000 });
    w.use(async (job, _ctx, next) => {
      runs.push(job.id);
      return next();
    });
    const id = await ops.enqueue('busy', { ms: 5000 });
    const result = (await ops.waitFor(id, { timeoutMs: 20_000 })) as { middlewareInMain: boolean; result: { threadId: number; spins: boolean } };
    expect(result.middlewareInMain).toBe(true);
    expect(result.result.threadId).toBeGreaterThan(0);
    expect(runs).toEqual([id]);
    const record = (await ops.getJob(id))!;
    expect(record.attempts.map((a) => a.n)).toEqual([1]);
    expect(await deliveries(server)).toBe(1);
  });

  it('a throw, a crash (a throw in a timer) and process.exit each fail that attempt only, and the retry succeeds; progress, log lines, rate limits and middleware cross the thread', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const { handlers, pool } = await sandboxed(4);
    const inMain: boolean[] = [];
    const w = await worker(server, handlers, { concurrency: 4 });
    w.use(async (_job, _ctx, next) => {
      inMain.push(isMainThread);
      return next();
    });
    const retry = { attempts: 2, backoff: { type: 'fixed' as const, delay: 10 } };
    const ids = {
      throws: await ops.enqueue('throws', {}, retry),
      crashes: await ops.enqueue('crashes', {}, retry),
      exits: await ops.enqueue('exits', {}, retry),
    };
    for (const id of Object.values(ids)) expect(await ops.waitFor(id, { timeoutMs: 15_000 })).toEqual(wrapped('recovered'));
    const firstErrors = await Promise.all(Object.values(ids).map(async (id) => (await ops.getJob(id))!.attempts.map((a) => a.error?.code)));
    expect(firstErrors).toEqual([
      ['E_THREAD', undefined],
      ['SANDBOX_CRASHED', undefined],
      ['SANDBOX_CRASHED', undefined],
    ]);
    expect((await ops.getJob(ids.exits))!.attempts[0]!.error!.message).toContain('exited (code 3)');
    expect((await ops.getJob(ids.crashes))!.attempts[0]!.error!.message).toContain('thrown in a timer');
    expect(pool.stats().crashed).toBe(2);

    const echo = await ops.enqueue('echo', { x: 1 });
    expect(await ops.waitFor(echo, { timeoutMs: 10_000 })).toMatchObject(wrapped({ data: { x: 1 }, attempt: 1, jobId: echo }));
    const record = (await ops.getJob(echo))!;
    expect(record.progress).toEqual({ step: 1 });
    expect(record.logs!.map((l) => [l.level, l.msg])).toEqual([
      ['info', 'hello from the thread'],
      ['info', 'plain'],
    ]);

    const limited = await ops.enqueue('limited', { until: Date.now() + 200 });
    expect(await ops.waitFor(limited, { timeoutMs: 10_000 })).toEqual(wrapped('after the limit'));
    expect((await ops.getJob(limited))!.deferred).toBeGreaterThanOrEqual(1);

    const unclonable = await ops.enqueue('unclonable', {});
    const failed = await ops.waitFor(unclonable, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(JobFailedError);
    expect((failed as JobFailedError).error?.code).toBe('RESULT_NOT_SERIALIZABLE');
    // Every attempt passed through the middleware `use()` added (in the main thread, where it runs).
    expect(inMain.length).toBeGreaterThanOrEqual(9);
  });

  it('a timeout terminates the thread, and the next job runs on a new one', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const { handlers, pool } = await sandboxed(1);
    await worker(server, handlers, { concurrency: 1 });
    const stuck = await ops.enqueue('busy', { ms: 60_000 }, { timeoutMs: 300 });
    const failed = await ops.waitFor(stuck, { timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(JobFailedError);
    expect((failed as JobFailedError).error?.code).toBe('JOB_TIMEOUT');
    expect(pool.stats()).toMatchObject({ terminated: 1, crashed: 0 });
    const next = await ops.enqueue('echo', { after: 'timeout' });
    expect(await ops.waitFor(next, { timeoutMs: 10_000 })).toMatchObject(wrapped({ data: { after: 'timeout' } }));
    expect(pool.stats()).toMatchObject({ started: 2, threads: 1 });
  });

  it('a flow parent in a thread reads its children\'s results and failures, and a batch completion its counts', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const { handlers } = await sandboxed(2);
    await worker(server, handlers, { concurrency: 2 });
    const flow = await ops.enqueueFlow({ name: 'gather', children: [{ name: 'echo', data: 1 }, { name: 'throws', opts: { attempts: 1 }, onFailure: 'continue' }] });
    const [ok, failed] = flow.children!;
    const out = (await ops.waitFor<{ result: { results: Record<string, { result: { data: unknown } }>; failures: string[]; inMain: boolean } }>(flow.id, { timeoutMs: 10_000 })).result;
    expect([out.results[ok!.id]!.result.data, out.failures, out.inMain]).toEqual([1, [failed!.id], false]);
    const batch = await ops.enqueueBatch([{ name: 'echo', data: 2 }], { onComplete: { name: 'gather' } });
    expect(await ops.waitFor(batch, { timeoutMs: 10_000 })).toMatchObject(wrapped({ batch: { id: batch, total: 1, completed: 1, failed: 0 } }));
  });

  it('cancelling a running sandboxed job terminates its thread', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const { handlers, pool } = await sandboxed(2);
    await worker(server, handlers, { concurrency: 2 });
    const id = await ops.enqueue('busy', { ms: 60_000 });
    await until(() => pool.stats().busy === 1, 10_000);
    await ops.cancel(id);
    await until(async () => (await ops.getJob(id))?.status === 'cancelled', 10_000);
    expect(pool.stats()).toMatchObject({ terminated: 1, busy: 0 });
    const next = await ops.enqueue('echo', { after: 'cancel' });
    expect(await ops.waitFor(next, { timeoutMs: 10_000 })).toMatchObject(wrapped({ data: { after: 'cancel' } }));
  });

  it('naq worker --sandbox runs the handlers in threads of the built pool', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const child = spawned(process.execPath, [CLI, 'worker', '--sandbox', '--handlers', HANDLERS, '--queue', 'cli', '--concurrency', '2', '--nats-url', server.url], {
      env: cleanEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    await until(() => /worker handlers loaded/.test(stderr) || child.exitCode !== null, 20_000);
    expect(stderr).toContain('"sandbox":true');
    const id = await ops.enqueue('echo', { via: 'cli' }, { queue: 'cli' });
    const result = (await ops.waitFor(id, { timeoutMs: 15_000 })) as { middlewareInMain: boolean; result: { threadId: number } };
    expect(result.middlewareInMain).toBe(true);
    expect(result.result.threadId).toBeGreaterThan(0);
    child.kill('SIGTERM');
    await until(() => child.exitCode !== null, 15_000);
    expect(child.exitCode).toBe(0);
  });
});
