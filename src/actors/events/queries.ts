/**
 * The read side of the event log: history, a live tail and stats. It uses ordered consumers
 * with ONE filter subject — nats-server 2.9.10 silently ignores several — and filters by job
 * and type on the client.
 */
import { JetStreamApiCodes, JetStreamApiError, jetstream, type Consumer, type ConsumerMessages, type OrderedConsumerOptions, type StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidArgumentError, NotFoundError, OperationTimeoutError } from '../../core/errors.js';
import { layout, validateJobId, validateQueue } from '../../model/layout.js';
import { decodeBatch, EVENT_TYPES, eventsSubject, eventsWildcard, isEventType, type NaqEvent, type NaqEventType, type StoredEvent } from '../../model/event.js';

export interface EventFilter {
  /** One queue (`_system` for non-queue events); all queues when absent. */
  queue?: string;
  jobId?: string;
  /** Any of these types; all when absent or empty. */
  types?: NaqEventType[];
}

export interface HistoryFilter extends EventFilter {
  /** Events whose `ts` is at or after this time (ms since the epoch, or a Date). */
  since?: Date | number;
  /** Events of batch messages at or after this stream sequence. */
  sinceSeq?: number;
  /** At most this many: the FIRST `limit` matching events from the start point. Default 1000. */
  limit?: number;
}

export interface StatsFilter {
  queue?: string;
  since: Date | number;
  /** Default: now. */
  until?: Date | number;
}

export interface EventStats {
  since: number;
  until: number;
  total: number;
  byType: Record<string, number>;
  byQueue: Record<string, number>;
  /** Events per second over the window. */
  ratePerSec: number;
  /** job.failed / (job.completed + job.failed); 0 when neither happened. */
  failureRatio: number;
  /** Of `data.durationMs` of job.completed and job.failed events; null when there are none. */
  durationMs: { p50: number | null; p95: number | null; count: number };
}

export interface EventSubscription extends AsyncIterable<StoredEvent> {
  stop(): void;
}

export interface QueryOptions {
  /** A scan that receives nothing for this long fails rather than hanging. Default 10 s. */
  idleTimeoutMs?: number;
}

export const DEFAULT_HISTORY_LIMIT = 1000;
const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
/**
 * A message is stored after its events happened (they wait for a flush), possibly by another
 * machine whose clock runs a little ahead: start reading this much earlier and filter on `ts`.
 */
const CLOCK_SLACK_MS = 5000;
const PULL_BATCH = 256;

function toMs(value: Date | number | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = value instanceof Date ? value.getTime() : value;
  if (!Number.isFinite(ms)) throw new InvalidArgumentError(`${name}: expected a time, got ${String(value)}`);
  return ms;
}

function checkFilter(filter: EventFilter): void {
  if (filter.queue !== undefined) validateQueue(filter.queue);
  if (filter.jobId !== undefined) validateJobId(filter.jobId);
  for (const type of filter.types ?? []) {
    if (!isEventType(type)) throw new InvalidArgumentError(`unknown event type ${JSON.stringify(type)}: expected one of ${EVENT_TYPES.join(', ')}`);
  }
}

export function eventMatcher(filter: EventFilter & { since?: number }): (event: NaqEvent) => boolean {
  const types = filter.types?.length ? new Set<string>(filter.types) : undefined;
  return (e) =>
    (filter.queue === undefined || e.queue === filter.queue) &&
    (filter.jobId === undefined || e.jobId === filter.jobId) &&
    (types === undefined || types.has(e.type)) &&
    (filter.since === undefined || e.ts >= filter.since);
}

function filterSubject(prefix: string, queue: string | undefined): string {
  return queue === undefined ? eventsWildcard(prefix) : eventsSubject(prefix, queue);
}

async function streamInfo(nc: NatsConnection, stream: string): Promise<StreamInfo | null> {
  const jsm = await jetstream(nc).jetstreamManager();
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return null;
    throw error;
  }
}

