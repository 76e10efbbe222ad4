/**
 * Property: whatever a handler does — returns anything, throws anything, reports any
 * progress, logs anything, hangs past its timeout — the worker process survives, every job
 * reaches a recorded terminal state within its attempts, and nothing is redelivered forever.
 * The worker is a real `naq worker` process (so a crash shows as an exit), on a real server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { JobFailedError } from '../../src/actors/jobs/reads.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { cleanEnv, startServer, stopAllServers, until } from '../support/harness.js';
import { expectedEnd, HANG_TIMEOUT_MS, mayHang, PROGRESS_KINDS, VALUE_KINDS, type Final, type Plan, type Step } from '../support/outcome-model.js';
import { BIN, fixture } from '../support/paths.js';

const HANDLERS = fixture('outcome-handlers.ts');
const QUEUE = 'prop';

let worker: ChildProcess | undefined;
let naq: Naq | undefined;
afterAll(async () => {
  if (worker?.exitCode === null) worker.kill('SIGKILL');
  await naq?.stop();
  await stopAllServers();
});

const value = fc.constantFrom(...VALUE_KINDS);
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ progress: fc.constantFrom(...PROGRESS_KINDS), swallow: fc.boolean() }),
  fc.record({ sleep: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ log: fc.constantFrom('circular' as const, 'bigint' as const, 'error' as const) }),
);
const final: fc.Arbitrary<Final> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ return: value }) },
  { weight: 2, arbitrary: fc.record({ throw: value }) },
  { weight: 1, arbitrary: fc.record({ rejectLater: value }) },
  { weight: 1, arbitrary: fc.constant({ hang: true as const }) },
);
const job = fc.record({
  plan: fc.record({ steps: fc.array(step, { maxLength: 4 }), finals: fc.array(final, { minLength: 1, maxLength: 3 }) }),
  attempts: fc.integer({ min: 1, max: 3 }),
});

describe('arbitrary handler outcomes', () => {
  it('never kill the worker, and every job ends recorded within its attempts', async () => {
    const server = await startServer();
    let stderr = '';
    worker = spawn(process.execPath, [BIN, 'worker', '--handlers', HANDLERS, '--queue', QUEUE, '--concurrency', '8', '--nats-url', server.url], {
      env: cleanEnv({ NAQ_WORKER__ACK_WAIT_MS: '3000' }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    worker.stderr!.on('data', (d) => (stderr += d));
    await until(() => stderr.includes('all services running') || worker!.exitCode !== null, 20_000);
    expect(worker.exitCode, stderr).toBeNull();
    naq = createNaq({ nats: { url: server.url } }, { logger: pino({ level: 'silent' }) });
    await naq.start({ timeoutMs: 10_000 });
    const producer = naq;
    let jobs = 0;
    let failed = 0;

    await fc.assert(
      fc.asyncProperty(fc.array(job, { minLength: 1, maxLength: 10 }), async (batch) => {
        const ids = await Promise.all(
          batch.map(({ plan, attempts }) =>
            producer.enqueue('outcome', plan, {
              queue: QUEUE,
              attempts,
              backoff: { type: 'fixed', delay: 10 },
              ...(mayHang(plan) ? { timeoutMs: HANG_TIMEOUT_MS } : {}),
            }),
          ),
        );
        jobs += ids.length;
        await Promise.all(
          ids.map(async (id, i) => {
            const { plan, attempts } = batch[i]!;
            const want = expectedEnd(plan as Plan, attempts);
            const got = await producer.waitFor(id, { timeoutMs: 20_000 }).then(
              () => ({ status: 'completed' as const, code: undefined }),
              (e: unknown) => {
                if (!(e instanceof JobFailedError)) throw e;
                return { status: e.status, code: e.error?.code };
              },
            );
            const record = (await producer.getJob(id))!;
            const story = `job ${JSON.stringify(batch[i])}: ${JSON.stringify(record.attempts.map((a) => a.error ?? 'ok'))}`;
            expect(got.status, story).toBe(want.status);
            expect(record.attempts.length, story).toBe(want.attempts);
            if (want.code) expect(got.code, story).toBe(want.code);
            if (want.status === 'failed') failed++;
          }),
        );
        expect(worker!.exitCode, stderr.slice(-2000)).toBeNull();
      }),
      { numRuns: 25, interruptAfterTimeLimit: 120_000 },
    );

    // Nothing left behind: no pending or unacknowledged job, one dead letter per failed job,
    // and the worker still running after everything it was given.
    await until(async () => {
      const stats = await producer.queueStats(QUEUE);
      return stats.pending === 0 && stats.inFlight === 0;
    }, 15_000);
    expect((await producer.queueStats(QUEUE)).dead).toBe(failed);
    expect(jobs).toBeGreaterThan(25);
    expect(worker.exitCode, stderr.slice(-2000)).toBeNull();
    expect(stderr).not.toMatch(/uncaught|unhandled|FATAL/i);
  }, 240_000);
});
