/**
 * The event model and its wire format (DESIGN: NAQ_EVENTS): every job, worker and scheduler
 * transition is an event; one message on `<prefix>.events.<queue>` carries a batch of them.
 */
import { utf8 } from '../core/utf8.js';

export const EVENT_VERSION = 1;

export const EVENT_TYPES = [
  'job.enqueued',
  'job.started',
  'job.progress',
  'job.completed',
  'job.failed',
  'job.retrying',
  'job.cancelled',
  'job.dead',
  'job.promoted',
  'job.delayed',
  'job.removed',
  'job.deferred',
  'job.deduplicated',
  'worker.started',
  'worker.stopped',
  'worker.paused',
  'worker.resumed',
  'queue.paused',
  'queue.resumed',
  'queue.limited',
  'queue.held',
  'schedule.added',
  'schedule.paused',
  'schedule.resumed',
  'schedule.removed',
  'schedule.fired',
  'schedule.failed',
  'leader.elected',
  'leader.lost',
  'events.dropped',
] as const;

export type NaqEventType = (typeof EVENT_TYPES)[number];

export interface NaqEvent {
  v: typeof EVENT_VERSION;
  type: NaqEventType;
  /** When it happened, ms since the epoch (the emitting process's clock). */
  ts: number;
  /** The job's queue, or `_system` for events that belong to no queue. */
  queue: string;
  jobId?: string;
  workerId?: string;
  data?: Record<string, unknown>;
}

/** What callers hand to `emit()`: version and time are filled in. */
export type NaqEventInput = Omit<NaqEvent, 'v' | 'ts'> & { ts?: number };

/** An event read back from the stream; `seq` is the stream sequence of its batch message. */
export type StoredEvent = NaqEvent & { seq: number };

/** The queue of events that belong to no queue (leader changes, dropped-event reports). */
export const SYSTEM_QUEUE = '_system';

export function eventsSubject(prefix: string, queue: string): string {
  return `${prefix}.events.${queue}`;
}

export function eventsWildcard(prefix: string): string {
  return `${prefix}.events.>`;
}

const KNOWN_TYPES = new Set<string>(EVENT_TYPES);

export function isEventType(value: string): value is NaqEventType {
  return KNOWN_TYPES.has(value);
}


const decoder = new TextDecoder();

/**
 * The batch format written: 3 carries the queue, each worker id and each event type once per
 * batch, the times as offsets from the batch's first, and each event as a short array (format 2
 * wrote one object per event with its keys). A worker's batch is less than half of format 2's:
 * fewer bytes written, sent and stored per job. Formats 1 and 2 are still read.
 */
export const BATCH_VERSION = 3;

/** An event as the buffer holds it: its version is the batch's business. */
export type BufferedEvent = Omit<NaqEvent, 'v'> & { v?: number };

/**
 * One batch message (format 3, docs/wire-format.md): each event is
 * `[type, ts - t, jobId, w, data, queue]`, null where absent, the trailing nulls left out.
 */
export function encodeBatch(events: readonly BufferedEvent[]): Uint8Array {
  const queue = events[0]?.queue ?? SYSTEM_QUEUE;
  // A time JSON cannot carry (NaN) as the batch's base would lose every event of the batch.
  const first = events[0]?.ts;
  const t = first !== undefined && Number.isFinite(first) ? first : 0;
  const workers: string[] = [];
  const types: string[] = [];
  const rows = new Array<unknown[]>(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    let type = types.indexOf(e.type);
    if (type === -1) type = types.push(e.type) - 1;
    let w: number | null = null;
    if (e.workerId !== undefined) {
      w = workers.indexOf(e.workerId);
      if (w === -1) w = workers.push(e.workerId) - 1;
    }
    // The buffer's batches are of one queue (one lane per queue); any other is encodable too.
    const row: unknown[] = [type, e.ts - t, e.jobId ?? null, w, e.data ?? null];
    if (e.queue !== queue) row.push(e.queue);
    else while (row.length > 2 && row[row.length - 1] === null) row.pop();
    rows[i] = row;
  }
  return utf8(JSON.stringify({ v: BATCH_VERSION, queue, workers, types, t, events: rows }));
}

function isEvent(e: unknown): e is NaqEvent {
  const x = e as NaqEvent;
  return typeof x === 'object' && x !== null && typeof x.type === 'string' && typeof x.ts === 'number' && typeof x.queue === 'string';
}

/** A format-2 event with its queue and worker id put back; null when it is not one. */
function expand(e: unknown, queue: unknown, workers: unknown[]): NaqEvent | null {
  if (typeof e !== 'object' || e === null) return null;
  const c = e as { type?: unknown; ts?: unknown; queue?: unknown; jobId?: unknown; w?: unknown; data?: unknown };
  const event = { v: EVENT_VERSION, type: c.type, ts: c.ts, queue: c.queue ?? queue } as NaqEvent;
  if (typeof c.jobId === 'string') event.jobId = c.jobId;
  if (typeof c.w === 'number' && typeof workers[c.w] === 'string') event.workerId = workers[c.w] as string;
  if (c.data !== undefined) event.data = c.data as Record<string, unknown>;
  return isEvent(event) ? event : null;
}

/** A format-3 row put back into an event; null when it is not one. */
function expandRow(row: unknown, queue: unknown, workers: unknown[], types: unknown[], t: number): NaqEvent | null {
  if (!Array.isArray(row) || typeof row[0] !== 'number' || typeof row[1] !== 'number') return null;
  const [type, dt, jobId, w, data, q] = row as [number, number, unknown, unknown, unknown, unknown];
  const event = { v: EVENT_VERSION, type: types[type], ts: t + dt, queue: q ?? queue } as NaqEvent;
  if (typeof jobId === 'string') event.jobId = jobId;
  if (typeof w === 'number' && typeof workers[w] === 'string') event.workerId = workers[w] as string;
  if (data !== null && data !== undefined) event.data = data as Record<string, unknown>;
  return isEvent(event) ? event : null;
}

/** The events of one message; a message naq cannot read yields none rather than failing a query. */
export function decodeBatch(data: Uint8Array): NaqEvent[] {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(data));
  } catch {
    return [];
  }
  const batch = body as { v?: unknown; queue?: unknown; workers?: unknown; types?: unknown; t?: unknown; events?: unknown };
  if (!Array.isArray(batch?.events)) return [];
  if (batch.v === 1) return batch.events.filter(isEvent);
  if (batch.v !== 2 && batch.v !== 3) return [];
  const workers = Array.isArray(batch.workers) ? (batch.workers as unknown[]) : [];
  const events: NaqEvent[] = [];
  if (batch.v === 3) {
    if (!Array.isArray(batch.types) || typeof batch.t !== 'number') return [];
    for (const row of batch.events) {
      const event = expandRow(row, batch.queue, workers, batch.types as unknown[], batch.t);
      if (event) events.push(event);
    }
    return events;
  }
  for (const e of batch.events) {
    const event = expand(e, batch.queue, workers);
    if (event) events.push(event);
  }
  return events;
}
