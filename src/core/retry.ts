import { ClosedConnectionError, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { backoffDelay } from './backoff.js';
import { NaqError, NotConnectedError, OperationTimeoutError } from './errors.js';
import { isPermissionDenied, toPermissionDenied } from './permissions.js';

export { isPermissionDenied, toPermissionDenied } from './permissions.js';

/**
 * Transient failures are the ones a reconnect cures: a request that timed out or found no
 * responders while the server was away. Everything else (a semantic JetStream error, a bad
 * argument) is final and is not retried.
 */
export function isTransient(error: unknown): boolean {
  // A refused subject stays refused until an operator changes the permissions: retrying only
  // hides it (a RequestError's text could even mention "timeout" in the subject it names).
  if (isPermissionDenied(error)) return false;
  // The JetStream client wraps what went wrong: a request that found no responders on a
  // stream between leaders (a cluster electing one) surfaces as "jetstream is not enabled"
  // with the no-responders error as its cause. So the whole cause chain is looked at.
  for (let e = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (isTransientItself(e)) return true;
  }
  return false;
}

function isTransientItself(error: unknown): boolean {
  // naq's own publish path: no ack in time, or no stream answered (server restarting).
  if (error instanceof NaqError) return error.code === 'TIMEOUT' || error.code === 'NO_RESPONDERS';
  if (error instanceof TimeoutError || error instanceof NoRespondersError) return true;
  if (error instanceof RequestError) return /no responders|timeout/i.test(error.message);
  const code = (error as { code?: unknown })?.code;
  return code === 503 || code === '503' || code === 'TIMEOUT';
}

export interface RetryOptions {
  /** The whole operation's deadline, retries included. */
  timeoutMs: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the deadline
 * passes; then the caller gets an OperationTimeoutError naming the operation, with the last
 * transient error as its cause. It never waits past the deadline, even if one attempt hangs.
 *
 * A subject the server refuses (a JetStream API request, a KV read, a publish) fails at
 * once with a PermissionDeniedError naming the subject. The client reports such a request as
 * a RequestError caused by a PermissionViolationError, within a round trip.
 */
export async function withRetry<T>(operation: string, options: RetryOptions, attempt: (remainingMs: number) => Promise<T>): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (let n = 1; ; n++) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new OperationTimeoutError(operation, options.timeoutMs, { cause: lastError });
    try {
      return await raceDeadline(attempt(remaining), remaining);
    } catch (error) {
      const denied = toPermissionDenied(error);
      if (denied) throw denied;
      if (error instanceof ClosedConnectionError) throw new NotConnectedError(`${operation}: the NATS connection is closed`, { cause: error });
      if (error === DEADLINE) throw new OperationTimeoutError(operation, options.timeoutMs, { cause: lastError });
      if (!isTransient(error)) throw error;
      lastError = error;
    }
    const pause = Math.min(backoffDelay(n, { ...options, jitter: 0.2 }), deadline - Date.now());
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  }
}

const DEADLINE = Symbol('deadline');

function raceDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(DEADLINE), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
