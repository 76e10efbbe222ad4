import { hostname } from 'node:os';
import { jetstream, JetStreamApiCodes, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { setLongTimeout, type LongTimer } from '../duration.js';
import { errorInfo, NaqError, type ErrorInfo, type PermissionDeniedError } from '../errors.js';
import { decodeJob, retryDelay, WIRE_VERSION, type AttemptRecord, type JobMessage, type JobRecord } from '../job.js';
import type { Logger } from '../log.js';
import { isPermissionDenied, toPermissionDenied } from '../permissions.js';
import { resultProblem, ResultNotSerializableError, ResultTooLargeError, snapshotProgress } from '../outcome.js';
import { encodeDeadLetter, tryEncode } from '../record-codec.js';
import { encodeJson, type DeadLetter, type JobsRuntime, type WorkerInfo } from './jobs-runtime.js';
import type { NaqEventType } from '../event-log.js';

/** What a handler gets besides the job's data. */
export interface JobContext {
  jobId: string;
  name: string;
  queue: string;
  /** 1-based; counts deliveries, so a worker that died mid-job used one. */
  attempt: number;
  maxAttempts: number;
  /** Aborted on timeout, on cancel, and when the worker drains past its grace period. */
  signal: AbortSignal;
  /**
   * Records progress in the job record (throttled to one write per 250 ms). Throws
   * PROGRESS_NOT_SERIALIZABLE or PROGRESS_TOO_LARGE (64 KiB) for a value that cannot be stored.
   */
  progress(value: unknown): void;
  log: Logger;
}

export type Handler<D = any, R = unknown> = (data: D, ctx: JobContext) => Promise<R> | R;
export type Handlers = Record<string, Handler>;

export class JobTimeoutError extends NaqError {
  constructor(ms: number) {
    super('JOB_TIMEOUT', `job timed out after ${ms} ms`);
  }
}
export class JobCancelledError extends NaqError {
  constructor() {
    super('JOB_CANCELLED', 'job was cancelled');
  }
}
class DrainAbort extends NaqError {
  constructor() {
    super('DRAINED', 'worker stopped before the job finished; it goes back to the queue');
  }
}

export interface QueueWorkerSettings {
  concurrency: number;
  ackWaitMs: number;
  activeAfterMs: number;
}

interface Running {
  msg: JsMsg;
  job: JobMessage;
  attempt: number;
  startedAt: number;
  /** Made only when the handler reads `ctx.signal`: most never do, and it is costly per job. */
  controller: AbortController | undefined;
  abortReason: unknown;
  rejectWait: ((reason: unknown) => void) | undefined;
  /** Set when the drain gave the job back: its late outcome must not be recorded. */
  abandoned: boolean;
  lastWorking: number;
  /** An 'active' record was written. */
  marked: boolean;
  progress: unknown;
  progressTimer: NodeJS.Timeout | undefined;
  lastProgress: number;
  /** Copies of this job delivered again while it ran; acked with its outcome. */
  duplicates: JsMsg[];
  /** The handler returned; the outcome is being recorded. */
  finished: boolean;
  /**
   * The earlier attempts' history, read once (retries only) before this attempt writes its
   * own 'active' record over it, and reused for every record this attempt writes.
   */
  prior: Promise<AttemptRecord[]> | undefined;
}

const PROGRESS_EVERY_MS = 250;
/** How many finished job ids a worker remembers, to ack (not rerun) a redelivery of one. */
const RECENT_JOBS = 4096;

/** Aborts a running job: its signal (if the handler took it) and the wait for its outcome. */
function abortJob(running: Running, reason: unknown) {
  if (running.abortReason !== undefined) return;
  running.abortReason = reason;
  running.controller?.abort(reason);
  running.rejectWait?.(reason);
}
const SWEEP_EVERY_MS = 250;
/** Before pulling again after a pull ended on its own. */
const REPULL_DELAY_MS = 250;
/** How long a pull request lives on the server (see #pull for why it is short). */
const PULL_EXPIRES_MS = 5000;

/**
 * The delivery count, read from the ack subject without `msg.info`, whose parse allocates
 * every token of the subject (measured: ~1 KB per job, 7 % of the worker's allocations).
 * `$JS.ACK.<stream>.<consumer>.<delivered>.…` has 9 tokens; the form with a domain and an
 * account hash has 11 or 12, and the count is two tokens later. Anything else goes to the client.
 */
export function deliveryCount(msg: JsMsg): number {
  const reply = (msg as JsMsg & { reply?: string }).reply ?? '';
  let dots = 0;
  let fourth = -1;
  let sixth = -1;
  for (let i = reply.indexOf('.'); i !== -1; i = reply.indexOf('.', i + 1)) {
    dots++;
    if (dots === 4) fourth = i;
    else if (dots === 6) sixth = i;
  }
  const start = dots === 8 ? fourth : dots >= 10 ? sixth : -1;
  if (start !== -1 && reply.startsWith('$JS.ACK.')) {
    const n = Number(reply.slice(start + 1, reply.indexOf('.', start + 1)));
    if (Number.isInteger(n) && n >= 1) return n;
  }
  return msg.info.deliveryCount;
}

/**
 * The `ctx` a handler gets. A class (shared getters on the prototype) rather than an object
 * literal with accessors and closures per job: measured ~1 KB less garbage per job.
 */
class RunningJobContext implements JobContext {
  readonly jobId: string;
  readonly name: string;
  readonly queue: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly #running: Running;
  readonly #workerLog: Logger;
  readonly #scheduleProgress: (running: Running) => void;
  #log: Logger | undefined;

  constructor(running: Running, workerLog: Logger, scheduleProgress: (running: Running) => void) {
    this.jobId = running.job.id;
    this.name = running.job.name;
    this.queue = running.job.queue;
    this.attempt = running.attempt;
    this.maxAttempts = running.job.attempts;
    this.#running = running;
    this.#workerLog = workerLog;
    this.#scheduleProgress = scheduleProgress;
  }

  /** Made on first read: most handlers never look, and an AbortController per job is costly. */
  get signal(): AbortSignal {
    const running = this.#running;
    if (!running.controller) {
      running.controller = new AbortController();
      if (running.abortReason !== undefined) running.controller.abort(running.abortReason);
    }
    return running.controller.signal;
  }

  progress(value: unknown): void {
    // A snapshot, checked now: the handler learns at the call that a value cannot be stored,
    // and a later change to the object cannot break the write.
    this.#running.progress = snapshotProgress(value);
    this.#scheduleProgress(this.#running);
  }

  /** A child logger per job is costly; most handlers never log. */
  get log(): Logger {
    return (this.#log ??= this.#workerLog.child({ jobId: this.jobId, attempt: this.attempt }));
  }
}

/** The stream or consumer a pull needs no longer exists. */
function isMissingResource(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (code === JetStreamApiCodes.StreamNotFound || code === JetStreamApiCodes.ConsumerNotFound) return true;
  const message = error instanceof Error ? error.message : '';
  // The server tells a waiting pull so with a 409 status when the consumer (or its stream) goes.
  return message === 'stream not found' || message === 'consumer not found' || message === 'consumer deleted';
}

/** `instanceof` on what a handler threw, which may be a Proxy whose traps throw. */
function isCancel(error: unknown): boolean {
  try {
    return error instanceof JobCancelledError;
  } catch {
    return false;
  }
}

/** Cancels are remembered this long, for jobs that arrive after their cancel notice. */
const CANCEL_MEMORY_MS = 10 * 60_000;

/**
 * Consumes one queue: pulls in batches through the queue's shared durable consumer, runs up
 * to `concurrency` handlers at once, records each outcome with one pipelined KV write, and
 * acks only once that write is confirmed (at-least-once). Retries are NAKs with the backoff
 * delay; the last failure goes to the dead-letter stream.
 */
export class QueueWorker {
  readonly id: string;
  readonly #rt: JobsRuntime;
  readonly #queue: string;
  readonly #handlers: Handlers;
  readonly #settings: QueueWorkerSettings;
  readonly #log: Logger;
  readonly #running = new Map<string, Running>();
  readonly #cancelled = new Map<string, number>();
  readonly #slotWaiters: Array<() => void> = [];
  readonly #startedAt = Date.now();
  #messages: ConsumerMessages | null = null;
  /** Bumped by every stop of pulling; a pull of an older generation ends. */
  #generation = 0;
  #pulling = false;
  #maxAckPending = 1;
  #cancelSub: Subscription | null = null;
  #inFlight = 0;
  #processed = 0;
  #failed = 0;
  #status: 'running' | 'paused' | 'draining' | 'stopped' = 'paused';
  #idle: (() => void) | null = null;
  /** Until then, even first attempts are checked against their record (see pause()). */
  #verifyUntil = 0;
  /** Jobs this worker finished recently (id → enqueue time): a redelivery of one is acked, not run. */
  readonly #recent = new Map<string, number>();
  #sweeper: NodeJS.Timeout | undefined;
  #onError: ((error: Error) => void) | undefined;
  #denied: PermissionDeniedError | undefined;
  #unlisten: (() => void) | undefined;

  constructor(rt: JobsRuntime, queue: string, handlers: Handlers, settings: QueueWorkerSettings, log: Logger) {
    this.#rt = rt;
    this.#queue = queue;
    this.#handlers = handlers;
    this.#settings = settings;
    this.#log = log;
    this.id = `${hostname()}-${process.pid}-${queue}`.replace(/[^A-Za-z0-9_=-]/g, '_');
  }

  get inFlight() {
    return this.#inFlight;
  }
  get processed() {
    return this.#processed;
  }

  /** The queue's consumer exists; cancel notices are heard. Does not pull yet. */
  async prepare(maxAckPending: number): Promise<void> {
    this.#maxAckPending = maxAckPending;
    await this.#rt.ensureLayout();
    await this.#rt.ensureConsumer(this.#queue, maxAckPending);
    const stream = this.#rt.layout.jobsStream;
    const consumer = this.#rt.layout.consumerName(this.#queue);
    const ackPrefix = `$JS.ACK.${stream}.${consumer}.`;
    const pull = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`;
    const cancel = this.#rt.layout.cancelSubject(this.#queue);
    this.#unlisten = this.#rt.publisher.onPermissionError((error) => {
      if (error.subject.startsWith(ackPrefix) || error.subject === pull || error.subject === cancel) this.#refused(error);
    });
    this.#cancelSub = this.#rt.nc.subscribe(cancel, {
      callback: (err, msg) => {
        if (err) {
          const denied = toPermissionDenied(err);
          if (denied) this.#refused(denied);
          return;
        }
        this.#onCancel(msg.string());
      },
    });
  }

  /** Starts (or restarts) pulling. */
  resume(onError: (error: Error) => void): void {
    if (this.#status === 'draining' || this.#status === 'stopped' || this.#pulling) return;
    this.#onError = onError;
    if (this.#denied) {
      onError(this.#denied);
      return;
    }
    this.#pulling = true;
    this.#status = 'running';
    if (this.#verifyUntil === Number.POSITIVE_INFINITY) this.#verifyUntil = Date.now() + 2 * this.#settings.ackWaitMs;
    const generation = this.#generation;
    void this.#pull(generation).catch((error: unknown) => {
      // A pull that a pause (or a newer resume) replaced ends quietly.
      if (this.#status !== 'running' || generation !== this.#generation) return;
      this.#pulling = false;
      onError(error instanceof Error ? error : new Error(String(error)));
    });
  }

  /** Stops pulling; jobs already running go on. */
  pause(): void {
    if (this.#status === 'running') this.#status = 'paused';
    this.#stopPulling();
    // A server that restarted may have lost which deliveries it made and redeliver jobs
    // under a first-attempt count: for a while after this, check records before running.
    this.#verifyUntil = Number.POSITIVE_INFINITY;
  }

  /**
   * Pulls until stopped. Each pause or resume starts a new generation: a pull of an older one
   * (say, still waiting for the consumer lookup when the link flapped) ends instead of
   * pulling beside the new one. A stream or consumer that disappears under it (deleted by an
   * operator, `naq streams rm`) is recreated and the pull starts again.
   */
  async #pull(generation: number): Promise<void> {
    const stale = () => this.#status !== 'running' || generation !== this.#generation;
    const js = jetstream(this.#rt.nc);
    for (;;) {
      let messages: ConsumerMessages;
      try {
        const consumer = await js.consumers.get(this.#rt.layout.jobsStream, this.#rt.layout.consumerName(this.#queue));
        if (stale()) return;
        // At most `concurrency` buffered beyond those running, so a buffered job's ack_wait is
        // not eaten up waiting for a slot.
        // Pull requests live on the consumer's leader. When a cluster moves that leader (its
        // node died), they vanish without a word; the client notices only after two missed
        // idle heartbeats, which the default 30 s expiry spaces 15 s apart. A 5 s expiry brings
        // the stall down to ~5 s, for one extra pull request every 5 s when the queue is idle.
        messages = await consumer.consume({ max_messages: this.#settings.concurrency, expires: PULL_EXPIRES_MS, abort_on_missing_resource: true });
      } catch (error) {
        if (!isMissingResource(error) || stale()) throw error;
        await this.#recreate(error);
        continue;
      }
      if (stale()) {
        void messages.close().catch(() => {});
        return;
      }
      this.#messages = messages;
      try {
        await this.#consume(messages);
        if (stale()) return;
        // Ended without being stopped and without an error (the client gave up on it): a
        // worker that silently stops pulling is the one failure nobody sees. Pull again.
        this.#log.warn({ queue: this.#queue }, 'the pull ended on its own; pulling again');
        this.#messages = null;
        await new Promise((r) => setTimeout(r, REPULL_DELAY_MS));
      } catch (error) {
        if (!isMissingResource(error) || stale()) throw error;
        this.#messages = null;
        await this.#recreate(error);
      }
    }
  }

  async #consume(messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      if (this.#inFlight >= this.#settings.concurrency) await new Promise<void>((r) => this.#slotWaiters.push(r));
      // Pulled before a pause, a drain, or a reconnect that started a newer pull: the server
      // redelivers it (after a restart it already has), so running this copy would run it twice.
      if (this.#status !== 'running' || this.#messages !== messages) {
        msg.nak();
        continue;
      }
      this.#inFlight++;
      // One handler pair, not .catch().finally(): a promise less per job on the hot path.
      void this.#process(msg).then(this.#released, this.#failedOnTheWay);
    }
  }

  readonly #released = () => this.#release();

  /**
   * A write that failed on the way (the server away past its deadline): the job is not acked,
   * so it comes back after ack_wait. Never an unhandled rejection.
   */
  readonly #failedOnTheWay = (error: unknown) => {
    this.#release();
    const denied = toPermissionDenied(error);
    if (denied) this.#refused(denied);
    else this.#log.warn({ err: error }, 'job left unacknowledged; it will be redelivered');
  };

  /** The jobs stream or the queue's consumer is gone: make the layout and the consumer again. */
  async #recreate(error: unknown): Promise<void> {
    this.#log.warn({ err: error, queue: this.#queue }, 'the jobs stream or this queue\'s consumer disappeared; recreating it');
    await this.#rt.repairLayout(`consumer ${this.#rt.layout.consumerName(this.#queue)}: ${(error as Error).message}`);
    await this.#rt.ensureLayout();
    await this.#rt.ensureConsumer(this.#queue, this.#maxAckPending);
  }

  #stopPulling() {
    this.#generation++;
    this.#pulling = false;
    const m = this.#messages;
    this.#messages = null;
    if (m) void m.close().catch(() => {});
  }

  #release() {
    this.#inFlight--;
    this.#slotWaiters.shift()?.();
    if (this.#inFlight === 0 && this.#idle) this.#idle();
  }

  /** Stops pulling and resolves once every running job has finished (or was given back). */
  drain(): Promise<void> {
    this.#status = 'draining';
    this.#stopPulling();
    // Anything waiting for a slot was pulled but not started: give it back now.
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#idle = resolve));
  }

  /** Grace period over: abort what still runs and NAK it, so another worker takes it at once. */
  nakRest(): void {
    for (const [, r] of this.#running) {
      if (r.finished) continue;
      r.abandoned = true;
      abortJob(r, new DrainAbort());
      r.msg.nak();
    }
    this.#running.clear();
    // Their handlers may never settle; the drain does not wait for them.
    if (this.#idle) this.#idle();
  }

  /** A subject this worker needs is refused: running on would only redeliver jobs for ever. */
  #refused(error: PermissionDeniedError) {
    if (this.#denied) return;
    this.#denied = error;
    this.#log.error({ err: error, subject: error.subject, queue: this.#queue }, `worker stops: ${error.message}`);
    this.#stopPulling();
    this.#onError?.(error);
  }

  async stop(): Promise<void> {
    this.#unlisten?.();
    this.#status = 'stopped';
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#stopPulling();
    this.#cancelSub?.unsubscribe();
    this.#cancelSub = null;
  }

  info(): WorkerInfo {
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      queues: [this.#queue],
      inFlight: this.#inFlight,
      processed: this.#processed,
      failed: this.#failed,
      status: this.#status,
      concurrency: this.#settings.concurrency,
      startedAt: this.#startedAt,
      ts: Date.now(),
    };
  }

  #emit(type: NaqEventType, job: JobMessage, data: Record<string, unknown>) {
    this.#rt.events.emit({ type, queue: job.queue, jobId: job.id, workerId: this.id, data });
  }

  /** Worker lifecycle events (started, paused, resumed, stopped). */
  emitWorker(type: 'worker.started' | 'worker.paused' | 'worker.resumed' | 'worker.stopped'): void {
    this.#rt.events.emit({ type, queue: this.#queue, workerId: this.id, data: { concurrency: this.#settings.concurrency, processed: this.#processed, failed: this.#failed, pid: process.pid } });
  }

  heartbeat(): void {
    this.#rt.publisher.publish(`$KV.${this.#rt.layout.workersBucket}.${this.id}`, encodeJson(this.info())).catch((error: unknown) => {
      const denied = toPermissionDenied(error);
      if (denied) this.#refused(denied);
      else this.#log.debug({ err: error }, 'heartbeat not written');
    });
  }

  async removeHeartbeat(): Promise<void> {
    await (await this.#rt.workersKv()).delete(this.id).catch(() => {});
  }

  #onCancel(jobId: string) {
    const now = Date.now();
    this.#cancelled.set(jobId, now);
    for (const [id, at] of this.#cancelled) if (now - at > CANCEL_MEMORY_MS) this.#cancelled.delete(id);
    const running = this.#running.get(jobId);
    if (running && !running.finished) abortJob(running, new JobCancelledError());
  }

  async #process(msg: JsMsg): Promise<void> {
    let job: JobMessage;
    try {
      job = decodeJob(msg.data);
    } catch (error) {
      await this.#deadLetterRaw(msg, error as Error);
      return;
    }
    const attempt = deliveryCount(msg);
    const inProgress = this.#running.get(job.id);
    if (inProgress && inProgress.job.ts === job.ts) {
      // Delivered again while this worker still runs (or records) it: acked with its outcome.
      inProgress.duplicates.push(msg);
      return;
    }
    if (this.#recent.get(job.id) === job.ts || ((attempt > 1 || Date.now() < this.#verifyUntil) && (await this.#alreadyFinished(job)))) {
      // Its outcome was recorded but the ack was lost (a crash, a server restart): done already.
      this.#rt.publisher.later(() => msg.ack());
      return;
    }
    if (this.#cancelled.has(job.id)) {
      await this.#finish(msg, { ...(await this.#baseRecord(job, attempt)), status: 'cancelled', finishedAt: Date.now() });
      this.#emit('job.cancelled', job, { name: job.name, attempt });
      return;
    }
    const handler = Object.hasOwn(this.#handlers, job.name) ? this.#handlers[job.name] : undefined;
    const startedAt = Date.now();
    if (!handler) {
      const error: ErrorInfo = { name: 'UnknownHandlerError', code: 'UNKNOWN_HANDLER', message: `no handler named ${job.name} on this worker` };
      await this.#fail(msg, job, attempt, startedAt, error, true);
      return;
    }

    const running: Running = {
      msg,
      job,
      attempt,
      startedAt,
      controller: undefined,
      abortReason: undefined,
      rejectWait: undefined,
      abandoned: false,
      lastWorking: startedAt,
      marked: false,
      progress: undefined,
      progressTimer: undefined,
      lastProgress: 0,
      duplicates: [],
      finished: false,
      prior: undefined,
    };
    this.#running.set(job.id, running);
    this.#ensureSweeper();
    this.#emit('job.started', job, { attempt });
    const timeout: LongTimer | undefined = job.timeoutMs ? setLongTimeout(() => abortJob(running, new JobTimeoutError(job.timeoutMs!)), job.timeoutMs) : undefined;
    const ctx = this.#context(running);

    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      // One promise that settles with the handler or with the abort, whichever comes first.
      const value = await new Promise<unknown>((resolve, reject) => {
        running.rejectWait = reject;
        try {
          Promise.resolve(handler(job.data, ctx)).then(resolve, reject);
        } catch (error) {
          reject(error);
        }
      });
      outcome = { ok: true, value };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      timeout?.clear();
      if (running.progressTimer) clearTimeout(running.progressTimer);
      // It stays in #running until its outcome is recorded, so a duplicate delivery finds it.
      running.finished = true;
    }
    try {
      if (running.abandoned) {
        this.#releaseDuplicates(job.id);
        return;
      }

      if (outcome.ok) {
        // Inline rather than a helper: one async frame (and promise) less per job.
        const problem = resultProblem(outcome.value);
        if (problem) outcome = { ok: false, error: problem };
        else if ((attempt > 1 || Date.now() < this.#verifyUntil) && (await this.#alreadyFinished(job))) {
          // A copy that ran twice (a redelivery racing the original after a crash) records its
          // completion once: if the record already says completed, only the ack is left.
          const { duplicates } = running;
          this.#running.delete(job.id);
          this.#remember(job.id, job.ts);
          this.#rt.publisher.later(() => {
            msg.ack();
            for (const d of duplicates) d.ack();
          });
          return;
        } else {
          const finishedAt = Date.now();
          // A first attempt has no history to read back: no await on the hot path.
          const record = attempt <= 1 ? this.#freshRecord(job) : await this.#baseRecord(job, attempt, running);
          record.status = 'completed';
          record.startedAt = startedAt;
          record.finishedAt = finishedAt;
          record.result = outcome.value === undefined ? null : outcome.value;
          record.attempts.push({ n: attempt, startedAt, finishedAt, workerId: this.id });
          if (running.progress !== undefined) record.progress = running.progress;
          if (job.resultTtlMs) record.expiresAt = finishedAt + job.resultTtlMs;
          const encoded = this.#encodeCompleted(record);
          if (encoded instanceof Error) outcome = { ok: false, error: encoded };
          else {
            await this.#finish(msg, record, encoded);
            this.#processed++;
            this.#emit('job.completed', job, { attempt, durationMs: finishedAt - startedAt });
            return;
          }
        }
      }
      if (running.abortReason instanceof JobCancelledError || isCancel(outcome.error)) {
        const record = await this.#baseRecord(job, attempt, running);
        await this.#finish(msg, { ...record, status: 'cancelled', startedAt, finishedAt: Date.now() });
        this.#emit('job.cancelled', job, { name: job.name, attempt });
        return;
      }
      await this.#fail(msg, job, attempt, startedAt, errorInfo(outcome.error), false, running);
    } finally {
      // Whatever happened on the way (a failed write, a throw), the job leaves #running.
      if (this.#running.get(job.id) === running) this.#running.delete(job.id);
    }
  }

  /**
   * The completed record's bytes, or the error a result that cannot be stored fails the
   * attempt with. The result was checked before, so encoding can only throw on a value that
   * changed while it was read (a getter): one encode on the common path.
   */
  #encodeCompleted(record: JobRecord): Uint8Array | Error {
    const bytes = tryEncode(record);
    if (!bytes) return new ResultNotSerializableError('encoding it threw');
    const max = this.#rt.maxMessageBytes;
    if (bytes.length > max) return new ResultTooLargeError(Buffer.byteLength(JSON.stringify(record.result)), max);
    return bytes;
  }

  #context(running: Running): JobContext {
    return new RunningJobContext(running, this.#log, this.#scheduleProgress);
  }

  /** ctx.progress(): at most one record write per PROGRESS_EVERY_MS per job. */
  readonly #scheduleProgress = (running: Running) => {
    if (running.progressTimer) return;
    running.progressTimer = setTimeout(() => this.#writeProgress(running), Math.max(0, PROGRESS_EVERY_MS - (Date.now() - running.lastProgress)));
  };

  #writeProgress(running: Running) {
    running.progressTimer = undefined;
    running.lastProgress = Date.now();
    running.marked = true;
    if (running.abandoned || running.finished) return;
    void this.#writeActive(running, running.progress);
    this.#emit('job.progress', running.job, { progress: running.progress });
  }

  /** The 'active' record (with its progress); on a retry, with the earlier attempts kept. */
  async #writeActive(running: Running, progress: unknown): Promise<void> {
    try {
      const record = this.#activeRecord(running.job, running.attempt, running.startedAt);
      if (running.attempt > 1) record.attempts.unshift(...(await this.#priorAttempts(running.job, running.attempt, running)));
      // The outcome may have been written while the history was read: never write over it.
      if (running.abandoned || running.finished) return;
      if (progress !== undefined) record.progress = progress;
      await this.#rt.putRecord(record);
    } catch {
      // Only informative: the outcome write that follows is the one that counts.
    }
  }

  /**
   * One timer for every running job, instead of two per job: marks long jobs `active` in
   * their record and sends `working()` so the server does not redeliver them.
   */
  #ensureSweeper() {
    if (this.#sweeper) return;
    this.#sweeper = setInterval(() => {
      if (this.#running.size === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
        return;
      }
      const now = Date.now();
      const workingEvery = Math.max(1000, this.#settings.ackWaitMs / 2);
      for (const r of this.#running.values()) {
        if (r.abandoned || r.finished) continue;
        if (!r.marked && this.#settings.activeAfterMs > 0 && now - r.startedAt >= this.#settings.activeAfterMs) {
          r.marked = true;
          void this.#writeActive(r, r.progress);
        }
        if (now - r.lastWorking >= workingEvery) {
          r.lastWorking = now;
          r.msg.working();
        }
      }
    }, SWEEP_EVERY_MS);
    this.#sweeper.unref();
  }

  #activeRecord(job: JobMessage, attempt: number, startedAt: number): JobRecord {
    return {
      v: WIRE_VERSION,
      id: job.id,
      name: job.name,
      queue: job.queue,
      status: 'active',
      maxAttempts: job.attempts,
      attempts: [{ n: attempt, startedAt, workerId: this.id }],
      enqueuedAt: job.ts,
      startedAt,
      ...(job.dependsOn ? { dependsOn: job.dependsOn } : {}),
    };
  }

  /** The record so far: fresh on a first attempt; read back (with its history) on a retry. */
  #freshRecord(job: JobMessage): JobRecord {
    const fresh: JobRecord = {
      v: WIRE_VERSION,
      id: job.id,
      name: job.name,
      queue: job.queue,
      status: 'pending',
      maxAttempts: job.attempts,
      attempts: [],
      enqueuedAt: job.ts,
    };
    if (job.dependsOn) fresh.dependsOn = job.dependsOn;
    return fresh;
  }

  /** A redelivered job whose record already says how it ended (and is for this enqueue). */
  async #alreadyFinished(job: JobMessage): Promise<boolean> {
    try {
      const entry = await (await this.#rt.jobsKv()).get(job.id);
      if (!entry || entry.operation !== 'PUT') return false;
      const r = entry.json<JobRecord>();
      return (r.status === 'completed' || r.status === 'failed' || r.status === 'cancelled') && r.enqueuedAt === job.ts;
    } catch {
      // Unknown: run it (at least once beats at most once).
      return false;
    }
  }

  async #baseRecord(job: JobMessage, attempt: number, running?: Running): Promise<JobRecord> {
    const fresh = this.#freshRecord(job);
    if (attempt <= 1) return fresh;
    fresh.attempts = [...(await this.#priorAttempts(job, attempt, running))];
    return fresh;
  }

  /** The finished attempts before this one, from the record (read once per running attempt). */
  #priorAttempts(job: JobMessage, attempt: number, running?: Running): Promise<AttemptRecord[]> {
    if (running?.prior) return running.prior;
    const prior = (async () => {
      try {
        const entry = await (await this.#rt.jobsKv()).get(job.id);
        if (entry && entry.operation === 'PUT') {
          const record = entry.json<JobRecord>();
          return (Array.isArray(record.attempts) ? record.attempts : []).filter((a) => a.finishedAt !== undefined && a.n < attempt);
        }
      } catch (error) {
        this.#log.debug({ err: error, jobId: job.id }, 'could not read the record history');
      }
      return [];
    })();
    if (running) running.prior = prior;
    return prior;
  }

  async #fail(msg: JsMsg, job: JobMessage, attempt: number, startedAt: number, error: ErrorInfo, permanent: boolean, running?: Running): Promise<void> {
    const finishedAt = Date.now();
    const record = await this.#baseRecord(job, attempt, running);
    record.startedAt = startedAt;
    record.finishedAt = finishedAt;
    record.error = error;
    record.attempts.push({ n: attempt, startedAt, finishedAt, error, workerId: this.id });
    if (!permanent && attempt < job.attempts) {
      record.status = 'retrying';
      delete record.finishedAt;
      await this.#rt.putRecord(record);
      const delayMs = retryDelay(job.backoff, attempt + 1);
      msg.nak(delayMs);
      this.#releaseDuplicates(job.id);
      this.#emit('job.retrying', job, { name: job.name, attempt, error: error.message, code: error.code, delayMs });
      return;
    }
    this.#failed++;
    const dead: DeadLetter = {
      v: WIRE_VERSION,
      reason: permanent ? error.message : `failed after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${error.message}`,
      error,
      queue: job.queue,
      subject: msg.subject,
      jobId: job.id,
      job,
      ts: finishedAt,
    };
    const ack = await this.#rt.publisher.publish(this.#rt.layout.deadSubject(job.queue), encodeDeadLetter(dead, this.#rt.maxMessageBytes));
    record.status = 'failed';
    record.deadSeq = ack.seq;
    await this.#finish(msg, record);
    this.#emit('job.failed', job, { name: job.name, attempt, error: error.message, code: error.code, durationMs: finishedAt - startedAt });
    this.#emit('job.dead', job, { reason: dead.reason, deadSeq: ack.seq });
  }

  /** Bad input loses nothing: the raw payload and the decode error go to the dead letters. */
  async #deadLetterRaw(msg: JsMsg, error: Error): Promise<void> {
    const tokens = msg.subject.split('.');
    const jobId = tokens.at(-1);
    const dead: DeadLetter = {
      v: WIRE_VERSION,
      reason: `undecodable job: ${error.message}`,
      error: errorInfo(error),
      queue: this.#queue,
      subject: msg.subject,
      ...(jobId ? { jobId } : {}),
      raw: new TextDecoder().decode(msg.data.subarray(0, 64 * 1024)),
      ts: Date.now(),
    };
    this.#failed++;
    const ack = await this.#rt.publisher.publish(this.#rt.layout.deadSubject(this.#queue), encodeDeadLetter(dead, this.#rt.maxMessageBytes));
    const events = this.#rt.events;
    events.emit({ type: 'job.failed', queue: this.#queue, ...(jobId ? { jobId } : {}), workerId: this.id, data: { error: dead.reason } });
    events.emit({ type: 'job.dead', queue: this.#queue, ...(jobId ? { jobId } : {}), workerId: this.id, data: { reason: dead.reason, deadSeq: ack.seq } });
    if (jobId) {
      const record: JobRecord = {
        v: WIRE_VERSION,
        id: jobId,
        name: '(undecodable)',
        queue: this.#queue,
        status: 'failed',
        maxAttempts: 1,
        attempts: [],
        enqueuedAt: Date.now(),
        finishedAt: Date.now(),
        error: dead.error!,
        deadSeq: ack.seq,
      };
      await this.#rt.putRecord(record).catch(() => {});
    }
    msg.ack();
  }

  /** At-least-once: the ack goes out only after the outcome is recorded. */
  async #finish(msg: JsMsg, record: JobRecord, bytes?: Uint8Array): Promise<void> {
    try {
      await (bytes ? this.#rt.putRecordBytes(record.id, bytes) : this.#rt.putRecord(record));
    } catch (error) {
      // Not recorded: leave the message unacked so it is redelivered after ack_wait.
      this.#running.delete(record.id);
      if (isPermissionDenied(error)) {
        // Another worker (allowed to write records) can take it at once.
        msg.nak();
        this.#refused(toPermissionDenied(error)!);
        return;
      }
      this.#log.warn({ err: error, jobId: record.id }, 'outcome not recorded; the job will be redelivered');
      return;
    }
    const duplicates = this.#running.get(record.id)?.duplicates ?? [];
    this.#running.delete(record.id);
    if (record.status !== 'retrying') this.#remember(record.id, record.enqueuedAt);
    this.#rt.publisher.later(() => {
      msg.ack();
      for (const d of duplicates) d.ack();
    });
  }

  /** The job was given back (retry, drain): its duplicate deliveries go back too. */
  #releaseDuplicates(id: string) {
    for (const d of this.#running.get(id)?.duplicates ?? []) d.nak();
    this.#running.delete(id);
  }

  #remember(id: string, enqueuedAt: number) {
    this.#recent.set(id, enqueuedAt);
    if (this.#recent.size > RECENT_JOBS) this.#recent.delete(this.#recent.keys().next().value!);
  }
}
