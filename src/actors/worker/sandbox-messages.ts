/**
 * What the sandbox pool (sandbox.ts) and its threads (sandbox-thread.ts) say to each other,
 * and how an error crosses between them: structured clone keeps an Error's message and stack
 * but drops its class, `code` and other fields, so it travels as a plain description and is
 * rebuilt on the main thread into an Error that reads the same to the job path.
 */
import { errorInfo, withStack, type ErrorInfo } from '../../core/errors.js';
import { RateLimitedError } from './handler.js';
import type { LogLine } from '../../model/job.js';
import type { BatchSummary, ChildOutcomes } from '../../model/flow.js';

/** RateLimitedError's code (handler.ts). */
const RATE_LIMITED = 'RATE_LIMITED';

/** What a handler in a thread is told of its job (the rest of ctx is proxied). */
export interface JobMeta {
  jobId: string;
  name: string;
  queue: string;
  attempt: number;
  maxAttempts: number;
  /** A batch's completion job: the counts (ctx.batch). */
  batch?: BatchSummary;
}

export type LogLevel = LogLine['level'];

export type ToThread =
  | { type: 'run'; id: number; name: string; data: unknown; job: JobMeta }
  /** The answer to a flow parent's `ctx.childResults()` / `ctx.childFailures()`. */
  | { type: 'children'; id: number; outcomes?: ChildOutcomes; error?: ThrownInfo };

export type FromThread =
  | { type: 'done'; id: number; value: unknown }
  | { type: 'fail'; id: number; error: ThrownInfo }
  | { type: 'progress'; id: number; value: unknown }
  | { type: 'log'; id: number; level: LogLevel; args: unknown[] }
  | { type: 'children'; id: number };

/** What a handler threw, as plain data; `retryAfterMs` for a rate limit (ctx.rateLimit). */
export interface ThrownInfo extends ErrorInfo {
  retryAfterMs?: number;
}

/** In the thread: whatever the handler threw, described (never throws). */
export function describeThrown(thrown: unknown): ThrownInfo {
  const info: ThrownInfo = withStack(errorInfo(thrown), thrown);
  if (info.code === RATE_LIMITED) {
    try {
      const ms = (thrown as { retryAfterMs?: unknown }).retryAfterMs;
      if (typeof ms === 'number') info.retryAfterMs = ms;
    } catch {
      // A value whose getter throws is an ordinary error.
    }
  }
  return info;
}

/** In the main thread: an Error that errorInfo / withStack read as the thread's was read. */
export function rebuildError(info: ThrownInfo): Error {
  if (info.code === RATE_LIMITED && typeof info.retryAfterMs === 'number' && info.retryAfterMs >= 0) {
    return new RateLimitedError(info.retryAfterMs, info.message);
  }
  const error = new Error(info.message, info.cause ? { cause: rebuildError(info.cause) } : undefined) as Error & { code?: string };
  error.name = info.name;
  if (info.code !== undefined) error.code = info.code;
  // Its stack is the thread's, not this function's; none if the thrown value had none.
  error.stack = info.stack ?? '';
  return error;
}
