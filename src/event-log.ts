/**
 * The event log (DESIGN: NAQ_EVENTS): every job, worker and scheduler transition becomes an
 * event, batched many to a message on `<prefix>.events.<queue>`, and read back as history,
 * a live tail or stats.
 *
 * The write side is `EventBuffer`: `emit()` only pushes into an array, so the job path never
 * pays a server write per event (DESIGN: the per-job budget). The read side uses ordered
 * consumers with ONE filter subject — nats-server 2.9.10 silently ignores several — and
 * filters by job and type on the client.
 */
import {
  DiscardPolicy,
  JetStreamApiError,
  jetstream,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type ConsumerMessages,
  type JetStreamManager,
  type OrderedConsumerOptions,
  type StreamInfo,
} from '@nats-io/jetstream';
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { jobsRuntimeFor } from './actors/jobs-runtime.js';
import { ensureStream, type EnsureStreamOptions } from './actors/streams.js';
import type { NaqConfig } from './config.js';
import { InvalidArgumentError, NotFoundError, OperationTimeoutError } from './errors.js';
import { layout, validateJobId, validateQueue } from './layout.js';
import type { Logger } from './log.js';

// ---------------------------------------------------------------------------------------
// The event model

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

// ---------------------------------------------------------------------------------------
// Wire format: one message = `{ "v": 1, "events": [...] }`

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

// ---------------------------------------------------------------------------------------
// The write side

export type EventPublish = (subject: string, data: Uint8Array, options: { msgId: string }) => Promise<unknown>;

export interface EventBufferSettings {
  /** Events per message; a queue that reaches it is sent at once. */
  maxBatch: number;
  /** Everything buffered is sent at least this often. */
  flushMs: number;
  /** Events held (not yet sent, or sent and failed) before the oldest are dropped. */
  maxBuffered: number;
  /** Encoded message size cap; a bigger batch is split (NATS refuses payloads over max_payload). */
  maxBytes?: number;
  /** Upper bound of the retry backoff after failed publishes. */
  maxRetryDelayMs?: number;
}

/** The counters and switches every event log has, enabled or not. */
export interface EventLog {
  readonly enabled: boolean;
  readonly online: boolean;
  /** Held in memory: not yet sent, or sent, failed and waiting for a retry. */
  readonly buffered: number;
  /** Sent, not yet acknowledged. */
  readonly inFlight: number;
  /** Dropped because more than `maxBuffered` were held. */
  readonly dropped: number;
  /** Acknowledged by the server. */
  readonly published: number;
  emit(event: NaqEventInput): void;
  /** Sends everything now and waits for the acks; what still fails stays buffered. */
  flush(): Promise<void>;
  setOnline(online: boolean): void;
  stop(): void;
}

export type EventLogCounters = Pick<EventLog, 'enabled' | 'online' | 'buffered' | 'inFlight' | 'dropped' | 'published'>;

export function counters(log: EventLog): EventLogCounters {
  const { enabled, online, buffered, inFlight, dropped, published } = log;
  return { enabled, online, buffered, inFlight, dropped, published };
}

interface Batch {
  /** Creation order, so failed batches go back in the order they were made. */
  n: number;
  /** Nats-Msg-Id: a retried batch the server already stored is dropped as a duplicate. */
  msgId: string;
  events: NaqEvent[];
}

/** One queue's events: failed batches (older) first, then events not yet sent. */
interface Lane {
  subject: string;
  retry: Batch[];
  pending: NaqEvent[];
}

const DEFAULT_MAX_BYTES = 512 * 1024;
const DEFAULT_MAX_RETRY_DELAY_MS = 5000;
/** flush() sends again while new events (such as a drop report) keep arriving, but not forever. */
const MAX_FLUSH_ROUNDS = 5;

