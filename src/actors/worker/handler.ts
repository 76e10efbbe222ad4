/** What a handler is, what it is given, and the errors that end an attempt from outside it. */
import { NaqError, type ErrorInfo } from '../../core/errors.js';
import type { BatchSummary } from '../../model/flow.js';
import type { JobLogger } from './job-logs.js';

/** What a handler gets besides the job's data. */
export interface JobContext {
  jobId: string;
  name: string;
  queue: string;
  /** 1-based; counts deliveries, so a worker that died mid-job used one. */
  attempt: number;
  maxAttempts: number;
  /** Aborted on timeout, on cancel, and when the worker drains past its grace period. */
  signal: AbortSignal;
  /**
   * Records progress in the job record (throttled to one write per 250 ms). Throws
   * PROGRESS_NOT_SERIALIZABLE or PROGRESS_TOO_LARGE (64 KiB) for a value that cannot be stored.
   */
  progress(value: unknown): void;
  /**
   * The worker's logger for this job (pino), callable as `ctx.log('text')` too. What it logs
   * (info and up; debug and trace when the logger lets them through) is also kept with the
   * job's record, the last `jobs.maxLogLines` lines: `naq job ID --logs`, `getJob(id).logs`.
   */
  log: JobLogger;
  /**
   * The upstream said "slow down" (a 429): throws a RateLimitedError, so the job goes back to
   * the queue without using an attempt and no job of the queue starts, on any worker, for
   * `ms`. Nothing after the call runs: `ctx.rateLimit(retryAfter)` ends the attempt.
   */
  rateLimit(ms: number): never;
  /**
   * A flow parent's children that completed: child id → result. Read when called (one read per
   * child); `{}` for a job that is not a flow parent.
   */
  childResults<T = unknown>(): Promise<Record<string, T>>;
  /** A flow parent's children that failed with onFailure `continue`: child id → error. */
  childFailures(): Promise<Record<string, ErrorInfo>>;
  /** A batch's completion job: the batch's counts and the ids that failed. */
  batch: BatchSummary | undefined;
}

export type Handler<D = any, R = unknown> = (data: D, ctx: JobContext) => Promise<R> | R;
export type Handlers = Record<string, Handler>;

export class JobTimeoutError extends NaqError {
  constructor(ms: number) {
    super('JOB_TIMEOUT', `job timed out after ${ms} ms`);
  }
}

export class JobCancelledError extends NaqError {
  constructor() {
    super('JOB_CANCELLED', 'job was cancelled');
  }
}

/**
 * Thrown by a handler (or by `ctx.rateLimit(ms)`) whose upstream said "slow down" (a 429): the
 * job goes back to the queue without using an attempt, and no job of the queue starts, on any
 * worker, for `retryAfterMs`.
 */
export class RateLimitedError extends NaqError {
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number, message = `rate limited: the queue waits ${retryAfterMs} ms`) {
    super('RATE_LIMITED', message);
    if (!Number.isFinite(retryAfterMs) || retryAfterMs < 0) throw new TypeError(`RateLimitedError needs retryAfterMs >= 0, got ${String(retryAfterMs)}`);
    this.retryAfterMs = Math.floor(retryAfterMs);
  }
}

/** The worker stopped before the job finished; it goes back to the queue, no attempt recorded. */
export class DrainAbort extends NaqError {
  constructor() {
    super('DRAINED', 'worker stopped before the job finished; it goes back to the queue');
  }
}

/** `instanceof` on what a handler threw, which may be a Proxy whose traps throw. */
export function isCancel(error: unknown): boolean {
  try {
    return error instanceof JobCancelledError;
  } catch {
    return false;
  }
}

/** The handler was told to slow down: its wait, or null. */
export function rateLimitedFor(error: unknown): number | null {
  try {
    return error instanceof RateLimitedError ? error.retryAfterMs : null;
  } catch {
    return null;
  }
}
