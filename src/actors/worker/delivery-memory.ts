/**
 * What a worker remembers between deliveries: the jobs it finished recently (so a redelivery
 * of one is acked, not run) and the cancel notices it heard (so a job that arrives after its
 * cancel is not run). Part of the job path (job-path.ts), kept apart so its bounds are plain.
 */

/** How many finished jobs a worker remembers: exactly the last this many. */
export const RECENT_JOBS = 8192;
/**
 * Ids up to this long (in code units below 256, as naq's and UUIDs are) are kept as bytes in
 * one slab; longer ones as strings.
 */
const ID_BYTES = 40;
/** Marks a slot whose id is kept as a string. */
const LONG_ID = 255;
/** Hash buckets: eight per remembered job, so a job never finished here is mostly told by one empty bucket. */
const BUCKETS = RECENT_JOBS * 8;
export const BUCKET_MASK = BUCKETS - 1;
/** Cancels are remembered this long, for jobs that arrive after their cancel notice. */
const CANCEL_MEMORY_MS = 10 * 60_000;

/** FNV-1a over the id's UTF-16 code units. */
export function hashOf(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h ^ (h >>> 16);
}

/**
 * The finished jobs are a ring of RECENT_JOBS slots in typed arrays, chained per hash bucket,
 * newest first. A Map of id strings kept every id alive for thousands of jobs, so each one
 * reached V8's old generation and stayed there as garbage until a full collection: ~8 MB
 * more heap every 100,000 jobs (`--trace-gc`), and a worker's peak RSS then depended on when
 * V8 chose to collect (95–143 MiB over the same drain). The ring allocates nothing per job.
 *
 * Code in the job path that first runs after V8 optimized it makes V8 throw that code away
 * and compile it again (40–65 ms, `--trace-deopt`). So nothing here waits for the ring to
 * fill or for a bucket to be taken before it first runs:
 * - a slot overwritten by a newer job leaves stale links behind it rather than being
 *   unlinked: a walk stops at the first slot that is no older than the one before it or
 *   belongs to another bucket, which is where the remembered part of a chain ends (without
 *   that stop a chain can turn into a loop: B links to A, A's slot then takes C of the same
 *   bucket, and C links to B);
 * - slot 0 is never written and ends every chain, so every lookup walks at least one slot,
 *   and its tests are evaluated whole (`&`, `|`), not cut short.
 */
class FinishedRing {
  #count = 0;
  /** Per bucket: the slot of its newest job, or 0. */
  readonly #heads = new Uint16Array(BUCKETS);
  /** Per slot: the slot of the next older job of its bucket, or 0. */
  readonly #next = new Uint16Array(RECENT_JOBS + 1);
  readonly #hash = new Int32Array(RECENT_JOBS + 1);
  /** Per slot: when it was written (1 for the first job; 0 in slot 0), to tell a stale link. */
  readonly #seq = new Float64Array(RECENT_JOBS + 1);
  /** Per slot: the job's enqueue time (NaN in slot 0: equal to none); a later enqueue of the same id is another job. */
  readonly #ts = new Float64Array(RECENT_JOBS + 1).fill(Number.NaN);
  readonly #length = new Uint8Array(RECENT_JOBS + 1);
  readonly #bytes = new Uint8Array((RECENT_JOBS + 1) * ID_BYTES);
  readonly #longIds: (string | undefined)[] = new Array<string | undefined>(RECENT_JOBS + 1).fill(undefined);

  /** The job finished here, for this enqueue (`ts`). */
  finished(id: string, ts: number): boolean {
    const h = hashOf(id);
    const bucket = h & BUCKET_MASK;
    let slot = this.#heads[bucket]!;
    let newer = Number.POSITIVE_INFINITY;
    for (;;) {
      const seq = this.#seq[slot]!;
      const hash = this.#hash[slot]!;
      if (+(hash === h) & +(this.#ts[slot] === ts)) {
        if (seq < newer && this.#holds(slot, id)) return true;
      }
      // Slot 0 (seq 0) is passed once, then ends the walk.
      if (+(seq >= newer) | (+(slot !== 0) & +((hash & BUCKET_MASK) !== bucket))) return false;
      newer = seq;
      slot = this.#next[slot]!;
    }
  }

  remember(id: string, enqueuedAt: number): void {
    const slot = 1 + (this.#count % RECENT_JOBS);
    this.#count++;
    // The job this slot held is forgotten; its bucket's head is cleared when it was that job.
    const previous = this.#hash[slot]! & BUCKET_MASK;
    this.#heads[previous] = this.#heads[previous] === slot ? 0 : this.#heads[previous]!;
    const h = hashOf(id);
    const bucket = h & BUCKET_MASK;
    this.#hash[slot] = h;
    this.#seq[slot] = this.#count;
    this.#ts[slot] = enqueuedAt;
    this.#next[slot] = this.#heads[bucket]!;
    this.#heads[bucket] = slot;
    const n = id.length;
    let wide = n > ID_BYTES ? 256 : 0;
    const base = slot * ID_BYTES;
    for (let i = 0; i < n && i < ID_BYTES; i++) {
      const c = id.charCodeAt(i);
      wide |= c & 0xff00;
      this.#bytes[base + i] = c;
    }
    this.#length[slot] = wide === 0 ? n : LONG_ID;
    this.#longIds[slot] = wide === 0 ? undefined : id;
  }

  #holds(slot: number, id: string): boolean {
    const n = this.#length[slot]!;
    if (n === LONG_ID) return this.#longIds[slot] === id;
    if (n !== id.length) return false;
    const base = slot * ID_BYTES;
    for (let i = 0; i < n; i++) if (this.#bytes[base + i] !== id.charCodeAt(i)) return false;
    return true;
  }
}

/**
 * The ring (~0.7 MB) is made when the queue's worker finishes its first job: a worker that
 * serves many queues pays nothing for the idle ones.
 */
export class DeliveryMemory {
  #ring: FinishedRing | null = null;
  readonly #cancelled = new Map<string, number>();

  /** The job finished here, for this enqueue (`ts`). */
  finished(id: string, ts: number): boolean {
    const ring = this.#ring;
    return ring !== null && ring.finished(id, ts);
  }

  remember(id: string, enqueuedAt: number): void {
    (this.#ring ??= new FinishedRing()).remember(id, enqueuedAt);
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