export class EventBuffer implements EventLog {
  readonly enabled = true;
  readonly #publish: EventPublish;
  readonly #prefix: string;
  readonly #maxBatch: number;
  readonly #flushMs: number;
  readonly #maxBuffered: number;
  readonly #maxBytes: number;
  readonly #maxRetryDelayMs: number;
  readonly #log: Logger;
  readonly #lanes = new Map<string, Lane>();
  readonly #outstanding = new Set<Promise<void>>();
  readonly #id = nuid.next();
  #batches = 0;
  #timer: NodeJS.Timeout | undefined;
  #online = true;
  #stopped = false;
  /** Consecutive failed publishes: drives the retry backoff; any ack resets it. */
  #failures = 0;
  #buffered = 0;
  #inFlight = 0;
  #dropped = 0;
  #published = 0;
  /** Drops since publishing last worked: reported as one `events.dropped` once it works again. */
  #episode: { count: number; since: number; until: number } | undefined;

  constructor(publish: EventPublish, prefix: string, settings: EventBufferSettings, log: Logger) {
    this.#publish = publish;
    this.#prefix = prefix;
    this.#maxBatch = settings.maxBatch;
    this.#flushMs = settings.flushMs;
    this.#maxBuffered = settings.maxBuffered;
    this.#maxBytes = settings.maxBytes ?? DEFAULT_MAX_BYTES;
    this.#maxRetryDelayMs = settings.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    this.#log = log;
  }

  get online() {
    return this.#online;
  }
  get buffered() {
    return this.#buffered;
  }
  get inFlight() {
    return this.#inFlight;
  }
  get dropped() {
    return this.#dropped;
  }
  get published() {
    return this.#published;
  }