interface ScanRange {
  subject: string;
  startSeq?: number | undefined;
  startTime?: number | undefined;
  /** Stop at messages stored after this time. */
  endTime?: number | undefined;
  idleTimeoutMs: number;
}

/**
 * Visits the events of every message from the start point up to the stream's last message
 * at call time; `visit` returns false to stop early. Nothing to read (or no stream yet) is an
 * empty scan, not an error.
 */
async function scan(nc: NatsConnection, prefix: string, range: ScanRange, visit: (event: StoredEvent) => boolean): Promise<void> {
  const stream = layout(prefix).eventsStream;
  const info = await streamInfo(nc, stream);
  const last = info?.state.last_seq ?? 0;
  if (!info || info.state.messages === 0 || (range.startSeq ?? 0) > last) return;
  const options: Partial<OrderedConsumerOptions> = { filter_subjects: range.subject };
  if (range.startSeq !== undefined) options.opt_start_seq = Math.max(1, range.startSeq);
  else if (range.startTime !== undefined) options.opt_start_time = new Date(range.startTime).toISOString();
  const consumer = await jetstream(nc).consumers.get(stream, options);
  try {
    if ((await consumer.info(true)).num_pending === 0) return;
    await readUntilDone(consumer, last, range, visit);
  } finally {
    consumer.delete().catch(() => {});
  }
}

async function readUntilDone(consumer: Consumer, last: number, range: ScanRange, visit: (event: StoredEvent) => boolean): Promise<void> {
  const messages = await consumer.consume({ max_messages: PULL_BATCH });
  const idle = idleWatch(messages, range.idleTimeoutMs);
  try {
    for await (const msg of messages) {
      idle.touch();
      if (range.endTime !== undefined && msg.time.getTime() > range.endTime) return;
      for (const event of decodeBatch(msg.data)) {
        if (!visit({ ...event, seq: msg.seq })) return;
      }
      if (msg.info.pending === 0 || msg.seq >= last) return;
    }
  } finally {
    idle.stop();
    messages.stop();
  }
  if (idle.fired) throw new OperationTimeoutError('reading the event log', range.idleTimeoutMs);
}

/** One timer per scan: ends the read when the server stops delivering. */
function idleWatch(messages: ConsumerMessages, idleTimeoutMs: number) {
  let lastSeen = Date.now();
  const watch = {
    fired: false,
    touch: () => (lastSeen = Date.now()),
    stop: () => clearInterval(timer),
  };
  const timer = setInterval(
    () => {
      if (Date.now() - lastSeen < idleTimeoutMs) return;
      watch.fired = true;
      messages.stop();
    },
    Math.max(10, Math.min(1000, idleTimeoutMs / 4)),
  );
  return watch;
}

/**
 * Events in stream order (the order they were published; within a batch, the order emitted).
 * Reads from `sinceSeq`, else from `since`, else from the start, up to the stream's last
 * message at call time, and returns the first `limit` events that match. Without `queue`,
 * every queue's subject is read and filtered here.
 */
export async function history(nc: NatsConnection, prefix: string, filter: HistoryFilter = {}, options: QueryOptions = {}): Promise<StoredEvent[]> {
  checkFilter(filter);
  const limit = filter.limit ?? DEFAULT_HISTORY_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new InvalidArgumentError(`limit: expected a positive integer, got ${String(filter.limit)}`);
  const since = toMs(filter.since, 'since');
  const match = eventMatcher({ ...filter, since });
  const found: StoredEvent[] = [];
  await scan(
    nc,
    prefix,
    {
      subject: filterSubject(prefix, filter.queue),
      startSeq: filter.sinceSeq,
      startTime: since === undefined ? undefined : since - CLOCK_SLACK_MS,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    },
    (event) => {
      if (match(event)) found.push(event);
      return found.length < limit;
    },
  );
  return found;
}

