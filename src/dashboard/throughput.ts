/**
 * Completed and failed jobs per minute over the last 15 minutes, per queue, for the overview's
 * chart: seeded once from the event log's history, then kept by the live tail the dashboard
 * already follows, so drawing the chart never scans the stream.
 */
import type { NaqEvent } from '../model/event.js';

export const WINDOW_MS = 15 * 60_000;
export const BUCKET_MS = 60_000;
const BUCKETS = WINDOW_MS / BUCKET_MS;

export interface ThroughputSeries {
  /** Start of each minute, oldest first; the last one is the current minute. */
  minutes: number[];
  /** Per queue: counts per minute, aligned with `minutes`. */
  queues: Record<string, { completed: number[]; failed: number[] }>;
}

export class Throughput {
  /** queue → minute start → counts. */
  readonly #counts = new Map<string, Map<number, { completed: number; failed: number }>>();

  constructor(private readonly now: () => number = Date.now) {}

  add(event: Pick<NaqEvent, 'type' | 'ts' | 'queue'>): void {
    if (event.type !== 'job.completed' && event.type !== 'job.failed') return;
    const minute = Math.floor(event.ts / BUCKET_MS) * BUCKET_MS;
    if (minute <= this.now() - WINDOW_MS) return;
    let perQueue = this.#counts.get(event.queue);
    if (!perQueue) this.#counts.set(event.queue, (perQueue = new Map()));
    let bucket = perQueue.get(minute);
    if (!bucket) perQueue.set(minute, (bucket = { completed: 0, failed: 0 }));
    if (event.type === 'job.completed') bucket.completed++;
    else bucket.failed++;
  }

  series(): ThroughputSeries {
    const current = Math.floor(this.now() / BUCKET_MS) * BUCKET_MS;
    const minutes = Array.from({ length: BUCKETS }, (_, i) => current - (BUCKETS - 1 - i) * BUCKET_MS);
    const queues: ThroughputSeries['queues'] = {};
    for (const [queue, perQueue] of this.#counts) {
      for (const minute of perQueue.keys()) if (minute < minutes[0]!) perQueue.delete(minute);
      queues[queue] = {
        completed: minutes.map((m) => perQueue.get(m)?.completed ?? 0),
        failed: minutes.map((m) => perQueue.get(m)?.failed ?? 0),
      };
    }
    return { minutes, queues };
  }
}
