import type { AnyActorRef, EventObject } from 'xstate';
import { ActorUnavailableError, OperationTimeoutError } from './errors.js';

/**
 * Request/response between actors and from the public API into the system. A request event
 * carries a `replyTo` target; the serving actor answers exactly once with `reply(...)`.
 * This is the one place that pairs a request with its reply and bounds it with a timeout.
 */
export type Reply<T> = { type: 'reply'; ok: true; value: T } | { type: 'reply'; ok: false; error: Error };

export interface ReplyTo<T> {
  /** Readable name for logs and the inspector. */
  readonly id: string;
  send(reply: Reply<T>): void;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

let nextReplyId = 0;

export interface AskOptions {
  timeoutMs: number;
  /** Names the operation in the timeout error. */
  operation?: string;
  timers?: Timers;
}

export function ask<T, E extends EventObject = EventObject>(
  target: AnyActorRef | undefined,
  build: (replyTo: ReplyTo<T>) => E,
  options: AskOptions,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timers = options.timers ?? realTimers;
    const replyTo: ReplyTo<T> = {
      id: `reply-${++nextReplyId}`,
      send(reply) {
        if (settled) return;
        settled = true;
        timers.clearTimeout(timer);
        if (reply.ok) resolve(reply.value);
        else reject(reply.error);
      },
    };
    // The reply target travels inside events, which the inspector serialises.
    Object.defineProperty(replyTo, 'toJSON', { value: () => replyTo.id, enumerable: false });
    const event = build(replyTo);
    const operation = options.operation ?? event.type;
    const timer = timers.setTimeout(() => {
      if (settled) return;
      settled = true;
      reject(new OperationTimeoutError(operation, options.timeoutMs));
    }, options.timeoutMs);
    const status = target?.getSnapshot()?.status;
    if (!target || status !== 'active') {
      settled = true;
      timers.clearTimeout(timer);
      reject(new ActorUnavailableError(target?.id ?? 'unknown', `is not running (${operation})`));
      return;
    }
    target.send(event);
  });
}

/** Runs `work` and answers `replyTo` with its outcome; never throws. */
export async function answer<T>(replyTo: ReplyTo<T>, work: () => Promise<T> | T): Promise<void> {
  try {
    replyTo.send({ type: 'reply', ok: true, value: await work() });
  } catch (error) {
    replyTo.send({ type: 'reply', ok: false, error: error instanceof Error ? error : new Error(String(error)) });
  }
}

export function replyError(replyTo: ReplyTo<unknown>, error: Error): void {
  replyTo.send({ type: 'reply', ok: false, error });
}