/** Live events only: those published after the subscription exists (it does once this resolves). */
export async function subscribe(nc: NatsConnection, prefix: string, filter: EventFilter = {}): Promise<EventSubscription> {
  checkFilter(filter);
  const stream = layout(prefix).eventsStream;
  const info = await streamInfo(nc, stream);
  if (!info) throw new NotFoundError(`stream ${stream}`);
  // A start sequence, not DeliverPolicy.New: the client's ordered consumer restarts from its
  // cursor after a reset, and with "new" and nothing seen yet that cursor is the beginning.
  const consumer = await jetstream(nc).consumers.get(stream, {
    filter_subjects: filterSubject(prefix, filter.queue),
    opt_start_seq: info.state.last_seq + 1,
  });
  const messages = await consumer.consume({ max_messages: PULL_BATCH });
  const match = eventMatcher(filter);
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    messages.stop();
    consumer.delete().catch(() => {});
  };
  return {
    stop,
    async *[Symbol.asyncIterator]() {
      try {
        for await (const msg of messages) {
          for (const event of decodeBatch(msg.data)) if (match(event)) yield { ...event, seq: msg.seq };
        }
      } finally {
        stop();
      }
    },
  };
}

/** Counts events one at a time, so a window of any size costs memory only for durations. */
export class StatsAccumulator {
  readonly #since: number;
  readonly #until: number;
  readonly #byType: Record<string, number> = {};
  readonly #byQueue: Record<string, number> = {};
  readonly #durations: number[] = [];
  #total = 0;

  constructor(since: number, until: number) {
    this.#since = since;
    this.#until = until;
  }

  add(event: NaqEvent): void {
    if (event.ts < this.#since || event.ts > this.#until) return;
    this.#total++;
    this.#byType[event.type] = (this.#byType[event.type] ?? 0) + 1;
    this.#byQueue[event.queue] = (this.#byQueue[event.queue] ?? 0) + 1;
    const duration = event.data?.durationMs;
    if ((event.type === 'job.completed' || event.type === 'job.failed') && typeof duration === 'number' && Number.isFinite(duration)) {
      this.#durations.push(duration);
    }
  }

  result(): EventStats {
    const completed = this.#byType['job.completed'] ?? 0;
    const failed = this.#byType['job.failed'] ?? 0;
    const seconds = Math.max(0.001, (this.#until - this.#since) / 1000);
    const sorted = [...this.#durations].sort((a, b) => a - b);
    return {
      since: this.#since,
      until: this.#until,
      total: this.#total,
      byType: { ...this.#byType },
      byQueue: { ...this.#byQueue },
      ratePerSec: this.#total / seconds,
      failureRatio: completed + failed === 0 ? 0 : failed / (completed + failed),
      durationMs: { p50: percentile(sorted, 50), p95: percentile(sorted, 95), count: sorted.length },
    };
  }
}

/** Nearest-rank percentile of an ascending list: a value that actually occurred. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** Counts, rates, failure ratio and job duration percentiles over the events with `since <= ts <= until`. */
export async function stats(nc: NatsConnection, prefix: string, filter: StatsFilter, options: QueryOptions = {}): Promise<EventStats> {
  if (filter.queue !== undefined) validateQueue(filter.queue);
  const since = toMs(filter.since, 'since');
  if (since === undefined) throw new InvalidArgumentError('since: a start time is required');
  const until = toMs(filter.until, 'until') ?? Date.now();
  if (until < since) throw new InvalidArgumentError(`until (${new Date(until).toISOString()}) is before since (${new Date(since).toISOString()})`);
  const acc = new StatsAccumulator(since, until);
  await scan(
    nc,
    prefix,
    {
      subject: filterSubject(prefix, filter.queue),
      startTime: since - CLOCK_SLACK_MS,
      endTime: until + CLOCK_SLACK_MS,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    },
    (event) => {
      acc.add(event);
      return true;
    },
  );
  return acc.result();
}
