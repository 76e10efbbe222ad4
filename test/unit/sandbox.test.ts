/**
 * The sandbox pool without a server (actors/worker/sandbox.ts): threads bounded and reused,
 * aborts, deaths and closing; and errors crossing from a thread (sandbox-messages.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { errorInfo, withStack } from '../../src/core/errors.js';
import { RateLimitedError, type JobContext } from '../../src/actors/worker/handler.js';
import { loadSandboxedHandlers, SandboxClosedError, SandboxCrashError, type SandboxPool } from '../../src/actors/worker/sandbox.js';
import { describeThrown, rebuildError } from '../../src/actors/worker/sandbox-messages.js';
import { until } from '../support/harness.js';
import { fixture } from '../support/paths.js';

const pools: SandboxPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

async function sandboxed(threads: number) {
  const loaded = await loadSandboxedHandlers(fixture('sandbox-handlers.mjs'), { threads });
  pools.push(loaded.pool);
  return loaded;
}

/** A ctx that records what the thread sends back, with its own abort controller. */
function fakeCtx(attempt = 1) {
  const controller = new AbortController();
  const progress: unknown[] = [];
  const lines: Array<[string, unknown[]]> = [];
  const log = Object.assign((...args: unknown[]) => lines.push(['info', args]), {
    info: (...args: unknown[]) => lines.push(['info', args]),
    warn: (...args: unknown[]) => lines.push(['warn', args]),
  });
  const ctx = {
    jobId: 'job-1',
    name: 'n',
    queue: 'q',
    attempt,
    maxAttempts: 2,
    signal: controller.signal,
    progress: (value: unknown) => void progress.push(value),
    log,
    rateLimit: () => {
      throw new Error('not here');
    },
  } as unknown as JobContext;
  return { ctx, controller, progress, lines };
}

