/**
 * What an operator sets on a queue, kept in the queues bucket (`<prefix>_queues`, key = queue
 * name; docs/wire-format.md). Today: whether it is paused.
 */
import { WIRE_VERSION } from './job.js';

export interface QueueSettings {
  v: typeof WIRE_VERSION;
  paused: boolean;
  /** When it was last changed, ms since the epoch. */
  updatedAt: number;
}

/** Paused only when the entry says so plainly: a damaged entry must not stop a queue. */
export function isPausedEntry(text: string | undefined): boolean {
  if (text === undefined) return false;
  try {
    return (JSON.parse(text) as Partial<QueueSettings>)?.paused === true;
  } catch {
    return false;
  }
}
