/**
 * `createTestNaq`: the job API of `Naq` (src/naq.ts) on the in-memory queue of engine.ts, with
 * a clock the test moves. The queue runs every job through the real job path, so what a test
 * sees (attempts, backoff delays, timeouts, records, dead letters) is what a worker does.
 *
 * Time: with the manual clock (the default) nothing waits for real time. `advance(ms)` moves
 * it; `runUntilIdle()` runs what is due now; `drain()` and `waitFor(id)` move it from one due
 * time to the next (a delayed job, a retry's backoff, a timeout, a rate limit's hold, a timer
 * a handler set on `clock`) until they are done. "Nothing happens now" is judged by letting
 * pending promise reactions run a few event-loop turns. A handler that waits on real I/O or a
 * real timer is waited for in real time only when nothing on the test clock is due sooner
 * (a timeout, a retry, a delayed job): the clock jumps to those first. Give such handlers
 * fakes, or use `clock: 'real'`.
 */
// From node:timers, not the globals: a test that fakes timers (vi.useFakeTimers) fakes those.
import { setTimeout } from 'node:timers';
import type { BatchStatus, FlowNode } from '../actors/jobs/flow-reads.js';
import type { BatchOptions, FlowIds, FlowSpec } from '../model/flow.js';
import { systemClock, type Clock } from '../core/clock.js';
import { validateDuration } from '../core/duration.js';
import { InvalidArgumentError, NotFoundError, OperationTimeoutError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { resolveConfig, type NaqConfig, type NaqConfigInput } from '../config/index.js';
import { JobFailedError } from '../actors/jobs/reads.js';
import type { Handlers } from '../actors/worker/handler.js';
import { checkMiddleware, withMiddleware, type Middleware } from '../actors/worker/middleware.js';
import type { JobData } from '../naq.js';
import type { NaqEventInput } from '../model/event.js';
import { TERMINAL_STATUSES, type DeadLetter, type EnqueueItem, type JobOptions, type JobRecord } from '../model/job.js';
import { validateJobId } from '../model/layout.js';
import { ManualClock, settle } from './clock.js';
import { TestEngine } from './engine.js';

export interface TestNaqOptions<H extends Handlers = Handlers> {
  /** Handlers by job name, as `createNaq(config, { handlers })` takes them. */
  handlers: H;
  /** Run around every handler, in order, the first outermost (as `createNaq`'s). */
  middleware?: Middleware[];
  /**
   * `'manual'` (default): a `ManualClock` starting at the real time now, moved only by
   * `advance`, `drain` and `waitFor`. `'real'`: the system clock (backoff waits and delays take
   * real time). Or a clock of your own: a `ManualClock` you share with your handlers' fakes.
   */
  clock?: 'manual' | 'real' | Clock;
  /**
   * The config a real process would have: its defaults for jobs (`jobs.attempts`,
   * `jobs.backoffType`, `jobs.backoffDelayMs`, `jobs.maxPayloadBytes`, `jobs.activeAfterMs`,
   * `jobs.maxLogLines`) and workers (`worker.concurrency` per queue, `worker.ackWaitMs`) apply.
   */
  config?: NaqConfigInput;
  /** The handlers' `ctx.log`; silent by default (lines are still kept with the job's record). */
  logger?: Logger;
}

export interface DrainOptions {
  /**
   * Give up (OperationTimeoutError) after this much time: virtual with the manual clock
   * (default 24 h: waits jump, so long backoffs cost nothing), real with the real clock
   * (default 30 s).
   */
  timeoutMs?: number;
}

/** An event as the test mode's workers and queue emit it (the event log keeps these). */
export type TestEvent = NaqEventInput;

/** The job API of `Naq` without a server; see createTestNaq. */
export interface TestNaq<H extends Handlers = Handlers> extends AsyncDisposable {
  readonly config: NaqConfig;
  /** The clock jobs run on: a `ManualClock` unless created with `clock: 'real'` (or another). */
  readonly clock: Clock;
  /** Nothing to start: here for code shared with a real `Naq`. */
  start(): Promise<void>;
  /** Aborts running jobs (no drain grace) and stops every timer; enqueue then throws. */
  stop(): Promise<void>;
  use(middleware: Middleware): TestNaq<H>;
  enqueue<N extends keyof H & string>(name: N, data: JobData<H, N>, opts?: JobOptions): Promise<string>;
  enqueueBulk<N extends keyof H & string>(jobs: Array<{ name: N; data: JobData<H, N>; opts?: JobOptions }>): Promise<string[]>;
  enqueueAt<N extends keyof H & string>(at: Date | number, name: N, data: JobData<H, N>, opts?: Omit<JobOptions, 'dependsOn'>): Promise<string>;
  enqueueIn<N extends keyof H & string>(delayMs: number, name: N, data: JobData<H, N>, opts?: Omit<JobOptions, 'dependsOn'>): Promise<string>;
  getJob(id: string): Promise<JobRecord | null>;
  /** As `Naq.enqueueFlow`: a parent runs after its children, reading `ctx.childResults()`. */
  enqueueFlow(flow: FlowSpec): Promise<FlowIds>;
  getFlow(id: string): Promise<FlowNode>;
  /** As `Naq.enqueueBatch`: the completion job runs once all the jobs finished, with `ctx.batch`. */
  enqueueBatch(jobs: EnqueueItem[], options: BatchOptions): Promise<string>;
  getBatch(id: string): Promise<BatchStatus>;
  /**
   * The job's result once it completed; throws JobFailedError if it failed or was cancelled,
   * OperationTimeoutError after `timeoutMs` (default 30 s; virtual time with the manual clock,
   * which this moves as `drain` does), NotFoundError for an id never enqueued.
   */
  waitFor<T = unknown>(id: string, options?: { timeoutMs?: number }): Promise<T>;
  cancel(id: string): Promise<{ id: string; status: string }>;
  /** Moves the manual clock by `ms`: what falls due on the way runs at its own time. */
  advance(ms: number): Promise<void>;
  /** Runs what is due now, without moving the clock, until nothing more happens. */
  runUntilIdle(): Promise<void>;
  /**
   * Runs until no job is delayed, pending (a retry's backoff included) or running, moving the
   * manual clock to each next due time. Jobs waiting on dependencies that never finish stay.
   */
  drain(options?: DrainOptions): Promise<void>;
  /** The dead-letter stream, oldest first (a letter's `deadSeq` is its index + 1). */
  readonly deadLetters: readonly DeadLetter[];
  /** Every event emitted, oldest first (job.enqueued, job.started, job.retrying, …). */
  readonly events: readonly TestEvent[];
}

const WAIT_TIMEOUT_MS = 30_000;
const DRAIN_VIRTUAL_TIMEOUT_MS = 24 * 3_600_000;
/** The longest a manual-clock drive waits in real time for handlers busy with real I/O. */
const REAL_WAIT_MS = 30_000;
/** runUntilIdle gives up on "idle" after this many busy rounds (a handler that never stops writing). */
const MAX_IDLE_ROUNDS = 100_000;
/** Real time with nothing happening before the manual clock jumps to a running job's timeout. */
const QUIET_MS = 100;

/**
 * A naq that runs jobs in this process, without NATS, for testing handlers: the same job path
 * as a real worker, with time under the test's control. Documented in the README ("Testing
 * your handlers") and in src/testing/index.ts, with what differs from the real system.
 */
export function createTestNaq<H extends Handlers = Handlers>(options: TestNaqOptions<H>): TestNaq<H> {
  if (!options || typeof options.handlers !== 'object' || options.handlers === null) throw new InvalidArgumentError('createTestNaq needs { handlers }');
  const config = resolveConfig(options.config ?? {});
  const clock: Clock = options.clock === 'real' ? systemClock : options.clock === undefined || options.clock === 'manual' ? new ManualClock() : options.clock;
  const manual = clock instanceof ManualClock ? clock : undefined;
  const middleware: Middleware[] = (options.middleware ?? []).map((m, i) => checkMiddleware(m, `middleware[${i}]`));
  const engine = new TestEngine({
    handlers: withMiddleware(options.handlers, middleware),
    config,
    clock,
    // The job path's housekeeping timers (its sweep of running jobs) are no reason to move time.
    pathClock: manual ? manual.background() : clock,
    log: options.logger ?? createLogger({ level: 'silent', pretty: false }),
  });

  const runUntilIdle = async (): Promise<void> => {
    for (let round = 0; round < MAX_IDLE_ROUNDS; round++) {
      const before = engine.activity;
      // Timers due now (a job enqueued for a time already past) fire without moving the clock.
      if (manual) await manual.advance(0);
      engine.pump();
      await settle();
      if (engine.activity === before && !engine.startable()) return;
    }
  };

  /** Real time passes for up to `ms`, or until something happens. */
  const quiet = (ms: number) => Promise.race([engine.changed(), new Promise((r) => setTimeout(r, ms))]);

  /** Runs jobs (moving the manual clock) until `done()`; OperationTimeoutError after `timeoutMs`. */
  const drive = async (done: () => boolean, timeoutMs: number, what: string): Promise<void> => {
    const realEnd = realNow() + (manual ? Math.min(timeoutMs, REAL_WAIT_MS) : timeoutMs);
    const end = clock.now() + timeoutMs;
    /** The activity count when a due time already reached moved nothing. */
    let stalledAt = -1;
    for (;;) {
      await runUntilIdle();
      if (done()) return;
      if (manual) {
        const due = manual.nextDue();
        const deadline = engine.timeoutDeadline();
        let next = earliest(due, deadline);
        // A due time reached that moves nothing twice running is no reason to stay here.
        if (next !== undefined && next <= clock.now()) {
          if (stalledAt === engine.activity) next = undefined;
          stalledAt = engine.activity;
        }
        if (next !== undefined && next <= end) {
          // Only a running job's own timeout is due: its handler may be waiting on real I/O.
          // Time jumps to the timeout only after a moment of real time in which nothing happened.
          if (next === deadline && (due === undefined || due > deadline) && engine.inflight > 0 && next > clock.now()) {
            const before = engine.activity;
            await quiet(QUIET_MS);
            if (engine.activity !== before) continue;
          }
          await manual.advanceTo(next);
          continue;
        }
        // Nothing runs and nothing is due before the deadline: let it pass, as a real wait would.
        if (engine.inflight === 0) {
          await manual.advanceTo(end);
          await runUntilIdle();
          if (done()) return;
          throw new OperationTimeoutError(what, timeoutMs);
        }
        // Running handlers wait on something other than the test clock (real I/O): real time it is.
      }
      const left = realEnd - realNow();
      if (left <= 0) throw new OperationTimeoutError(what, timeoutMs);
      await quiet(Math.min(left, 50));
    }
  };

  const call = <T>(fn: () => T): Promise<T> => Promise.resolve().then(fn);

  const naq: TestNaq<H> = {
    config,
    clock,
    start: () => Promise.resolve(),
    stop: () => engine.stop(),
    use(m) {
      middleware.push(checkMiddleware(m, 'use()'));
      return naq;
    },
    enqueue: (name, data, opts) => call(() => engine.enqueue(name, data, opts)),
    enqueueBulk: (jobs) => call(() => engine.enqueueBulk(jobs as EnqueueItem[])),
    enqueueAt: (at, name, data, opts) => call(() => engine.enqueueAt(at, name, data, opts)),
    enqueueIn: (delayMs, name, data, opts) => call(() => engine.enqueueAt(clock.now() + validateDuration('delayMs', delayMs, 0), name, data, opts)),
    getJob: (id) => call(() => engine.getJob(id)),
    enqueueFlow: (flow) => call(() => engine.enqueueFlow(flow)),
    getFlow: (id) => call(() => engine.getFlow(id)),
    enqueueBatch: (jobs, batchOptions) => call(() => engine.enqueueBatch(jobs, batchOptions)),
    getBatch: (id) => call(() => engine.getBatch(id)),
    cancel: (id) => call(() => engine.cancel(id)),

    async waitFor<T>(id: string, waitOptions: { timeoutMs?: number } = {}): Promise<T> {
      validateJobId(id);
      const timeoutMs = validateDuration('timeoutMs', waitOptions.timeoutMs ?? WAIT_TIMEOUT_MS);
      if (!engine.getJob(id)) throw new NotFoundError(`job ${id}`);
      // The outcome as announced, in case its record is gone by the time we look (a short resultTtlMs).
      let final: JobRecord | undefined;
      const unfollow = engine.onFinal((record) => {
        if (record.id === id) final = record;
      });
      const outcome = (): JobRecord | undefined => {
        const record = engine.getJob(id);
        return record && TERMINAL_STATUSES.has(record.status) ? record : final;
      };
      try {
        await drive(() => outcome() !== undefined, timeoutMs, `waiting for job ${id}`);
      } finally {
        unfollow();
      }
      const record = outcome()!;
      if (record.status === 'completed') return record.result as T;
      throw new JobFailedError(record);
    },

    async advance(ms) {
      if (!manual) throw new InvalidArgumentError('advance() moves the manual clock: this test naq runs on another clock (clock: "real")');
      validateDuration('ms', ms, 0);
      await runUntilIdle();
      await manual.advance(ms);
      await runUntilIdle();
    },
    runUntilIdle,
    async drain(drainOptions = {}) {
      const timeoutMs = validateDuration('timeoutMs', drainOptions.timeoutMs ?? (manual ? DRAIN_VIRTUAL_TIMEOUT_MS : WAIT_TIMEOUT_MS));
      await drive(() => engine.left().length === 0, timeoutMs, 'draining').catch((error: unknown) => {
        // Named with what is left when it gave up.
        if (error instanceof OperationTimeoutError) throw new OperationTimeoutError(`draining (still to finish: ${engine.left().slice(0, 10).join(', ')})`, timeoutMs);
        throw error;
      });
    },
    get deadLetters() {
      return engine.mem.dead;
    },
    get events() {
      return engine.mem.events;
    },
    async [Symbol.asyncDispose]() {
      await engine.stop();
    },
  };
  return naq;
}

/** Milliseconds of real time, monotonic (a test's fake Date does not move it). */
function realNow(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}