  emit(input: NaqEventInput): void {
    if (this.#stopped) return;
    const lane = this.#lane(input.queue);
    if (!lane) return;
    // Emitters hand over a fresh object: completing it in place saves a copy per event.
    const event = input as NaqEvent;
    event.v = EVENT_VERSION;
    event.ts ??= Date.now();
    lane.pending.push(event);
    this.#buffered++;
    if (this.#buffered > this.#maxBuffered) this.#dropOldest();
    if (lane.pending.length >= this.#maxBatch && this.#sending()) this.#sendLane(lane);
    this.#arm(this.#nextDelay());
  }

  setOnline(online: boolean): void {
    this.#online = online;
    if (!online) return;
    // A fresh connection: retry at once instead of waiting out a backoff meant for the outage.
    this.#failures = 0;
    this.#disarm();
    this.#arm(0);
  }

  async flush(): Promise<void> {
    for (let round = 0; round < MAX_FLUSH_ROUNDS; round++) {
      this.#disarm();
      this.#sendAll();
      if (this.#outstanding.size === 0) return;
      const failuresBefore = this.#failures;
      await Promise.all([...this.#outstanding]);
      // Still failing: the caller (a stop) should not wait out retries here.
      if (this.#failures > failuresBefore || this.#buffered === 0) return;
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#disarm();
  }

  #lane(queue: string): Lane | undefined {
    let lane = this.#lanes.get(queue);
    if (lane) return lane;
    try {
      validateQueue(queue);
    } catch (error) {
      // Never throw into the job path; a bad queue name is a bug in the emitter.
      this.#log.warn({ err: error, queue }, 'event for an invalid queue name ignored');
      return undefined;
    }
    lane = { subject: eventsSubject(this.#prefix, queue), retry: [], pending: [] };
    this.#lanes.set(queue, lane);
    return lane;
  }

  /** Size-triggered sends wait while offline or failing, so an outage costs one attempt per tick. */
  #sending(): boolean {
    return this.#online && !this.#stopped && this.#failures === 0;
  }

  #nextDelay(): number {
    if (this.#failures === 0) return this.#flushMs;
    return Math.min(this.#flushMs * 2 ** this.#failures, Math.max(this.#flushMs, this.#maxRetryDelayMs));
  }

  #arm(delay: number): void {
    if (this.#timer || this.#buffered === 0 || this.#stopped) return;
    this.#timer = setTimeout(this.#tick, delay);
    // Buffered events must not keep a process alive; stopping naq flushes them.
    this.#timer.unref();
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  readonly #tick = () => {
    this.#timer = undefined;
    if (this.#online && !this.#stopped) this.#sendAll();
  };

  #sendAll(): void {
    for (const lane of this.#lanes.values()) this.#sendLane(lane);
  }

  #sendLane(lane: Lane): void {
    const batches = lane.retry.splice(0);
    for (let i = 0; i < lane.pending.length; i += this.#maxBatch) batches.push(this.#batch(lane.pending.slice(i, i + this.#maxBatch)));
    lane.pending = [];
    for (const batch of batches) this.#send(lane, batch);
  }

  #batch(events: NaqEvent[]): Batch {
    const n = this.#batches++;
    return { n, msgId: `${this.#id}-${n}`, events };
  }

  #send(lane: Lane, batch: Batch): void {
    const data = this.#encode(lane, batch);
    if (!data) return;
    const count = batch.events.length;
    this.#buffered -= count;
    this.#inFlight += count;
    let ack: Promise<unknown>;
    try {
      ack = this.#publish(lane.subject, data, { msgId: batch.msgId });
    } catch (error) {
      ack = Promise.reject(error);
    }
    const settled = ack.then(
      () => this.#acked(count),
      (error: unknown) => this.#failed(lane, batch, error),
    );
    this.#outstanding.add(settled);
    void settled.then(() => this.#outstanding.delete(settled));
  }

  /** The batch's bytes, or undefined when it was split in two (each half is sent on its own). */
  #encode(lane: Lane, batch: Batch): Uint8Array | undefined {
    const data = encodeBatch(batch.events);
    if (data.length <= this.#maxBytes) return data;
    if (batch.events.length > 1) {
      const half = Math.ceil(batch.events.length / 2);
      this.#send(lane, this.#batch(batch.events.slice(0, half)));
      this.#send(lane, this.#batch(batch.events.slice(half)));
      return undefined;
    }
    const [event] = batch.events as [NaqEvent];
    const { data: _omitted, ...rest } = event;
    batch.events = [{ ...rest, data: { truncated: true, bytes: data.length } }];
    return encodeBatch(batch.events);
  }

  #acked(count: number): void {
    this.#inFlight -= count;
    this.#published += count;
    this.#failures = 0;
    if (this.#episode) this.#reportDrops();
  }

  #failed(lane: Lane, batch: Batch, error: unknown): void {
    this.#inFlight -= batch.events.length;
    if (this.#failures++ === 0) this.#log.warn({ err: error, subject: lane.subject }, 'events not published; retrying');
    else this.#log.debug({ err: error, subject: lane.subject }, 'events still not published');
    const at = lane.retry.findIndex((b) => b.n > batch.n);
    lane.retry.splice(at === -1 ? lane.retry.length : at, 0, batch);
    this.#buffered += batch.events.length;
    if (this.#buffered > this.#maxBuffered) this.#dropOldest();
    this.#arm(this.#nextDelay());
  }

  #dropOldest(): void {
    while (this.#buffered > this.#maxBuffered) {
      const lane = this.#oldestLane();
      if (!lane) return;
      const head = lane.retry[0];
      if (head) {
        head.events.shift();
        if (head.events.length === 0) lane.retry.shift();
      } else {
        lane.pending.shift();
      }
      this.#buffered--;
      this.#countDrop();
    }
  }

  /** The lane whose first held event is the oldest; there are few lanes (one per queue). */
  #oldestLane(): Lane | undefined {
    let oldest: Lane | undefined;
    let oldestTs = Infinity;
    for (const lane of this.#lanes.values()) {
      const ts = (lane.retry[0]?.events[0] ?? lane.pending[0])?.ts;
      if (ts !== undefined && ts < oldestTs) {
        oldest = lane;
        oldestTs = ts;
      }
    }
    return oldest;
  }

  #countDrop(): void {
    const now = Date.now();
    this.#dropped++;
    if (this.#episode) {
      this.#episode.count++;
      this.#episode.until = now;
      return;
    }
    this.#episode = { count: 1, since: now, until: now };
    this.#log.warn({ maxBuffered: this.#maxBuffered }, 'event buffer full: dropping the oldest events until publishing works again');
  }

  #reportDrops(): void {
    const episode = this.#episode!;
    this.#episode = undefined;
    this.#log.warn(episode, 'events were dropped while the buffer was full');
    this.emit({ type: 'events.dropped', queue: SYSTEM_QUEUE, data: { ...episode } });
  }
}

/** The event log of a process with `events.enabled: false`: same interface, does nothing. */
class DisabledEventLog implements EventLog {
  readonly enabled = false;
  readonly online = true;
  readonly buffered = 0;
  readonly inFlight = 0;
  readonly dropped = 0;
  readonly published = 0;
  emit(): void {}
  flush(): Promise<void> {
    return Promise.resolve();
  }
  setOnline(): void {}
  stop(): void {}
}

const DISABLED: EventLog = new DisabledEventLog();
const logs = new WeakMap<NatsConnection, EventLog>();

/**
 * The one event log of a connection (created on first use), so every part of a process —
 * jobs, workers, scheduler — fills the same buffer and its batches hold many queues' worth.
 * `log` is used by the first call only.
 */
export function eventLogFor(nc: NatsConnection, config: NaqConfig, log?: Logger): EventLog {
  let eventLog = logs.get(nc);
  if (!eventLog) {
    eventLog = config.events.enabled ? connectionEventLog(nc, config, log ?? pino({ level: 'silent' })) : DISABLED;
    logs.set(nc, eventLog);
  }
  return eventLog;
}

function connectionEventLog(nc: NatsConnection, config: NaqConfig, log: Logger): EventBuffer {
  const rt = jobsRuntimeFor(nc, config, log);
  const buffer = new EventBuffer(
    (subject, data, options) => rt.publisher.publish(subject, data, options),
    config.prefix,
    config.events,
    log.child({ component: 'event-log' }),
  );
  void followConnection(nc, buffer);
  void nc.closed().then(() => buffer.stop());
  return buffer;
}

/** Publishing into a dead socket only fills the client's reconnect buffer: wait for the server instead. */
async function followConnection(nc: NatsConnection, buffer: EventBuffer): Promise<void> {
  try {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') buffer.setOnline(false);
      else if (status.type === 'reconnect') buffer.setOnline(true);
    }
  } catch {
    // The status stream ends with the connection.
  }
}

// ---------------------------------------------------------------------------------------
// The stream

export interface EventsStreamOptions {
  /** 0 keeps events until the stream's other limits remove them. */
  maxAgeMs: number;
  replicas: number;
  storage: 'file' | 'memory';
}

const NANOS_PER_MS = 1_000_000;
/** The server's default dedupe window; retried batches are deduplicated within it. */
const DEDUPE_WINDOW_MS = 2 * 60_000;

export function eventsStreamOptions(config: NaqConfig): EventsStreamOptions {
  return { maxAgeMs: config.events.maxAgeMs, replicas: config.storage.replicas, storage: config.storage.storage };
}

export function ensureEventsStream(jsm: JetStreamManager, prefix: string, options: EventsStreamOptions, ensure?: EnsureStreamOptions): Promise<StreamInfo> {
  const dedupeMs = options.maxAgeMs > 0 ? Math.min(DEDUPE_WINDOW_MS, options.maxAgeMs) : DEDUPE_WINDOW_MS;
  return ensureStream(jsm, {
    name: layout(prefix).eventsStream,
    subjects: [eventsWildcard(prefix)],
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    storage: options.storage === 'memory' ? StorageType.Memory : StorageType.File,
    num_replicas: options.replicas,
    max_age: options.maxAgeMs * NANOS_PER_MS,
    // The server refuses a dedupe window longer than max_age.
    duplicate_window: dedupeMs * NANOS_PER_MS,
  }, ensure);
}

// ---------------------------------------------------------------------------------------
// The read side

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
const STREAM_NOT_FOUND = 10059;

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
    if (error instanceof JetStreamApiError && error.code === STREAM_NOT_FOUND) return null;
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
