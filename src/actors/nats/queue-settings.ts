/**
 * Reads and changes of a queue's settings in the queues bucket (src/model/queue-settings.ts):
 * every change is revision-checked and keeps what it does not change, so a pause, a rate
 * limit and a handler's hold never overwrite one another.
 */
import { WIRE_VERSION, encodeJson } from '../../model/job.js';
import type { QueueSettings } from '../../model/queue-settings.js';
import type { NaqContext } from './context.js';
import { AGAIN, contended, LOST, revisionChecked } from './contended.js';

/** Applies `change` to the queue's settings (created when missing); null from `change` writes nothing. */
export async function updateQueueSettings(
  ctx: NaqContext,
  queue: string,
  operation: string,
  change: (current: QueueSettings) => QueueSettings | null,
): Promise<QueueSettings> {
  const kv = await ctx.storage.queuesKv();
  return contended(ctx, operation, async () => {
    const entry = await kv.get(queue);
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
    const written = await revisionChecked(() => (entry ? kv.update(queue, bytes, entry.revision) : kv.create(queue, bytes)));
    return written === LOST ? AGAIN : next;
  });
}