describe('the sandbox pool', () => {
  it("runs a handler in a thread with the module's middleware in the main thread; progress and log lines reach the job's ctx", async () => {
    const { handlers, pool } = await sandboxed(2);
    const { ctx, progress, lines } = fakeCtx();
    const result = (await handlers.echo!({ x: 1 }, ctx)) as { middlewareInMain: boolean; result: { threadId: number; jobId: string; attempt: number } };
    expect(result.middlewareInMain).toBe(true);
    expect(result.result).toMatchObject({ jobId: 'job-1', attempt: 1, data: { x: 1 } });
    expect(result.result.threadId).toBeGreaterThan(0);
    expect(progress).toEqual([{ step: 1 }]);
    expect(lines).toEqual([
      ['info', ['hello from %s', 'the thread']],
      ['info', ['plain']],
    ]);
    expect(pool.stats()).toMatchObject({ threads: 1, busy: 0, started: 1 });
  });

  it('never runs more threads than asked: a job waits for a free one, and threads are reused', async () => {
    const { handlers, pool } = await sandboxed(1);
    const a = handlers.busy!({ ms: 200 }, fakeCtx().ctx);
    const b = handlers.busy!({ ms: 1 }, fakeCtx().ctx);
    expect(pool.stats()).toMatchObject({ threads: 1, busy: 1, waiting: 1 });
    const [ra, rb] = (await Promise.all([a, b])) as Array<{ result: { threadId: number } }>;
    expect(ra!.result.threadId).toBe(rb!.result.threadId);
    expect(pool.stats()).toMatchObject({ threads: 1, busy: 0, waiting: 0, started: 1 });
  });

  it('an abort rejects with its reason: a waiting job never starts, a running one has its thread terminated', async () => {
    const { handlers, pool } = await sandboxed(1);
    const running = fakeCtx();
    const waiting = fakeCtx();
    const a = handlers.busy!({ ms: 60_000 }, running.ctx);
    const b = handlers.busy!({ ms: 1 }, waiting.ctx);
    waiting.controller.abort(new Error('cancelled while waiting'));
    await expect(b).rejects.toThrow('cancelled while waiting');
    await until(() => pool.stats().busy === 1);
    running.controller.abort(new Error('timed out'));
    await expect(a).rejects.toThrow('timed out');
    expect(pool.stats()).toMatchObject({ threads: 0, terminated: 1, crashed: 0 });
    expect(await handlers.busy!({ ms: 1 }, fakeCtx().ctx)).toMatchObject({ middlewareInMain: true });
    expect(pool.stats()).toMatchObject({ threads: 1, started: 2 });
  });

  it('a thread terminated in native code counts against the bound until it exits: the next job waits for it', async () => {
    const { handlers, pool } = await sandboxed(1);
    const running = fakeCtx();
    const a = handlers.native!({ iterations: 1_500_000 }, running.ctx);
    await until(() => pool.stats().busy === 1);
    // Let the thread enter pbkdf2Sync, then abort: terminate() waits for it to come back.
    await new Promise((r) => setTimeout(r, 100));
    running.controller.abort(new Error('timed out'));
    await expect(a).rejects.toThrow('timed out');
    const b = handlers.busy!({ ms: 1 }, fakeCtx().ctx);
    expect(pool.stats()).toMatchObject({ threads: 0, stopping: 1, waiting: 1 });
    expect(await b).toMatchObject({ middlewareInMain: true });
    expect(pool.stats()).toMatchObject({ threads: 1, stopping: 0, started: 2, terminated: 1 });
  });

  it('a thread that dies fails its job with SANDBOX_CRASHED, and the next job gets a new thread', async () => {
    const { handlers, pool } = await sandboxed(1);
    const crashed = await Promise.resolve(handlers.crashes!({}, fakeCtx().ctx)).catch((e: unknown) => e);
    expect(crashed).toBeInstanceOf(SandboxCrashError);
    expect((crashed as SandboxCrashError).message).toContain('thrown in a timer');
    const exited = await Promise.resolve(handlers.exits!({}, fakeCtx().ctx)).catch((e: unknown) => e);
    expect((exited as SandboxCrashError).message).toContain('exited (code 3)');
    expect(await handlers.exits!({}, fakeCtx(2).ctx)).toEqual({ middlewareInMain: true, result: 'recovered' });
    expect(pool.stats()).toMatchObject({ threads: 1, started: 3, crashed: 2 });
  });

  it('close() fails what runs and what waits, and refuses later jobs', async () => {
    const { handlers, pool } = await sandboxed(1);
    const a = Promise.resolve(handlers.busy!({ ms: 60_000 }, fakeCtx().ctx)).catch((e: unknown) => e);
    const b = Promise.resolve(handlers.busy!({ ms: 1 }, fakeCtx().ctx)).catch((e: unknown) => e);
    await until(() => pool.stats().busy === 1);
    await pool.close();
    expect(await a).toBeInstanceOf(SandboxClosedError);
    expect(await b).toBeInstanceOf(SandboxClosedError);
    await expect(handlers.busy!({ ms: 1 }, fakeCtx().ctx)).rejects.toBeInstanceOf(SandboxClosedError);
    expect(pool.stats()).toMatchObject({ threads: 0 });
  });
});

describe('errors crossing from a thread', () => {
  it('read the same after the trip: name, code, message, cause and stack', () => {
    const original = Object.assign(new TypeError('outer', { cause: new RangeError('inner') }), { code: 'E_OUTER' });
    const rebuilt = rebuildError(structuredClone(describeThrown(original)));
    expect(withStack(errorInfo(rebuilt), rebuilt)).toEqual(withStack(errorInfo(original), original));
  });

  it('a thrown value without a stack gets none; a rate limit is a RateLimitedError again', () => {
    const rebuilt = rebuildError(describeThrown('just a string'));
    expect(withStack(errorInfo(rebuilt), rebuilt)).toEqual(withStack(errorInfo('just a string'), 'just a string'));
    const limited = rebuildError(structuredClone(describeThrown(new RateLimitedError(250))));
    expect(limited).toBeInstanceOf(RateLimitedError);
    expect((limited as RateLimitedError).retryAfterMs).toBe(250);
  });
});
