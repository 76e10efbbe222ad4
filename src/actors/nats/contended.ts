/**
 * Read, decide, write revision-checked, and read again when another writer got there first:
 * the one loop behind every change that racing processes must agree on (dedupe windows, a
 * queue's settings). The rate gate has its own, because it waits for its window in between.
 */
import { backoffDelay } from '../../core/backoff.js';
import { OperationTimeoutError } from '../../core/errors.js';
import { isTransient, toPermissionDenied } from '../../core/retry.js';
import type { NaqContext } from './context.js';
import { isWrongLastSequence } from './jetstream.js';

/** A step that lost a race (or whose write's answer was lost): read again and decide again. */
export const AGAIN = Symbol('again');
/** A revision-checked write that another writer beat. */
export const LOST = Symbol('lost');

/** A revision-checked write; LOST when another writer got there first. */
export async function revisionChecked(write: () => Promise<number>): Promise<number | typeof LOST> {
  try {
    return await write();
  } catch (error) {
    if (isWrongLastSequence(error)) return LOST;
    throw error;
  }
}

/**
 * Runs `step` until it decides: again at once after a lost race (the winner's write is done),
 * then after short, spread-out pauses; a transient failure (the server away, a write whose
 * answer was lost) is a round like any other. Fails after `ops.timeoutMs`.
 */
export async function contended<T>(ctx: NaqContext, operation: string, step: () => Promise<T | typeof AGAIN>): Promise<T> {
  const deadline = Date.now() + ctx.retry.timeoutMs;
  let lastError: unknown;
  for (let round = 1; ; round++) {
    try {
      const result = await step();
      if (result !== AGAIN) return result;
    } catch (error) {
      if (!isTransient(error)) throw toPermissionDenied(error) ?? error;
      lastError = error;
    }
    const pause = round === 1 ? 0 : Math.min(backoffDelay(round - 1, { initialDelayMs: 5, maxDelayMs: ctx.retry.maxDelayMs, jitter: 0.5 }), deadline - Date.now());
    if (Date.now() + pause >= deadline) throw new OperationTimeoutError(operation, ctx.retry.timeoutMs, { cause: lastError });
    if (pause > 0) await new Promise((r) => setTimeout(r, pause));
  }
}
