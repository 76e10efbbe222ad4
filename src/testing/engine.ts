/**
 * The test mode's queue: what NATS and the other actors do for a worker, in memory — enqueue
 * (the real `buildJob`), the jobs bucket, the dead letters, the scheduler's one-shot schedules
 * (delayed jobs), the dependency resolver (dependencies.ts), cancel and getJob as the jobs
 * actor does them — around the jobs stream of job-stream.ts, whose workers run the real job
 * path. So retries and backoff, timeouts, rate limits, results and dead letters are the
 * worker's own code, not a copy.
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
import type { Handlers } from '../actors/worker/handler.js';
import type { JobIO } from '../actors/worker/job-io.js';
import type { NaqEventInput } from '../model/event.js';
import { buildJob, recordFromMessage, TERMINAL_STATUSES, type DeadLetter, type EnqueueItem, type JobDefaults, type JobMessage, type JobOptions, type JobRecord } from '../model/job.js';
import { layout, validateJobId } from '../model/layout.js';
import { encodeDeadLetter, encodeRecord } from '../model/record-codec.js';
import { buildOneShot, runJobId, type ScheduleRecord } from '../model/schedule.js';
import { WaitingJobs } from './dependencies.js';
import { TestFlows } from './flows.js';
import { planBatch, planFlow, type FlowPlan } from '../actors/jobs/flow-plan.js';
import type { BatchStatus, FlowNode } from '../actors/jobs/flow-reads.js';
import type { BatchOptions, FlowIds, FlowSpec } from '../model/flow.js';
import { JobStream } from './job-stream.js';
import { memoryIO, type MemoryIO } from './memory-io.js';

export interface EngineOptions {
  handlers: Handlers;
  config: NaqConfig;
  clock: Clock;
  /** The job path's clock: the same time, its timers maybe background ones (ManualClock.background). */
  pathClock: Clock;
  log: Logger;
}

export type FinalListener = (record: JobRecord) => void;

