/**
 * Dedupe windows (issue 12): the `dedupe` enqueue option, its checks, and the record kept per
 * key in the `<prefix>_dedupe` bucket (docs/wire-format.md, 3.6). Pure: the I/O is in
 * src/actors/jobs/dedupe.ts.
 */
import { durationProblem } from '../core/duration.js';
import { InvalidArgumentError } from '../core/errors.js';

export const DEDUPE_MODES = ['throttle', 'debounce'] as const;
export type DedupeMode = (typeof DEDUPE_MODES)[number];

export interface DedupeOptions {
  /**
   * Enqueues that give the same key (and mode) share one window. A KV key: letters, digits,
   * "-", "_", "=", "/" and "." (not first or last, no ".."), at most 256 characters.
   */
  key: string;
  /**
   * Throttle: for this long after the enqueue that opened the window, other enqueues of the key
   * are dropped and get its job's id. Debounce: the job runs this long after the last enqueue
   * of the key. At most `jobs.dedupeMaxTtlMs` (the dedupe bucket's TTL).
   */
  ttlMs: number;
  /** Default `throttle`. */
  mode?: DedupeMode;
}

/** The options once checked: every field there. */
export type CheckedDedupe = Required<DedupeOptions>;

/** A key's entry in the dedupe bucket, under `<mode>.<key>`. */
export interface DedupeRecord {
  v: 1;
  /** The job of the window (throttle) or of the debounce cycle. */
  jobId: string;
  queue: string;
  /** Throttle: when the window ends, ms since the epoch. */
  until?: number;
  /** When this entry was written. */
  ts: number;
}

export const MAX_DEDUPE_KEY_CHARS = 256;
/** NATS KV's key alphabet. */
const KV_KEY = /^[-/_=.a-zA-Z0-9]+$/;

/** What is wrong with a dedupe key, or null. */
export function dedupeKeyProblem(key: unknown): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'expected a non-empty string';
  if (key.length > MAX_DEDUPE_KEY_CHARS) return `at most ${MAX_DEDUPE_KEY_CHARS} characters, got ${key.length}`;
  if (!KV_KEY.test(key) || key.startsWith('.') || key.endsWith('.') || key.includes('..')) {
    return 'use letters, digits, "-", "_", "=", "/" and "." (not first or last, no "..")';
  }
  return null;
}

/** What the dedupe option is combined with, for the rules that refuse a combination. */
export interface DedupeUse {
  /** The job has dependencies (`dependsOn`). */
  dependsOn?: boolean;
  /** `enqueueAt` / `enqueueIn`: the job is delayed by the caller. */
  delayed?: boolean;
}

/**
 * Checks `dedupe` (each problem an InvalidArgumentError naming the field: `dedupe.key`,
 * `dedupe.ttlMs`, `dedupe.mode`) and how it combines with the rest of the enqueue.
 * `maxTtlMs` is `jobs.dedupeMaxTtlMs`: a key kept no longer than that cannot hold a longer window.
 */
export function checkDedupe(dedupe: unknown, maxTtlMs: number, use: DedupeUse = {}): CheckedDedupe {
  if (!dedupe || typeof dedupe !== 'object' || Array.isArray(dedupe)) {
    throw new InvalidArgumentError('invalid dedupe: expected { key, ttlMs, mode? }');
  }
  const d = dedupe as Record<string, unknown>;
  const keyProblem = dedupeKeyProblem(d.key);
  if (keyProblem) throw new InvalidArgumentError(`invalid dedupe.key ${JSON.stringify(d.key)}: ${keyProblem}`);
  const ttlProblem = durationProblem(d.ttlMs);
  if (ttlProblem) throw new InvalidArgumentError(`invalid dedupe.ttlMs: ${ttlProblem}`);
  const ttlMs = d.ttlMs as number;
  if (ttlMs > maxTtlMs) {
    throw new InvalidArgumentError(
      `invalid dedupe.ttlMs: ${ttlMs} ms is over jobs.dedupeMaxTtlMs (${maxTtlMs} ms), how long the dedupe bucket keeps a key`,
    );
  }
  const mode = d.mode ?? 'throttle';
  if (!DEDUPE_MODES.includes(mode as DedupeMode)) {
    throw new InvalidArgumentError(`invalid dedupe.mode ${JSON.stringify(mode)}: expected "throttle" or "debounce"`);
  }
  if (mode === 'debounce' && use.dependsOn) {
    throw new InvalidArgumentError('dedupe.mode "debounce" cannot be combined with dependsOn: a debounced job is a delayed job, and a delayed job has no dependencies');
  }
  if (mode === 'debounce' && use.delayed) {
    throw new InvalidArgumentError('dedupe.mode "debounce" cannot be combined with enqueueAt / enqueueIn: the job runs dedupe.ttlMs after the last enqueue of its key; use enqueue');
  }
  return { key: d.key as string, ttlMs, mode: mode as DedupeMode };
}

/** The entry's key in the bucket: each mode has its own windows. */
export function dedupeEntryKey(dedupe: Pick<CheckedDedupe, 'key' | 'mode'>): string {
  return `${dedupe.mode}.${dedupe.key}`;
}

/** A stored entry, or null when it is not one naq can use (a writer that broke the format): then it holds no window. */
export function decodeDedupeRecord(text: string): DedupeRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const r = value as Partial<DedupeRecord> | null;
  if (!r || typeof r !== 'object' || r.v !== 1 || typeof r.jobId !== 'string' || typeof r.queue !== 'string' || typeof r.ts !== 'number') return null;
  if (r.until !== undefined && typeof r.until !== 'number') return null;
  return r as DedupeRecord;
}

/** A throttle window still open at `now`. */
export function isOpenWindow(record: DedupeRecord | null, now: number): record is DedupeRecord & { until: number } {
  return record !== null && record.until !== undefined && record.until > now;
}

/**
 * Debounce: whether moving the job's due time to `dueAt` needs the key's entry written again
 * first. The bucket drops an entry `maxTtlMs` after its last write; past half of that, a new due
 * time could outlive it (and a later enqueue would then start a second job).
 */
export function needsRefresh(record: DedupeRecord, dueAt: number, maxTtlMs: number): boolean {
  return dueAt > record.ts + maxTtlMs / 2;
}

/** How many open throttle windows a process remembers. */
const REMEMBERED_WINDOWS = 10_000;

/**
 * The throttle windows this process has seen open, by entry key, until they end: an enqueue
 * of a key whose window it knows is answered without a round trip. A window cannot end early
 * (nothing naq does removes an open one), so what is remembered stays true; the bucket stays
 * the truth for every other process. At most REMEMBERED_WINDOWS are kept; past that the ended
 * ones go, then the oldest.
 */
export class OpenWindows {
  readonly #open = new Map<string, DedupeRecord & { until: number }>();

  /** The window of `entryKey` if this process knows it is open at `now`. */
  get(entryKey: string, now: number): (DedupeRecord & { until: number }) | undefined {
    const record = this.#open.get(entryKey);
    if (!record) return undefined;
    if (record.until > now) return record;
    this.#open.delete(entryKey);
    return undefined;
  }

  remember(entryKey: string, record: DedupeRecord, now: number): void {
    if (!isOpenWindow(record, now)) return;
    if (this.#open.size >= REMEMBERED_WINDOWS && !this.#open.has(entryKey)) {
      for (const [key, r] of this.#open) if (r.until <= now) this.#open.delete(key);
      if (this.#open.size >= REMEMBERED_WINDOWS) this.#open.delete(this.#open.keys().next().value!);
    }
    this.#open.set(entryKey, record);
  }

  get size(): number {
    return this.#open.size;
  }
}
