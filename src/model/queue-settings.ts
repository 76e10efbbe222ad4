/**
 * What an operator sets on a queue, kept in the queues bucket (`<prefix>_queues`, key = queue
 * name; docs/wire-format.md): whether it is paused, and its rate limit.
 */
import { WIRE_VERSION } from './job.js';

/** At most `max` job starts in any `durationMs` window, across every worker of the queue. */
export interface RateLimit {
  max: number;
  durationMs: number;
}

/** Limits every group of a queue gets (setGroupLimit): running at once, and starts per window. */
export interface GroupLimit {
  /** At most this many jobs of one group released and not finished, across every worker. */
  concurrency?: number;
  /** At most `max` starts of one group in any `durationMs`. */
  rate?: RateLimit;
}

export interface QueueSettings {
  v: typeof WIRE_VERSION;
  paused: boolean;
  limit?: RateLimit;
  /** What each group of the queue may run (jobs enqueued with a `group`). */
  groups?: GroupLimit;
  /**
   * No job of the queue starts before this time (ms since the epoch): set by a handler that
   * was told to slow down (ctx.rateLimit, RateLimitedError), as after a 429.
   */
  holdUntil?: number;
  /** When it was last changed, ms since the epoch. */
  updatedAt: number;
}

/** A bucket entry as far as this needs it (a KV entry of the queues bucket). */
interface SettingsEntry {
  operation: string;
  string(): string;
}

function isRateLimit(value: unknown): value is RateLimit {
  const l = value as Partial<RateLimit> | null;
  return !!l && Number.isInteger(l.max) && l.max! >= 1 && Number.isInteger(l.durationMs) && l.durationMs! >= 1;
}

/**
 * The settings an entry holds. A missing, deleted or damaged entry must not stop a queue: it
 * reads as running and unlimited; so does a damaged limit beside a good pause setting.
 */
export function settingsOf(entry: SettingsEntry | null | undefined): ActiveSettings {
  if (!entry || entry.operation !== 'PUT') return RUNNING;
  try {
    const s = JSON.parse(entry.string()) as Partial<QueueSettings> | null;
    return {
      paused: s?.paused === true,
      limit: isRateLimit(s?.limit) ? { max: s.limit.max, durationMs: s.limit.durationMs } : null,
      holdUntil: Number.isFinite(s?.holdUntil) ? s!.holdUntil! : 0,
      groups: groupLimitOf(s?.groups),
    };
  } catch {
    return RUNNING;
  }
}

/** A group limit as stored, its damaged parts dropped. */
function groupLimitOf(value: unknown): GroupLimit | null {
  const g = value as GroupLimit | null | undefined;
  if (!g || typeof g !== 'object') return null;
  const out: GroupLimit = {};
  if (Number.isInteger(g.concurrency) && g.concurrency! >= 1) out.concurrency = g.concurrency!;
  if (isRateLimit(g.rate)) out.rate = { max: g.rate.max, durationMs: g.rate.durationMs };
  return out.concurrency !== undefined || out.rate ? out : null;
}

/** What a worker follows: paused, the rate limit, and a hold (0: none); and the group limits the group dispatcher follows. */
export interface ActiveSettings {
  paused: boolean;
  limit: RateLimit | null;
  holdUntil: number;
  groups: GroupLimit | null;
}

const RUNNING: ActiveSettings = { paused: false, limit: null, holdUntil: 0, groups: null };

/** Paused only when the entry says so plainly. */
export function isPausedEntry(entry: SettingsEntry | null | undefined): boolean {
  return settingsOf(entry).paused;
}
