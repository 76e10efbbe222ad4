/**
 * The write side of the event log: `emit()` only pushes into an array, so the job path never
 * pays a server write per event (DESIGN: the per-job budget). Batches go out per queue, at
 * least every `events.flushMs`, through the publish function it is given.
 */
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../core/log.js';
import { validateQueue } from '../../model/layout.js';
import { encodeBatch, eventsSubject, SYSTEM_QUEUE, type BufferedEvent, type NaqEventInput } from '../../model/event.js';

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
  events: BufferedEvent[];
}

/** One queue's events: failed batches (older) first, then events not yet sent. */
interface Lane {
  subject: string;
  retry: Batch[];
  pending: BufferedEvent[];
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
    const event = input as BufferedEvent;
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

  #batch(events: BufferedEvent[]): Batch {
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
    const [event] = batch.events as [BufferedEvent];
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

/** The event log of a process with `events.enabled: false`. */
export const DISABLED_EVENT_LOG: EventLog = new DisabledEventLog();

/** Publishing into a dead socket only fills the client's reconnect buffer: wait for the server instead. */
export async function followConnection(nc: NatsConnection, buffer: EventBuffer): Promise<void> {
  try {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') buffer.setOnline(false);
      else if (status.type === 'reconnect') buffer.setOnline(true);
    }
  } catch {
    // The status stream ends with the connection.
  }
}
