/**
 * The event model and its wire format (DESIGN: NAQ_EVENTS): every job, worker and scheduler
 * transition is an event; one message on `<prefix>.events.<queue>` carries a batch of them.
 */
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
  'worker.started',
  'worker.stopped',
  'worker.paused',
  'worker.resumed',
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


const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeBatch(events: readonly NaqEvent[]): Uint8Array {
  return encoder.encode(JSON.stringify({ v: EVENT_VERSION, events }));
}

/** The events of one message; a message naq cannot read yields none rather than failing a query. */
export function decodeBatch(data: Uint8Array): NaqEvent[] {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(data));
  } catch {
    return [];
  }
  const batch = body as { v?: unknown; events?: unknown };
  if (batch?.v !== EVENT_VERSION || !Array.isArray(batch.events)) return [];
  return batch.events.filter(
    (e): e is NaqEvent => typeof e === 'object' && e !== null && typeof e.type === 'string' && typeof e.ts === 'number' && typeof e.queue === 'string',
  );
}