export class TestEngine {
  readonly #o: EngineOptions;
  readonly #defaults: JobDefaults;
  readonly mem: MemoryIO;
  readonly #stream: JobStream;
  readonly #delayed = new Map<string, { schedule: ScheduleRecord; timer: LongTimer }>();
  readonly #waiting: WaitingJobs;
  readonly #flows: TestFlows;
  readonly #timers = new Set<LongTimer>();
  /** `id:enqueuedAt` of every enqueue whose final outcome was announced. */
  readonly #finalized = new Set<string>();
  readonly #finalListeners: FinalListener[] = [];
  /** The last enqueue time given to each id the caller chose (see #stamp). */
  readonly #lastTs = new Map<string, number>();
  #stopped = false;
  /** Counts everything that happens, so the driver can tell a quiet moment from a busy one. */
  activity = 0;
  #changed: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(options: EngineOptions) {
    this.#o = options;
    const { config } = options;
    const names = layout(config.prefix);
    this.#defaults = { attempts: config.jobs.attempts, backoff: { type: config.jobs.backoffType, delay: config.jobs.backoffDelayMs }, maxPayloadBytes: config.jobs.maxPayloadBytes };
    this.mem = memoryIO();
    const mem = this.mem;
    const { hold: _hold, ...base } = mem.io;
    const io: Omit<JobIO, 'hold'> = {
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
      // A child's final outcome reaches its parent through #recorded (every final record, the
      // queue's own cancels and failed dependencies included), not through a notice.
      tellParent: async () => {},
      children: async (parentId) => this.#flows.children(parentId),
    };
    this.#stream = new JobStream({ ...options, layout: names, io, after: (ms, fn) => this.#after(ms, fn), touch: () => this.#touch() });
    this.#flows = new TestFlows({
      now: () => this.#o.clock.now(),
      record: (id) => mem.records.get(id),
      getJob: (id) => this.getJob(id),
      publish: (job) => this.#publish(job),
      fail: (job, error, data) => this.#failUnstarted(job, { v: 1, reason: error.message, error, queue: job.queue, subject: names.jobSubject(job.queue, job.id, job.priority), jobId: job.id, job, ts: this.#o.clock.now() }, data),
    });
    this.#waiting = new WaitingJobs({
      record: (id) => mem.records.get(id),
      release: (job) => this.#publish(job),
      fail: (job, dead, dependency) => this.#failUnstarted(job, dead, { dependency }),
      now: () => this.#o.clock.now(),
      subject: (job) => names.jobSubject(job.queue, job.id, job.priority),
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

  /** A flow, as the real enqueueFlow (src/actors/jobs/flows.ts) plans it; memory cannot fail midway. */
  enqueueFlow(spec: FlowSpec): FlowIds {
    this.#open();
    const plan = planFlow(this.#defaults, spec);
    this.#startPlan(plan);
    return plan.ids;
  }

  enqueueBatch(items: EnqueueItem[], options: BatchOptions): string {
    this.#open();
    const plan = planBatch(this.#defaults, items, options);
    this.#startPlan(plan);
    return plan.id;
  }

  getFlow(id: string): FlowNode {
    return this.#flows.getFlow(id);
  }

  getBatch(id: string): BatchStatus {
    return this.#flows.getBatch(id);
  }

  #startPlan({ records, jobs, chosen }: FlowPlan): void {
    const taken = chosen.find((id) => this.#queued(id) || this.#flows.waiting(id));
    if (taken) throw new InvalidArgumentError(`job ${taken} is already pending or waiting: the jobs of a flow or batch must be new`);
    const parent = records.find((r) => this.#flows.has(r.id));
    if (parent) throw new InvalidArgumentError(`${parent.id} is already the parent of a flow or batch: choose another id`);
    for (const r of records) {
      this.#stamp(r.job);
      r.createdAt = r.job.ts;
    }
    for (const job of jobs) this.#stamp(job);
    this.#flows.add(records);
    for (const job of jobs) this.#publish(job);
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
    const parent = this.#flows.cancel(id);
    if (parent) {
      this.#put({ ...recordFromMessage(parent, 'cancelled'), finishedAt: now });
      this.#emit({ type: 'job.cancelled', queue: parent.queue, jobId: id, data: { name: parent.name, waitingChildren: true } });
      return { id, status: 'cancelled' };
    }
    // Out of the stream; a running job gets the cancel notice (its path records the cancel too).
    const pending = this.#stream.remove(id);
    if (pending) {
      this.#put({ ...recordFromMessage(pending, 'cancelled'), finishedAt: now });
      this.#emit({ type: 'job.cancelled', queue: pending.queue, jobId: id, data: { name: pending.name, pending: true } });
      return { id, status: 'cancelled' };
    }
    const record = this.getJob(id);
    if (!record) throw new NotFoundError(`job ${id}`);
    return { id, status: record.status };
  }

  /** Starts what is due now (job-stream.ts). */
  pump(): void {
    this.#stream.pump();
  }

  /** A job that could start now. */
  startable(): boolean {
    return this.#stream.startable();
  }

  /** The earliest time a running job's timeout ends it. */
  timeoutDeadline(): number | undefined {
    return this.#stream.timeoutDeadline();
  }

  /** Deliveries being processed (handlers running, outcomes being recorded). */
  get inflight(): number {
    return this.#stream.inflight;
  }

  /** Jobs not finished and not waiting on dependencies: delayed, pending (a retry's wait included) or running. */
  left(): string[] {
    return [...this.#delayed.keys(), ...this.#stream.ids()];
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
    for (const timer of this.#timers) timer.clear();
    this.#timers.clear();
    for (const { timer } of this.#delayed.values()) timer.clear();
    await this.#stream.stop();
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
    return this.#stream.get(id) !== undefined || this.#waiting.get(id) !== undefined;
  }

  /** Waits for its dependencies; one already waiting under this id is the idempotent case. */
  #park(message: JobMessage): void {
    if (this.#waiting.get(message.id)) return;
    const { id, name, queue, attempts, dependsOn } = message;
    this.#emit({ type: 'job.enqueued', queue, jobId: id, data: { name, attempts, waiting: true, dependsOn } });
    // Released or failed at once when its dependencies finished already.
    this.#waiting.park(message);
  }

  /** Into the stream (job.enqueued first, as the real publish's ack comes before any delivery). */
  #publish(message: JobMessage): void {
    this.#emit({ type: 'job.enqueued', queue: message.queue, jobId: message.id, data: { name: message.name, attempts: message.attempts } });
    this.#stream.publish(message);
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
    if (!this.#stream.get(jobId)) this.#publish(message);
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

  #emit(event: NaqEventInput): void {
    this.#touch();
    this.mem.io.emit({ ts: this.#o.clock.now(), ...event });
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
    this.#flows.finished(record);
    for (const listener of [...this.#finalListeners]) listener(structuredClone(record));
  }

  #failUnstarted(job: JobMessage, dead: DeadLetter, data: Record<string, unknown>): void {
    void this.mem.io.deadLetter(job.queue, encodeDeadLetter(dead, this.mem.io.maxMessageBytes()));
    const deadSeq = this.mem.dead.length;
    const error = dead.error!;
    this.#put({ ...recordFromMessage(job, 'failed'), error, finishedAt: this.#o.clock.now(), deadSeq });
    this.#emit({ type: 'job.failed', queue: job.queue, jobId: job.id, data: { name: job.name, error: error.message, code: error.code, ...data } });
    this.#emit({ type: 'job.dead', queue: job.queue, jobId: job.id, data: { reason: dead.reason, deadSeq } });
  }

  /** A job enqueued (after `after`) that has not started: pending or running in its queue, waiting, or delayed. */
  #notStarted(id: string, after = Number.NEGATIVE_INFINITY): JobRecord | null {
    const inStream = this.#stream.get(id);
    if (inStream && inStream.ts > after) return recordFromMessage(inStream, 'pending');
    const waiting = this.#waiting.get(id) ?? this.#flows.waiting(id);
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
