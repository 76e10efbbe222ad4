import { PermissionViolationError } from '@nats-io/transport-node';
import { PermissionDeniedError } from './errors.js';
import type { Logger } from './log.js';

/**
 * NATS permission errors, in naq's terms. The server answers a publish or subscription the
 * user may not make with `-ERR 'Permissions Violation for Publish to "X"'`; the client turns
 * that into a PermissionViolationError and delivers it where it can: a request to X rejects
 * with a RequestError whose cause is it, a subscription to X gets it in its callback, and
 * every one of them is a `{ type: 'error' }` status on `nc.status()`. A fire-and-forget
 * publish (an ack, a publish-async write) has nobody waiting, so the status is all there is.
 */

/** How deep a cause chain is searched: the client wraps at most twice. */
const MAX_DEPTH = 4;

function isViolation(value: unknown): value is PermissionViolationError {
  if (value instanceof PermissionViolationError) return true;
  // A second copy of the client (a host app bundling its own) has its own class.
  const v = value as { name?: unknown; subject?: unknown; operation?: unknown } | null;
  return typeof v === 'object' && v !== null && v.name === 'PermissionViolationError' && typeof v.subject === 'string' && typeof v.operation === 'string';
}

/** The server's refusal inside `error` (the error itself or one of its causes), if any. */
export function permissionViolation(error: unknown): PermissionViolationError | undefined {
  for (let e = error, depth = 0; e && depth < MAX_DEPTH; e = (e as { cause?: unknown }).cause, depth++) {
    if (isViolation(e)) return e;
  }
  return undefined;
}

/** naq's error for a refusal the client reported. */
export function deniedFrom(violation: PermissionViolationError, options?: ErrorOptions): PermissionDeniedError {
  return new PermissionDeniedError(violation.operation === 'subscription' ? 'subscribe' : 'publish', violation.subject, options ?? { cause: violation });
}

/**
 * `error` as a PermissionDeniedError when it is one or was caused by the server refusing a
 * subject; undefined otherwise. The original error stays reachable as the cause.
 */
export function toPermissionDenied(error: unknown): PermissionDeniedError | undefined {
  for (let e = error, depth = 0; e && depth < MAX_DEPTH; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof PermissionDeniedError) return e;
    if (isViolation(e)) return deniedFrom(e, { cause: error });
  }
  return undefined;
}

/** True when `error` is, or was caused by, a permission the server refused. Never transient. */
export function isPermissionDenied(error: unknown): boolean {
  return toPermissionDenied(error) !== undefined;
}

/** What one refusal did to the publisher's own writes. */
export interface PermissionReport {
  /** Publishes still waiting for their ack that were failed with this error at once. */
  rejected: number;
}

export type PermissionListener = (error: PermissionDeniedError, report: PermissionReport) => void;

/** Refusals in this window after a logged one are counted, then logged as one summary line. */
export const PERMISSION_LOG_WINDOW_MS = 1000;
/** Subjects a summary line names at most. */
const SUMMARY_SUBJECTS = 5;

/**
 * A listener that logs every refusal at error level, naming the subject. The first refusal
 * is logged at once; a burst (a denied ack per job, a bulk enqueue to a denied subject) is
 * folded into one summary line per window instead of one line per message.
 */
export function logPermissionDenied(log: Logger): PermissionListener {
  let window: { count: number; rejected: number; subjects: Set<string>; last: PermissionDeniedError } | undefined;
  const write = (error: PermissionDeniedError, fields: Record<string, unknown>, message = error.message) =>
    log.error({ err: error, code: error.code, operation: error.operation, subject: error.subject, ...fields }, message);
  return (error, report) => {
    if (window) {
      window.count++;
      window.rejected += report.rejected;
      window.last = error;
      if (window.subjects.size < SUMMARY_SUBJECTS) window.subjects.add(error.subject);
      return;
    }
    write(error, { rejected: report.rejected });
    const open = { count: 0, rejected: 0, subjects: new Set<string>(), last: error };
    window = open;
    setTimeout(() => {
      window = undefined;
      if (open.count === 0) return;
      const more = `${open.count} more NATS permission refusal${open.count === 1 ? '' : 's'} within ${PERMISSION_LOG_WINDOW_MS} ms; the last: ${open.last.message}`;
      write(open.last, { rejected: open.rejected, repeated: open.count, subjects: [...open.subjects] }, more);
    }, PERMISSION_LOG_WINDOW_MS).unref();
  };
}
