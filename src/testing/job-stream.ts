/**
 * The test mode's jobs stream and the workers that consume it: one real `JobPath` per queue
 * (src/actors/worker/job-path.ts) on in-memory I/O, fed deliveries as a JetStream consumer
 * would feed them. A job's message is in the stream from its publish until its delivery is
 * acked; a NAK with a delay puts it back, due after the delay; a delivery neither acked nor
 * NAKed comes back after `worker.ackWaitMs`. Due jobs start in priority order (then publish
 * order), at most `worker.concurrency` per queue; a queue a handler rate limited (`hold`)
 * starts nothing until the hold is over.
 */
import { setImmediate } from 'node:timers';
import type { Clock } from '../core/clock.js';
import type { LongTimer } from '../core/duration.js';
import type { Logger } from '../core/log.js';
import type { NaqConfig } from '../config/index.js';
import type { Delivery } from '../actors/worker/delivery.js';
import type { Handlers } from '../actors/worker/handler.js';
import type { JobIO } from '../actors/worker/job-io.js';
import { JobPath } from '../actors/worker/job-path.js';
import { encodeJson, type JobMessage } from '../model/job.js';
import { DEFAULT_PRIORITY, type Layout } from '../model/layout.js';
import { fakeDelivery } from './memory-io.js';

/** A job's message in the stream: pending (due at `dueAt`) or delivered to its queue's job path. */
interface Entry {
  message: JobMessage;
  bytes: Uint8Array;
  subject: string;
  /** The stream sequence: jobs of one priority start in this order. */
  seq: number;
  state: 'pending' | 'running';
  dueAt: number;
  deliveries: number;
  delivery: Delivery | undefined;
  /** The current delivery was acked or NAKed. */
  settled: boolean;
  startedAt: number;
  timer: LongTimer | undefined;
}

export interface JobStreamDeps {
  handlers: Handlers;
  config: NaqConfig;
  clock: Clock;
  /** The job paths' clock: the same time, its timers maybe background ones (ManualClock.background). */
  pathClock: Clock;
  log: Logger;
  layout: Layout;
  /** The job paths' I/O but `hold`, which each queue's path gets its own of. */
  io: Omit<JobIO, 'hold'>;
  /** A timer on the test clock that stops with the test naq. */
  after(ms: number, fn: () => void): LongTimer;
  /** Something happened (the driver's measure of a quiet moment). */
  touch(): void;
}

const WORKER_ID = 'test-worker';

export class JobStream {
  readonly #d: JobStreamDeps;
  readonly #entries = new Map<string, Entry>();
  readonly #paths = new Map<string, JobPath>();
  readonly #running = new Map<string, number>();
  readonly #heldUntil = new Map<string, number>();
  readonly #inflight = new Set<Promise<void>>();
  #seq = 0;
  #pumpSoon: NodeJS.Immediate | undefined;
  #stopped = false;

  constructor(deps: JobStreamDeps) {
    this.#d = deps;
  }

