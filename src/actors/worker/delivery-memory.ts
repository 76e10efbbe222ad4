/**
 * What a worker remembers between deliveries: the jobs it finished recently (so a redelivery
 * of one is acked, not run) and the cancel notices it heard (so a job that arrives after its
 * cancel is not run). Part of the job path (job-path.ts), kept apart so its bounds are plain.
 */

/** How many finished job ids a worker remembers (at least; at most twice). */
export const RECENT_JOBS = 4096;
/**
 * The first generation's size. The swap then first runs while the worker is cold: V8 leaves
 * code it has not seen run out of its optimized code, and a first swap at job 4096, once the
 * job path was optimized with this inlined into it, threw that code away (`--trace-deopt`) to
 * compile it again (40–65 ms, `--trace-opt`). Nothing is forgotten sooner: the small
 * generation is kept until the next one is full.
 */
const FIRST_GENERATION = 256;
/** Cancels are remembered this long, for jobs that arrive after their cancel notice. */
const CANCEL_MEMORY_MS = 10 * 60_000;

/** Bits of the filter over a generation's ids: 64 Ki (8 KiB), sixteen per id a generation holds at most. */
const FILTER_BITS = 1 << 16;

/** FNV-1a over the id's UTF-16 code units, folded to the filter's width. */
function slot(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 16)) & (FILTER_BITS - 1);
}

export class DeliveryMemory {
  /**
   * Jobs finished here (id → enqueue time). Two generations of RECENT_JOBS each (the first of
   * FIRST_GENERATION), swapped when the newer fills: no per-job eviction (a Map iterator per
   * delete was ~1 % of the worker's CPU).
   */
  #recent = new Map<string, number>();
  #recentOld = new Map<string, number>();
  #generation = FIRST_GENERATION;
  /**
   * One bit per id hash for each generation. Nearly every delivery is a job not finished here,
   * and two misses in maps of thousands of ids cost the worker ~0.8 µs a job in profiles (the
   * tables are out of cache by the next job); a clear bit answers without them.
   */
  #bits = new Uint32Array(FILTER_BITS / 32);
  #bitsOld = new Uint32Array(FILTER_BITS / 32);
  readonly #cancelled = new Map<string, number>();

  /** The job finished here, for this enqueue (`ts`). */
  finished(id: string, ts: number): boolean {
    const s = slot(id);
    const bit = 1 << (s & 31);
    if (((this.#bits[s >>> 5]! | this.#bitsOld[s >>> 5]!) & bit) === 0) return false;
    return (this.#recent.get(id) ?? this.#recentOld.get(id)) === ts;
  }

  remember(id: string, enqueuedAt: number): void {
    this.#recent.set(id, enqueuedAt);
    const s = slot(id);
    this.#bits[s >>> 5]! |= 1 << (s & 31);
    if (this.#recent.size >= this.#generation) {
      this.#generation = RECENT_JOBS;
      this.#recentOld = this.#recent;
      this.#recent = new Map();
      const old = this.#bitsOld;
      this.#bitsOld = this.#bits;
      this.#bits = old.fill(0);
    }
  }

  /** A cancel notice heard at `now`; notices older than CANCEL_MEMORY_MS are forgotten. */
  cancel(id: string, now: number): void {
    this.#cancelled.set(id, now);
    for (const [other, at] of this.#cancelled) if (now - at > CANCEL_MEMORY_MS) this.#cancelled.delete(other);
  }

  /** A cancel notice covers the jobs enqueued before it: a later enqueue of the same id runs. */
  cancelledBefore(id: string, ts: number): boolean {
    if (this.#cancelled.size === 0) return false;
    const at = this.#cancelled.get(id);
    return at !== undefined && ts <= at;
  }
}
