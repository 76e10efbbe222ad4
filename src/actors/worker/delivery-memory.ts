/**
 * What a worker remembers between deliveries: the jobs it finished recently (so a redelivery
 * of one is acked, not run) and the cancel notices it heard (so a job that arrives after its
 * cancel is not run). Part of the job path (job-path.ts), kept apart so its bounds are plain.
 */

/** How many finished job ids a worker remembers (at least; at most twice). */
const RECENT_JOBS = 4096;
/** Cancels are remembered this long, for jobs that arrive after their cancel notice. */
const CANCEL_MEMORY_MS = 10 * 60_000;

export class DeliveryMemory {
  /**
   * Jobs finished here (id → enqueue time). Two generations of RECENT_JOBS each, swapped when
   * the newer fills: no per-job eviction (a Map iterator per delete was ~1 % of the worker's CPU).
   */
  #recent = new Map<string, number>();
  #recentOld = new Map<string, number>();
  readonly #cancelled = new Map<string, number>();

  /** The job finished here, for this enqueue (`ts`). */
  finished(id: string, ts: number): boolean {
    return (this.#recent.get(id) ?? this.#recentOld.get(id)) === ts;
  }

  remember(id: string, enqueuedAt: number): void {
    this.#recent.set(id, enqueuedAt);
    if (this.#recent.size >= RECENT_JOBS) {
      this.#recentOld = this.#recent;
      this.#recent = new Map();
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
