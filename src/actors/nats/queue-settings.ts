/**
 * Reads and changes of a queue's settings in the queues bucket (src/model/queue-settings.ts):
 * every change is revision-checked and keeps what it does not change, so a pause, a rate
 * limit and a handler's hold never overwrite one another.
 */
import { withRetry } from '../../core/retry.js';
import { WIRE_VERSION, encodeJson } from '../../model/job.js';
import type { QueueSettings } from '../../model/queue-settings.js';
import type { NaqContext } from './context.js';
import { isWrongLastSequence } from './jetstream.js';

/** Revision conflicts in a row before giving up (each means another change just landed). */
const MAX_CONFLICTS = 20;

/** Applies `change` to the queue's settings (created when missing); null from `change` writes nothing. */
export async function updateQueueSettings(
  ctx: NaqContext,
  queue: string,
  operation: string,
  change: (current: QueueSettings) => QueueSettings | null,
): Promise<QueueSettings> {
  for (let conflicts = 0; ; conflicts++) {
    const kv = await ctx.storage.queuesKv();
    const entry = await withRetry(operation, ctx.retry, () => kv.get(queue));
    let current: QueueSettings = { v: WIRE_VERSION, paused: false, updatedAt: 0 };
    if (entry && entry.operation === 'PUT') {
      try {
        current = { ...current, ...entry.json<Partial<QueueSettings>>() };
      } catch {
        // A damaged entry is replaced.
      }
    }
    const next = change(current);
    if (next === null) return current;
    const bytes = encodeJson({ ...next, v: WIRE_VERSION, updatedAt: Date.now() });
    try {
      if (entry) await withRetry(operation, ctx.retry, () => kv.update(queue, bytes, entry.revision));
      else await withRetry(operation, ctx.retry, () => kv.create(queue, bytes));
      return next;
    } catch (error) {
      if (!isWrongLastSequence(error) || conflicts >= MAX_CONFLICTS) throw error;
    }
  }
}
