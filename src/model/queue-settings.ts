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

/** A bucket entry as far as this needs it (a KV entry of the queues bucket). */
interface SettingsEntry {
  operation: string;
  string(): string;
}

/** Paused only when the entry says so plainly: a missing, deleted or damaged entry must not stop a queue. */
export function isPausedEntry(entry: SettingsEntry | null | undefined): boolean {
  if (!entry || entry.operation !== 'PUT') return false;
  try {
    return (JSON.parse(entry.string()) as Partial<QueueSettings>)?.paused === true;
  } catch {
    return false;
  }
}