  /** Into the stream, due now; started soon, never before this returns. */
  publish(message: JobMessage): void {
    this.#entries.set(message.id, {
      message,
      bytes: encodeJson(message),
      subject: this.#d.layout.jobSubject(message.queue, message.id, message.priority),
      seq: ++this.#seq,
      state: 'pending',
      dueAt: this.#d.clock.now(),
      deliveries: 0,
      delivery: undefined,
      settled: false,
      startedAt: 0,
      timer: undefined,
    });
    this.#schedulePump();
  }

  /** The message of a job in the stream (pending, waiting for a retry, or running). */
  get(id: string): JobMessage | undefined {
    return this.#entries.get(id)?.message;
  }

  ids(): string[] {
    return [...this.#entries.keys()];
  }

  /**
   * Out of the stream (a cancel): a later ack or NAK of its delivery finds nothing to put back,
   * and a running one is sent the cancel notice (its signal aborts; the path records the cancel).
   */
  remove(id: string): JobMessage | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    this.#entries.delete(id);
    entry.timer?.clear();
    if (entry.state === 'running') this.#path(entry.message.queue).cancel(id);
    return entry.message;
  }

  /** Starts what is due now, within each queue's concurrency; a held queue waits. */
  pump(): void {
    if (this.#stopped) return;
    const now = this.#d.clock.now();
    const due = [...this.#entries.values()].filter((e) => e.state === 'pending' && e.dueAt <= now);
    if (due.length === 0) return;
    due.sort((a, b) => (a.message.priority ?? DEFAULT_PRIORITY) - (b.message.priority ?? DEFAULT_PRIORITY) || a.seq - b.seq);
    for (const entry of due) if (this.#canStart(entry, now)) this.#start(entry);
  }

  /** A job that could start now (due, with a free slot in its queue). */
  startable(): boolean {
    const now = this.#d.clock.now();
    for (const e of this.#entries.values()) if (e.state === 'pending' && e.dueAt <= now && this.#canStart(e, now)) return true;
    return false;
  }

  /** The earliest time a running job's timeout ends it (the timer is the job path's own). */
  timeoutDeadline(): number | undefined {
    let first: number | undefined;
    for (const e of this.#entries.values()) {
      if (e.state !== 'running' || !e.message.timeoutMs) continue;
      const end = e.startedAt + e.message.timeoutMs;
      if (first === undefined || end < first) first = end;
    }
    return first;
  }

  /** Deliveries being processed (handlers running, outcomes being recorded). */
  get inflight(): number {
    return this.#inflight.size;
  }

  /** Aborts what runs (no drain grace) and waits for the job paths to let go. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#pumpSoon) clearImmediate(this.#pumpSoon);
    for (const entry of this.#entries.values()) entry.timer?.clear();
    for (const path of this.#paths.values()) {
      path.abandonAll();
      path.stop();
    }
    await Promise.allSettled([...this.#inflight]);
  }

  #canStart(entry: Entry, now: number): boolean {
    const queue = entry.message.queue;
    return (this.#heldUntil.get(queue) ?? 0) <= now && (this.#running.get(queue) ?? 0) < this.#d.config.worker.concurrency;
  }

  #start(entry: Entry): void {
    const { message } = entry;
    entry.state = 'running';
    entry.deliveries++;
    entry.startedAt = this.#d.clock.now();
    entry.settled = false;
    const delivery = fakeDelivery(entry.bytes, entry.subject, {
      ack: () => this.#acked(entry, delivery),
      nak: (delayMs) => this.#naked(entry, delivery, delayMs),
    });
    entry.delivery = delivery;
    this.#running.set(message.queue, (this.#running.get(message.queue) ?? 0) + 1);
    this.#d.touch();
    const processing: Promise<void> = this.#path(message.queue)
      .process(delivery, entry.deliveries)
      .catch((error: unknown) => this.#d.log.warn({ err: error, jobId: message.id }, 'outcome not recorded; the job will be redelivered'))
      .finally(() => {
        this.#inflight.delete(processing);
        this.#running.set(message.queue, (this.#running.get(message.queue) ?? 1) - 1);
        // Neither acked nor NAKed (its outcome was not recorded): back after ack_wait, as JetStream does.
        if (!entry.settled && this.#current(entry, delivery)) this.#due(entry, this.#d.config.worker.ackWaitMs);
        this.#d.touch();
        this.pump();
      });
    this.#inflight.add(processing);
  }

  #current(entry: Entry, delivery: Delivery): boolean {
    return !this.#stopped && this.#entries.get(entry.message.id) === entry && entry.delivery === delivery;
  }

  #acked(entry: Entry, delivery: Delivery): void {
    entry.settled = true;
    if (this.#current(entry, delivery)) this.#entries.delete(entry.message.id);
    this.#d.touch();
  }

  /** Back to the stream, due after the delay. Never started from here: the job path still holds this delivery. */
  #naked(entry: Entry, delivery: Delivery, delayMs: number | undefined): void {
    entry.settled = true;
    if (this.#current(entry, delivery)) this.#due(entry, delayMs ?? 0);
    this.#d.touch();
  }

  #due(entry: Entry, delayMs: number): void {
    entry.state = 'pending';
    entry.dueAt = this.#d.clock.now() + delayMs;
    entry.timer?.clear();
    entry.timer = delayMs > 0 ? this.#d.after(delayMs, () => this.pump()) : undefined;
  }

  /** One job path per queue, as one worker per queue: the real one, on in-memory I/O. */
  #path(queue: string): JobPath {
    let path = this.#paths.get(queue);
    if (!path) {
      const { config } = this.#d;
      path = new JobPath({
        queue,
        workerId: WORKER_ID,
        handlers: this.#d.handlers,
        ackWaitMs: config.worker.ackWaitMs,
        activeAfterMs: config.jobs.activeAfterMs,
        maxLogLines: config.jobs.maxLogLines,
        clock: this.#d.pathClock,
        io: { ...this.#d.io, hold: (ms, group) => this.#hold(queue, ms, group) },
        log: this.#d.log,
        // Memory never refuses a write.
        onRefused: () => {},
      });
      this.#paths.set(queue, path);
    }
    return path;
  }

  /** A handler was rate limited: no job of the queue starts for `ms`. */
  #hold(queue: string, ms: number, group: string | undefined): void {
    this.#d.touch();
    // A group's hold is the group dispatcher's, which the test mode does not have.
    if (group !== undefined) return;
    const until = this.#d.clock.now() + ms;
    if (until <= (this.#heldUntil.get(queue) ?? 0)) return;
    this.#heldUntil.set(queue, until);
    this.#d.after(ms, () => this.pump());
  }

  /** Soon, not now: an enqueue never runs a handler before it returns. */
  #schedulePump(): void {
    if (this.#pumpSoon || this.#stopped) return;
    this.#pumpSoon = setImmediate(() => {
      this.#pumpSoon = undefined;
      this.pump();
    });
  }
}
