/**
 * The test mode's queue: what NATS does for naq (the jobs stream and its consumers, the jobs
 * bucket, the dead letters, the scheduler's one-shot schedules, the dependency resolver), in
 * memory, feeding the real per-job path (src/actors/worker/job-path.ts) — one `JobPath` per
 * queue, given in-memory I/O (memory-io.ts) and the test clock. So retries and backoff,
 * timeouts, cancel, rate limits, results and dead letters are the worker's own code, not a copy.
 *
 * A job's message is "in the stream" (`#live`) from its enqueue until its delivery is acked;
 * a NAK with a delay puts it back, due after the delay; a delivery neither acked nor NAKed comes
 * back after `worker.ackWaitMs`, as JetStream redelivers. Due jobs start in priority order
 * (then enqueue order), at most `worker.concurrency` per queue.
 *
 * `onFinal` is the one place a job's final outcome (completed, failed, cancelled) is announced,
 * once per enqueue: dependencies are resolved there, and flows and batches hang off it too.
 */
import { nuid } from '@nats-io/transport-node';
import type { Clock } from '../core/clock.js';
import type { LongTimer } from '../core/duration.js';
import { InvalidArgumentError, NotConnectedError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { NaqConfig } from '../config/index.js';
import type { Delivery } from '../actors/worker/delivery.js';
import type { Handlers } from '../actors/worker/handler.js';
import type { JobIO } from '../actors/worker/job-io.js';
import { JobPath } from '../actors/worker/job-path.js';
import type { NaqEventInput } from '../model/event.js';
import { buildJob, encodeJson, recordFromMessage, TERMINAL_STATUSES, type DeadLetter, type EnqueueItem, type JobDefaults, type JobMessage, type JobOptions, type JobRecord } from '../model/job.js';
import { layout, validateJobId, type Layout } from '../model/layout.js';
import { encodeDeadLetter, encodeRecord } from '../model/record-codec.js';
import { buildOneShot, runJobId, type ScheduleRecord } from '../model/schedule.js';
import { WaitingJobs } from './dependencies.js';
import { fakeDelivery, memoryIO, type MemoryIO } from './memory-io.js';

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

export interface EngineOptions {
  handlers: Handlers;
  config: NaqConfig;
  clock: Clock;
  /** The job path's clock: the same time, its timers maybe background ones (ManualClock.background). */
  pathClock: Clock;
  log: Logger;
}

export type FinalListener = (record: JobRecord) => void;

const WORKER_ID = 'test-worker';

export class TestEngine {
  readonly #o: EngineOptions;
  readonly #layout: Layout;
  readonly #defaults: JobDefaults;
  readonly mem: MemoryIO;
  /** The job paths' I/O, but for `hold`, which each queue's path gets its own of. */
  readonly #io: Omit<JobIO, 'hold'>;
  readonly #live = new Map<string, Entry>();
  readonly #delayed = new Map<string, { schedule: ScheduleRecord; timer: LongTimer }>();
  readonly #waiting: WaitingJobs;
  readonly #paths = new Map<string, JobPath>();
  readonly #running = new Map<string, number>();
  readonly #heldUntil = new Map<string, number>();
  readonly #timers = new Set<LongTimer>();
  /** `id:enqueuedAt` of every enqueue whose final outcome was announced. */
  readonly #finalized = new Set<string>();
  readonly #finalListeners: FinalListener[] = [];
  /** The last enqueue time given to each id the caller chose (see #stamp). */
  readonly #lastTs = new Map<string, number>();
  readonly #inflight = new Set<Promise<void>>();
  #seq = 0;
  #pumpSoon: NodeJS.Immediate | undefined;
  #stopped = false;
  /** Counts everything that happens, so the driver can tell a quiet moment from a busy one. */
  activity = 0;
  #changed: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(options: EngineOptions) {
    this.#o = options;
    const { config } = options;
    this.#layout = layout(config.prefix);
    this.#defaults = { attempts: config.jobs.attempts, backoff: { type: config.jobs.backoffType, delay: config.jobs.backoffDelayMs }, maxPayloadBytes: config.jobs.maxPayloadBytes };
    this.mem = memoryIO();
    const mem = this.mem;
    const { hold: _hold, ...base } = mem.io;
    this.#io = {
      ...base,
      writeRecord: async (id, bytes) => {
        await mem.io.writeRecord(id, bytes);
        this.#recorded(mem.records.get(id)!);
      },
      deadLetter: (queue, bytes) => {
        this.#touch();
        return mem.io.deadLetter(queue, bytes);
      },
      // No batch of writes to wait for: the ack goes at once.
      ackLater: (msg) => msg.ack(),
      emit: (event) => {
        this.#touch();
        mem.io.emit(event);
      },
      // Groups take no turns here: nothing to free.
      groupDone: () => {},
    };
    this.#waiting = new WaitingJobs({
      record: (id) => mem.records.get(id),
      release: (job) => this.#publish(job),
      fail: (job, dead, dependency) => this.#failDependent(job, dead, dependency),
      now: () => this.#o.clock.now(),
      subject: (job) => this.#layout.jobSubject(job.queue, job.id, job.priority),
    });
  }

  /** Called once per enqueue, when its record first says completed, failed or cancelled. */
  onFinal(listener: FinalListener): () => void {
    this.#finalListeners.push(listener);
    return () => {
      const i = this.#finalListeners.indexOf(listener);
      if (i >= 0) this.#finalListeners.splice(i, 1);
    };
  }

  enqueue(name: string, data: unknown, opts: JobOptions = {}): string {
    this.#open();
    refuseDedupe(opts);
    const id = opts.jobId ?? nuid.next();
    const { message } = buildJob(name, data, opts, id, this.#defaults);
    this.#stamp(message);
    if (message.dependsOn?.length) {
      this.#waiting.refuseCycle(message);
      this.#park(message);
    } else if (opts.jobId === undefined || !this.#queued(id)) {
      this.#publish(message);
    }
    return id;
  }

  /** Every job validated (and checked for cycles) before any is enqueued, as the real enqueueBulk does. */
  enqueueBulk(items: EnqueueItem[]): string[] {
    this.#open();
    for (const item of items) refuseDedupe(item.opts ?? {});
    const built = items.map((item) => buildJob(item.name, item.data, item.opts ?? {}, item.opts?.jobId ?? nuid.next(), this.#defaults).message);
    const waiting = new Map(built.filter((m) => m.dependsOn?.length).map((m) => [m.id, m.dependsOn!] as const));
    for (const message of built) if (waiting.has(message.id)) this.#waiting.refuseCycle(message, waiting);
    built.forEach((message, i) => {
      this.#stamp(message);
      if (message.dependsOn?.length) this.#park(message);
      else if (items[i]!.opts?.jobId === undefined || !this.#queued(message.id)) this.#publish(message);
    });
    return built.map((m) => m.id);
  }

  /** A one-shot schedule, fired at `at` (src/actors/scheduler/store.ts validates the same way). */
  enqueueAt(at: Date | number, name: string, data: unknown, options: Omit<JobOptions, 'dependsOn'> = {}): string {
    this.#open();
    refuseDedupe(options);
    const when = at instanceof Date ? at.getTime() : at;
    const id = options.jobId ?? nuid.next();
    buildJob(name, data, { ...options, jobId: id }, id, this.#defaults);
    const schedule = buildOneShot(id, when, name, data, { ...options, jobId: id }, this.#o.clock.now());
    // Put over an earlier one of the id, as the schedules bucket's put does.
    this.#delayed.get(id)?.timer.clear();
    const timer = this.#after(when - this.#o.clock.now(), () => this.#fire(id));
    this.#delayed.set(id, { schedule, timer });
    this.#touch();
    return id;
  }

  /** The job as `getJob` reads it (src/actors/jobs/reads.ts): its record, or what a job without one is. */
  getJob(id: string): JobRecord | null {
    validateJobId(id);
    const record = this.mem.records.get(id);
    if (record) {
      if (TERMINAL_STATUSES.has(record.status)) {
        const again = this.#notStarted(id, record.enqueuedAt);
        if (again) return again;
      }
      if (record.expiresAt !== undefined && record.expiresAt < this.#o.clock.now()) return null;
      return structuredClone(record);
    }
    return this.#notStarted(id);
  }

  /** As the real cancel (src/actors/jobs/admin.ts): delayed, waiting and pending jobs never run; a running one is aborted. */
  cancel(id: string): { id: string; status: 'cancelled' | 'cancelling' | JobRecord['status'] } {
    validateJobId(id);
    const now = this.#o.clock.now();
    const delayed = this.#delayed.get(id);
    if (delayed) {
      delayed.timer.clear();
      this.#delayed.delete(id);
      const s = delayed.schedule;
      this.#put({ ...recordFromMessage({ id, name: s.name, queue: s.queue, attempts: s.opts.attempts ?? this.#defaults.attempts, ts: s.createdAt }, 'cancelled'), finishedAt: now });
      this.#emit({ type: 'job.cancelled', queue: s.queue, jobId: id, data: { name: s.name, delayed: true } });
      return { id, status: 'cancelled' };
    }
    const waiting = this.#waiting.remove(id);
    if (waiting) {
      this.#put({ ...recordFromMessage(waiting, 'cancelled'), finishedAt: now });
      this.#emit({ type: 'job.cancelled', queue: waiting.queue, jobId: id, data: { name: waiting.name, waiting: true } });
      return { id, status: 'cancelled' };
    }
    const entry = this.#live.get(id);
    if (entry) {
      // Out of the stream: a NAK or ack of the running delivery finds nothing to put back.
      this.#live.delete(id);
      entry.timer?.clear();
      const { message } = entry;
      this.#put({ ...recordFromMessage(message, 'cancelled'), finishedAt: now });
      this.#emit({ type: 'job.cancelled', queue: message.queue, jobId: id, data: { name: message.name, pending: true } });
      // The cancel notice: the worker running it aborts its signal and records the cancel.
      if (entry.state === 'running') this.#path(message.queue).cancel(id);
      return { id, status: 'cancelled' };
    }
    const record = this.getJob(id);
    if (!record) throw new NotFoundError(`job ${id}`);
    return { id, status: record.status };
  }

  /** Starts what is due now, within each queue's concurrency; a queue held by a rate limit waits. */
  pump(): void {
    if (this.#stopped) return;
    const now = this.#o.clock.now();
    const due = [...this.#live.values()].filter((e) => e.state === 'pending' && e.dueAt <= now);
    if (due.length === 0) return;
    due.sort((a, b) => (a.message.priority ?? 5) - (b.message.priority ?? 5) || a.seq - b.seq);
    for (const entry of due) {
      const queue = entry.message.queue;
      if ((this.#heldUntil.get(queue) ?? 0) > now) continue;
      if ((this.#running.get(queue) ?? 0) >= this.#o.config.worker.concurrency) continue;
      this.#start(entry);
    }
  }

  /** A job that could start now (due, with a free slot in its queue). */
  startable(): boolean {
    const now = this.#o.clock.now();
    for (const e of this.#live.values()) {
      const queue = e.message.queue;
      if (e.state === 'pending' && e.dueAt <= now && (this.#heldUntil.get(queue) ?? 0) <= now && (this.#running.get(queue) ?? 0) < this.#o.config.worker.concurrency) return true;
    }
    return false;
  }

  /** The earliest time a running job's timeout ends it (its timer is the job path's own). */
  timeoutDeadline(): number | undefined {
    let first: number | undefined;
    for (const e of this.#live.values()) {
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

  /** Jobs not finished and not waiting on dependencies: delayed, pending (a retry's wait included) or running. */
  left(): string[] {
    return [...this.#delayed.keys(), ...this.#live.keys()];
  }

  /** Jobs waiting on dependencies that have not finished. */
  waitingIds(): string[] {
    return this.#waiting.ids();
  }

  /** Resolves at the next thing that happens (a record, an event, a delivery, a timer). */
  changed(): Promise<void> {
    if (!this.#changed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#changed = { promise, resolve };
    }
    return this.#changed.promise;
  }

  /** Aborts what runs (no drain grace), drops what waits, stops every timer. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#pumpSoon) clearImmediate(this.#pumpSoon);
    for (const timer of this.#timers) timer.clear();
    this.#timers.clear();
    for (const { timer } of this.#delayed.values()) timer.clear();
    for (const path of this.#paths.values()) {
      path.abandonAll();
      path.stop();
    }
    await Promise.allSettled([...this.#inflight]);
  }

  // ---------------------------------------------------------------------------------------

  #open(): void {
    if (this.#stopped) throw new NotConnectedError('this test naq is stopped');
  }

  #touch(): void {
    this.activity++;
    const changed = this.#changed;
    this.#changed = undefined;
    changed?.resolve();
  }

  /**
   * The enqueue time, from the test clock. With a clock that stands still, two enqueues of one
   * id would share it, and the job path would take the second for a copy of the first: an id
   * the caller chose gets a time after its previous enqueue's.
   */
  #stamp(message: JobMessage): void {
    const now = this.#o.clock.now();
    const last = this.#lastTs.get(message.id);
    message.ts = last !== undefined && last >= now ? last + 1 : now;
    this.#lastTs.set(message.id, message.ts);
  }

  /** Pending, running or waiting: enqueueing the id again is a no-op (the idempotent case). */
  #queued(id: string): boolean {
    return this.#live.has(id) || this.#waiting.get(id) !== undefined;
  }

  /** Waits for its dependencies; one already waiting under this id is the idempotent case. */
  #park(message: JobMessage): void {
    if (this.#waiting.get(message.id)) return;
    const { id, name, queue, attempts, dependsOn } = message;
    this.#emit({ type: 'job.enqueued', queue, jobId: id, data: { name, attempts, waiting: true, dependsOn } });
    // Released or failed at once when its dependencies finished already.
    this.#waiting.park(message);
  }

  /** Into the stream: due now. */
  #publish(message: JobMessage): void {
    const entry: Entry = {
      message,
      bytes: encodeJson(message),
      subject: this.#layout.jobSubject(message.queue, message.id, message.priority),
      seq: ++this.#seq,
      state: 'pending',
      dueAt: this.#o.clock.now(),
      deliveries: 0,
      delivery: undefined,
      settled: false,
      startedAt: 0,
      timer: undefined,
    };
    this.#live.set(message.id, entry);
    this.#emit({ type: 'job.enqueued', queue: message.queue, jobId: message.id, data: { name: message.name, attempts: message.attempts } });
    this.#schedulePump();
  }

  /** A delayed job's time came: the scheduler leader's fire (src/actors/scheduler/dispatcher.ts). */
  #fire(id: string): void {
    const delayed = this.#delayed.get(id);
    if (!delayed || this.#stopped) return;
    this.#delayed.delete(id);
    const s = delayed.schedule;
    const jobId = runJobId(s, s.nextRunAt!);
    const { message } = buildJob(s.name, s.data, { ...s.opts, queue: s.queue, jobId }, jobId, this.#defaults);
    this.#stamp(message);
    this.#emit({ type: 'schedule.fired', queue: s.queue, jobId, data: { id, fireTime: s.nextRunAt } });
    // The stream holds one message per job id: a copy still pending is not published again.
    if (!this.#live.has(jobId)) this.#publish(message);
  }

  #start(entry: Entry): void {
    const { message } = entry;
    entry.state = 'running';
    entry.deliveries++;
    entry.startedAt = this.#o.clock.now();
    entry.settled = false;
    const delivery = fakeDelivery(entry.bytes, entry.subject, {
      ack: () => this.#acked(entry, delivery),
      nak: (delayMs) => this.#naked(entry, delivery, delayMs),
    });
    entry.delivery = delivery;
    this.#running.set(message.queue, (this.#running.get(message.queue) ?? 0) + 1);
    this.#touch();
    const processing: Promise<void> = this.#path(message.queue)
      .process(delivery, entry.deliveries)
      .catch((error: unknown) => this.#o.log.warn({ err: error, jobId: message.id }, 'outcome not recorded; the job will be redelivered'))
      .finally(() => {
        this.#inflight.delete(processing);
        this.#running.set(message.queue, (this.#running.get(message.queue) ?? 1) - 1);
        // Neither acked nor NAKed (its outcome was not recorded): back after ack_wait, as JetStream does.
        if (!entry.settled && this.#current(entry, delivery)) this.#due(entry, this.#o.config.worker.ackWaitMs);
        this.#touch();
        this.pump();
      });
    this.#inflight.add(processing);
  }

  #current(entry: Entry, delivery: Delivery): boolean {
    return !this.#stopped && this.#live.get(entry.message.id) === entry && entry.delivery === delivery;
  }

  #acked(entry: Entry, delivery: Delivery): void {
    entry.settled = true;
    if (this.#current(entry, delivery)) this.#live.delete(entry.message.id);
    this.#touch();
  }

  /** Back to the stream, due after the delay. Never started from here: the job path still holds this delivery. */
  #naked(entry: Entry, delivery: Delivery, delayMs: number | undefined): void {
    entry.settled = true;
    if (this.#current(entry, delivery)) this.#due(entry, delayMs ?? 0);
    this.#touch();
  }

  #due(entry: Entry, delayMs: number): void {
    entry.state = 'pending';
    entry.dueAt = this.#o.clock.now() + delayMs;
    entry.timer?.clear();
    entry.timer = delayMs > 0 ? this.#after(delayMs, () => this.pump()) : undefined;
  }

  /** One job path per queue, as one worker per queue: the real one, on in-memory I/O. */
  #path(queue: string): JobPath {
    let path = this.#paths.get(queue);
    if (!path) {
      const { config } = this.#o;
      path = new JobPath({
        queue,
        workerId: WORKER_ID,
        handlers: this.#o.handlers,
        ackWaitMs: config.worker.ackWaitMs,
        activeAfterMs: config.jobs.activeAfterMs,
        maxLogLines: config.jobs.maxLogLines,
        clock: this.#o.pathClock,
        io: { ...this.#io, hold: (ms, group) => this.#holdQueue(queue, ms, group) },
        log: this.#o.log,
        // Memory never refuses a write.
        onRefused: () => {},
      });
      this.#paths.set(queue, path);
    }
    return path;
  }

  /** A handler was rate limited: no job of the queue starts for `ms`. */
  #holdQueue(queue: string, ms: number, group: string | undefined): void {
    this.#touch();
    // A group's hold is the group dispatcher's, which the test mode does not have.
    if (group !== undefined) return;
    const until = this.#o.clock.now() + ms;
    if (until <= (this.#heldUntil.get(queue) ?? 0)) return;
    this.#heldUntil.set(queue, until);
    this.#after(ms, () => this.pump());
  }

  /** A timer on the test clock, cleared by stop(). */
  #after(ms: number, fn: () => void): LongTimer {
    const timer = this.#o.clock.setTimeout(() => {
      this.#timers.delete(timer);
      this.#touch();
      fn();
    }, Math.max(0, ms));
    this.#timers.add(timer);
    return {
      clear: () => {
        this.#timers.delete(timer);
        timer.clear();
      },
    };
  }

  /** Soon, not now: an enqueue never runs a handler before it returns. */
  #schedulePump(): void {
    if (this.#pumpSoon || this.#stopped) return;
    this.#pumpSoon = setImmediate(() => {
      this.#pumpSoon = undefined;
      this.pump();
    });
  }

  #emit(event: NaqEventInput): void {
    this.#io.emit({ ts: this.#o.clock.now(), ...event });
  }

  /** A record the queue writes itself (a cancel, a failed dependency), through the same bucket. */
  #put(record: JobRecord): void {
    void this.mem.io.writeRecord(record.id, encodeRecord(record, this.mem.io.maxMessageBytes()));
    this.#recorded(this.mem.records.get(record.id)!);
  }

  #recorded(record: JobRecord): void {
    this.#touch();
    if (!TERMINAL_STATUSES.has(record.status)) return;
    const key = `${record.id}:${record.enqueuedAt}`;
    if (this.#finalized.has(key)) return;
    this.#finalized.add(key);
    this.#waiting.finished(record.id);
    for (const listener of [...this.#finalListeners]) listener(structuredClone(record));
  }

  #failDependent(job: JobMessage, dead: DeadLetter, dependency: string): void {
    void this.mem.io.deadLetter(job.queue, encodeDeadLetter(dead, this.mem.io.maxMessageBytes()));
    const deadSeq = this.mem.dead.length;
    const error = dead.error!;
    this.#put({ ...recordFromMessage(job, 'failed'), error, finishedAt: this.#o.clock.now(), deadSeq });
    this.#emit({ type: 'job.failed', queue: job.queue, jobId: job.id, data: { name: job.name, error: error.message, code: error.code, dependency } });
    this.#emit({ type: 'job.dead', queue: job.queue, jobId: job.id, data: { reason: dead.reason, deadSeq } });
  }

  /** A job enqueued (after `after`) that has not started: pending or running in its queue, waiting, or delayed. */
  #notStarted(id: string, after = Number.NEGATIVE_INFINITY): JobRecord | null {
    const live = this.#live.get(id);
    if (live && live.message.ts > after) return recordFromMessage(live.message, 'pending');
    const waiting = this.#waiting.get(id);
    if (waiting && waiting.ts > after) return recordFromMessage(waiting, 'waiting');
    const s = this.#delayed.get(id)?.schedule;
    if (s && s.createdAt > after) {
      return recordFromMessage({ id, name: s.name, queue: s.queue, attempts: s.opts.attempts ?? this.#defaults.attempts, ts: s.createdAt, priority: s.opts.priority }, 'delayed');
    }
    return null;
  }
}

/** Dedupe windows are not in the test mode: refused, not silently ignored. */
function refuseDedupe(opts: JobOptions): void {
  if (opts.dedupe !== undefined) {
    throw new InvalidArgumentError('createTestNaq does not support dedupe windows (the dedupe option): test them against a real server (startTestServer)');
  }
}
