/**
 * The per-job path of a worker, as steps: decode → already finished / cancelled → run
 * (timeout, cancel, progress) → outcome (one record builder) → ack, NAK with the backoff
 * delay, or dead letter. Its I/O and its clock are given to it (JobIO, Clock), so every step
 * is tested without a server (test/unit/job-path.test.ts); queue-worker.ts feeds it deliveries.
 *
 * At least once: a delivery is acked only after its outcome is recorded (outcome-writes.ts).
 */
import { errorInfo, withStack, type ErrorInfo } from '../../core/errors.js';
import type { NaqEventType } from '../../model/event.js';
import { laneToken } from '../../model/layout.js';
import { decodeJob, JobDecodeError, retryDelay, type JobMessage, type JobRecord } from '../../model/job.js';
import { encodeDeadLetter } from '../../model/record-codec.js';
import { isIndexedState, type IndexedState } from '../../model/job-index.js';
import { endsWithLaneAndId, type Delivery } from './delivery.js';
import { DrainAbort, isCancel, JobCancelledError, JobTimeoutError, rateLimitedFor, type Handler } from './handler.js';
import type { JobPathOptions } from './job-io.js';
import { resultProblem } from './outcome.js';
import { Liveness } from './liveness.js';
import { completed, completedFirst, type Completion, type CompletionSettings } from './completion.js';
import { DeliveryMemory } from './delivery-memory.js';
import { failedDeadLetter, undecodableOutcome } from './dead-letters.js';
import { abortJob, runningJob, RunningJobContext, type RunningJob } from './running-job.js';
import { historyOf } from './job-logs.js';
import { deferredOf, EnqueueRecords } from './enqueue-records.js';
import { OutcomeWrites } from './outcome-writes.js';
import { consumerSpan, endSpan, within } from '../../tracing/tracing.js';
import type { Grant } from './rate-gate.js';

export type { JobIO, JobPathOptions } from './job-io.js';

/** A copy whose completion another run already recorded: only its ack is left. */
const ALREADY_RECORDED = Symbol('already recorded');

export class JobPath {
  readonly #o: JobPathOptions;
  readonly #running = new Map<string, RunningJob>();
  /** Jobs finished here recently and cancel notices heard. */
  readonly #memory = new DeliveryMemory();
  #cs: CompletionSettings | undefined;
  /** Until then, even first attempts are checked against their record (see verifyAfterRestart). */
  #verifyUntil = 0;
  readonly #liveness: Liveness;
  /** This enqueue's record, read back: a redelivery's outcome, a retry's history. */
  readonly #records: EnqueueRecords;
  /** Records outcomes, then acks (or NAKs) the delivery and its copies. */
  readonly #out: OutcomeWrites;
  processed = 0;
  failed = 0;

  constructor(options: JobPathOptions) {
    this.#o = options;
    this.#records = new EnqueueRecords(options.io, options.log, this.#maxLogLines);
    this.#out = new OutcomeWrites({ running: this.#running, memory: this.#memory, io: options.io, log: options.log, onRefused: options.onRefused });
    this.#liveness = new Liveness({
      clock: options.clock,
      workerId: options.workerId,
      ackWaitMs: options.ackWaitMs,
      activeAfterMs: options.activeAfterMs,
      running: () => this.#running,
      history: (job, attempt, running) => this.#records.history(job, attempt, running),
      maxLogLines: this.#maxLogLines,
      write: (record) => this.#out.write(record),
      emitProgress: (running) => this.#emit('job.progress', running.job, { progress: running.progress }),
    });
  }

  /** Jobs running (or having their outcome recorded) now. */
  get running(): number {
    return this.#running.size;
  }

  /**
   * The link went away: a server that restarted may have lost which deliveries it made and
   * redeliver jobs under a first-attempt count. Until pulling resumes (then for two ack waits),
   * first attempts are checked against their record before they run.
   */
  verifyAfterRestart(): void {
    this.#verifyUntil = Number.POSITIVE_INFINITY;
  }

  /** Pulling resumed: the check lasts two ack waits more. */
  resumed(): void {
    if (this.#verifyUntil === Number.POSITIVE_INFINITY) this.#verifyUntil = this.#o.clock.now() + 2 * this.#o.ackWaitMs;
  }

  /** A cancel notice: a running job is aborted; a job that arrives later is not run. */
  cancel(jobId: string): void {
    this.#memory.cancel(jobId, this.#o.clock.now());
    const running = this.#running.get(jobId);
    if (running && !running.finished) abortJob(running, new JobCancelledError());
  }

  /** The drain's grace is over: abort what still runs and NAK it, so another worker takes it at once. */
  abandonAll(): void {
    for (const [, r] of this.#running) {
      if (r.finished) continue;
      r.abandoned = true;
      abortJob(r, new DrainAbort());
      r.msg.nak();
    }
    this.#running.clear();
  }

  stop(): void {
    this.#liveness.stop();
  }

  /**
   * One delivery, through every step. The common case (a first attempt that completes) awaits
   * only the handler and the one record write; every step is a plain call, not an async
   * function of its own. Rejects only when a write failed (the job is then redelivered).
   * `grant`: the rate gate's, when the delivery passed one (told when the handler starts).
   */
  async process(msg: Delivery, delivery: number, grant?: Grant): Promise<void> {
    // The worker is told once that this delivery no longer runs a handler: when the handler
    // settles, or when the path leaves without running one.
    let handlerDone = false;
    try {
      let attempt = delivery;
      // 1. Decode.
      let job: JobMessage;
      try {
        job = decodeJob(msg.data);
      } catch (error) {
        return this.#deadLetterUndecodable(msg, error as Error);
      }
      // Records, dead letters and events are keyed by the body's id and queue: one that is not
      // the subject's would land elsewhere (or, not a valid subject token, never land at all).
      // The lane is part of it: a body's priority that is not its subject's would be shown wrong.
      if (job.queue !== this.#o.queue || !endsWithLaneAndId(msg.subject, laneToken(job.queue, job.priority), job.id)) {
        const priority = job.priority === undefined ? '' : ` (priority ${job.priority})`;
        return this.#deadLetterUndecodable(
          msg,
          new JobDecodeError(`the body's queue ${JSON.stringify(job.queue)}${priority} and id ${JSON.stringify(job.id)} are not those of its subject ${msg.subject}`),
        );
      }
      // 2. Running here already, finished already, or cancelled: decided at once unless a record must be read.
      const early = this.#early(msg, job, attempt);
      let deferred = 0;
      let record: JobRecord | null = null;
      if (early === true) return;
      if (early !== false) {
        const verified = await early;
        if (verified === true) return;
        record = verified === false ? null : verified;
        // Deliveries that went back without using an attempt (rate limits) do not count.
        deferred = deferredOf(record);
        attempt = Math.max(1, attempt - deferred);
      }
      const handler = Object.hasOwn(this.#o.handlers, job.name) ? this.#o.handlers[job.name] : undefined;
      const startedAt = this.#o.clock.now();
      if (!handler) {
        const error: ErrorInfo = { name: 'UnknownHandlerError', code: 'UNKNOWN_HANDLER', message: `no handler named ${job.name} on this worker` };
        return this.#fail(msg, job, attempt, startedAt, error, true);
      }
      // 3. Run. A rate limit's window counts this start when it really happens.
      grant?.began(startedAt);
      const running = runningJob(msg, job, attempt, startedAt, deferred);
      // The record read to verify this delivery is the history its records build on: not read again.
      if (record) running.prior = Promise.resolve(historyOf(record, attempt));
      this.#running.set(job.id, running);
      this.#liveness.ensureSweeper();
      this.#emit('job.started', job, { attempt });
      this.#o.metrics?.started(job.queue, job.name, startedAt - job.ts);
      const traced = consumerSpan(job.queue, job, attempt, () => msg.headers);
      let value: unknown;
      let error: unknown;
      let failed = false;
      try {
        value = await (traced ? within(traced.context, () => this.#wait(running, handler)) : this.#wait(running, handler));
      } catch (thrown) {
        failed = true;
        error = thrown;
      } finally {
        running.timeout?.clear();
        running.progressTimer?.clear();
        // It stays in #running until its outcome is recorded, so a duplicate delivery finds it.
        running.finished = true;
        if (traced) endSpan(traced.span, failed ? error : undefined);
        handlerDone = true;
        this.#o.onHandlerDone?.();
      }
      // 4. Outcome: one record write, then ack; NAK with the backoff delay; or dead letter.
      try {
        if (running.abandoned) return this.#out.releaseDuplicates(job.id);
        if (!failed) {
          const pending = this.#completion(running, value);
          const completion = pending instanceof Promise ? await pending : pending;
          if (completion === ALREADY_RECORDED) return;
          if (!(completion instanceof Error)) {
            try {
              this.#o.io.index({ id: job.id, queue: job.queue, name: job.name, state: 'completed', enqueuedAt: job.ts });
              await this.#o.io.writeRecord(job.id, completion.bytes);
              if (job.parent !== undefined) await this.#o.io.tellParent(job.parent, job.id, 'completed');
            } catch (thrown) {
              return this.#out.notRecorded(msg, job.id, thrown);
            }
            this.#out.recorded(msg, job.id, job.ts);
            this.processed++;
            this.#emit('job.completed', job, { attempt, durationMs: completion.finishedAt - startedAt });
            this.#o.metrics?.ended(job.queue, job.name, 'completed', completion.finishedAt - startedAt);
            return;
          }
          // A result that cannot be stored fails the attempt with the error that says why.
          error = completion;
        }
        // Awaited here, so that the job stays in #running (where copies delivered meanwhile
        // gather, to be answered with its outcome) until that outcome is written.
        if (running.abortReason instanceof JobCancelledError || isCancel(error)) return await this.#recordCancel(msg, job, attempt, running);
        const waitMs = running.abortReason === undefined ? rateLimitedFor(error) : null;
        if (waitMs !== null) return await this.#defer(msg, job, attempt, running, waitMs, error as Error);
        return await this.#fail(msg, job, attempt, startedAt, withStack(errorInfo(error), error), false, running);
      } finally {
        // Whatever happened on the way (a failed write, a throw), the job leaves #running.
        if (this.#running.get(job.id) === running) this.#running.delete(job.id);
      }
    } finally {
      if (!handlerDone) this.#o.onHandlerDone?.();
    }
  }

  /**
   * A copy of a job this worker runs now (acked with its outcome), one whose outcome is
   * already recorded (acked: the ack was lost to a crash or a restart), or one cancelled
   * before it arrived (recorded as cancelled): true when there is nothing left to run. A
   * promise only when a record has to be read or written.
   */
  #early(msg: Delivery, job: JobMessage, attempt: number): boolean | Promise<boolean | JobRecord | null> {
    const inProgress = this.#running.get(job.id);
    if (inProgress && inProgress.job.ts === job.ts) {
      (inProgress.duplicates ??= []).push(msg);
      return true;
    }
    if (this.#memory.finished(job.id, job.ts)) {
      this.#o.io.ackLater(msg);
      return true;
    }
    if (!this.#mustVerify(attempt)) return this.#cancelledEarly(msg, job, attempt);
    // Resolves true when nothing is left to run, else with this enqueue's record (or null).
    return this.#records.current(job).then((record) => {
      if (!record || !isIndexedState(record.status)) {
        const cancelled = this.#cancelledEarly(msg, job, Math.max(1, attempt - deferredOf(record)));
        return cancelled === false ? record : cancelled === true ? true : cancelled.then((c) => (c ? true : record));
      }
      // Its ack was lost, and maybe its index entry with it (a crash before the batch went out).
      this.#o.io.index({ id: job.id, queue: job.queue, name: job.name, state: record.status as IndexedState, enqueuedAt: job.ts });
      return Promise.resolve(this.#out.toldParent(record)).then(() => {
        this.#o.io.ackLater(msg);
        return true;
      });
    });
  }

  /**
   * Rate limited: back to the queue after `waitMs` without using an attempt (the record counts
   * the delivery as deferred), and the queue held for as long on every worker.
   */
  async #defer(msg: Delivery, job: JobMessage, attempt: number, running: RunningJob, waitMs: number, error: Error): Promise<void> {
    const record = await this.#records.base(job, attempt, running);
    record.deferred = running.deferred + 1;
    try {
      await this.#out.write(record);
    } catch (thrown) {
      return this.#out.notRecorded(msg, job.id, thrown);
    }
    msg.nak(waitMs);
    this.#o.io.hold(waitMs, job.group);
    this.#out.releaseDuplicates(job.id);
    this.#emit('job.deferred', job, { name: job.name, attempt, delayMs: waitMs, reason: error.message });
  }

  /** A cancel notice covers the jobs enqueued before it: a later enqueue of the same id runs. */
  #cancelledEarly(msg: Delivery, job: JobMessage, attempt: number): boolean | Promise<boolean> {
    if (!this.#memory.cancelledBefore(job.id, job.ts)) return false;
    return this.#recordCancel(msg, job, attempt).then(() => true);
  }

  async #recordCancel(msg: Delivery, job: JobMessage, attempt: number, running?: RunningJob): Promise<void> {
    const record = await this.#records.base(job, attempt, running);
    record.status = 'cancelled';
    if (running) record.startedAt = running.startedAt;
    record.finishedAt = this.#o.clock.now();
    await this.#out.finish(msg, record);
    this.#emit('job.cancelled', job, { name: job.name, attempt });
    this.#o.metrics?.ended(job.queue, job.name, 'cancelled', running ? record.finishedAt - running.startedAt : 0);
  }

  #mustVerify(attempt: number): boolean {
    // Most of the time there is no check window: no clock read for it.
    return attempt > 1 || (this.#verifyUntil !== 0 && this.#o.clock.now() < this.#verifyUntil);
  }

  /** Runs the handler; settles with its outcome, or with the abort (timeout, cancel, drain), whichever comes first. */
  #wait(running: RunningJob, handler: Handler): Promise<unknown> {
    const { job } = running;
    if (job.timeoutMs) {
      const ms = job.timeoutMs;
      running.timeout = this.#o.clock.setTimeout(() => abortJob(running, new JobTimeoutError(ms)), ms);
    }
    const ctx = new RunningJobContext(running, this.#o.log, this.#liveness.scheduleProgress, this.#maxLogLines, this.#now, this.#o.io);
    return new Promise<unknown>((resolve, reject) => {
      running.rejectWait = reject;
      if (running.abortReason !== undefined) return reject(running.abortReason);
      try {
        Promise.resolve(handler(job.data, ctx)).then(resolve, reject);
      } catch (thrown) {
        reject(thrown);
      }
    });
  }

  /**
   * The completed record and its bytes; or the error a result that cannot be stored fails the
   * attempt with; or, for a copy whose completion another run already recorded, only its ack.
   * Synchronous for a first attempt: it has no history to read back.
   */
  #completion(running: RunningJob, value: unknown): Completion | Error | Promise<Completion | Error | typeof ALREADY_RECORDED> {
    const problem = resultProblem(value);
    if (problem) return problem;
    // A job that was deferred keeps that count in its record: the full builder writes it.
    if (!this.#mustVerify(running.attempt) && running.deferred === 0) return completedFirst(running, value, this.#o.clock.now(), this.#completionSettings());
    return this.#completionOfCopy(running, value);
  }

  /** One object, its max_payload read afresh each time (the server may tell a new one). */
  #completionSettings(): CompletionSettings {
    const cs = (this.#cs ??= { workerId: this.#o.workerId, maxLogLines: this.#maxLogLines, maxMessageBytes: 0 });
    cs.maxMessageBytes = this.#o.io.maxMessageBytes();
    return cs;
  }

  async #completionOfCopy(running: RunningJob, value: unknown): Promise<Completion | Error | typeof ALREADY_RECORDED> {
    const { msg, job, attempt } = running;
    // A copy that ran twice (a redelivery racing the original after a crash) records its
    // completion once: if the record already says completed, only the ack is left.
    const finished = await this.#records.finished(job);
    if (finished) {
      await this.#out.toldParent(finished);
      const duplicates = running.duplicates;
      this.#running.delete(job.id);
      this.#memory.remember(job.id, job.ts);
      this.#out.ackLater(msg, duplicates);
      return ALREADY_RECORDED;
    }
    return completed(running, value, await this.#records.base(job, attempt, running), this.#o.clock.now(), this.#completionSettings());
  }

  /** A failed attempt: retry (record 'retrying', NAK with the backoff delay), or dead letter and record 'failed'. */
  async #fail(msg: Delivery, job: JobMessage, attempt: number, startedAt: number, error: ErrorInfo, permanent: boolean, running?: RunningJob): Promise<void> {
    const finishedAt = this.#o.clock.now();
    const record = await this.#records.base(job, attempt, running);
    record.startedAt = startedAt;
    record.error = error;
    // The stack is kept once, on the record's latest error: not in every attempt's.
    const { stack: _stack, ...attemptError } = error;
    record.attempts.push({ n: attempt, startedAt, finishedAt, error: attemptError, workerId: this.#o.workerId });
    if (!permanent && attempt < job.attempts) {
      record.status = 'retrying';
      await this.#out.write(record);
      const delayMs = retryDelay(job.backoff, attempt + 1);
      msg.nak(delayMs);
      this.#out.releaseDuplicates(job.id);
      this.#emit('job.retrying', job, { name: job.name, attempt, error: error.message, code: error.code, delayMs });
      this.#o.metrics?.ended(job.queue, job.name, 'retried', finishedAt - startedAt);
      return;
    }
    record.finishedAt = finishedAt;
    this.failed++;
    const dead = failedDeadLetter(job, msg.subject, error, attempt, permanent, finishedAt);
    const seq = await this.#o.io.deadLetter(job.queue, encodeDeadLetter(dead, this.#o.io.maxMessageBytes()));
    record.status = 'failed';
    record.deadSeq = seq;
    await this.#out.finish(msg, record);
    this.#emit('job.failed', job, { name: job.name, attempt, error: error.message, code: error.code, durationMs: finishedAt - startedAt });
    this.#emit('job.dead', job, { reason: dead.reason, deadSeq: seq });
    this.#o.metrics?.ended(job.queue, job.name, 'failed', finishedAt - startedAt);
  }

  /** Bad input loses nothing: the raw payload and the decode error go to the dead letters. */
  async #deadLetterUndecodable(msg: Delivery, error: Error): Promise<void> {
    const { dead, record } = undecodableOutcome(msg, error, this.#o.queue, this.#o.clock.now());
    this.failed++;
    const seq = await this.#o.io.deadLetter(this.#o.queue, encodeDeadLetter(dead, this.#o.io.maxMessageBytes()));
    const base = { queue: this.#o.queue, ...(dead.jobId ? { jobId: dead.jobId } : {}), workerId: this.#o.workerId };
    this.#o.io.emit({ type: 'job.failed', ...base, data: { error: dead.reason } });
    this.#o.io.emit({ type: 'job.dead', ...base, data: { reason: dead.reason, deadSeq: seq } });
    if (record) {
      record.deadSeq = seq;
      await this.#out.write(record).catch(() => {});
    }
    msg.ack();
  }

  #emit(type: NaqEventType, job: JobMessage, data: Record<string, unknown>) {
    // Every field set at once (ts too): the buffer then adds none to it.
    this.#o.io.emit({ type, ts: this.#o.clock.now(), queue: job.queue, jobId: job.id, workerId: this.#o.workerId, data });
    // A grouped job's final outcome frees its group's slot (a retry keeps it).
    if (job.group !== undefined && (type === 'job.completed' || type === 'job.failed' || type === 'job.cancelled')) this.#o.io.groupDone(job);
  }

  /** The clock's time, bound once (a Clock may be a class whose `now` needs its `this`). */
  readonly #now = (): number => this.#o.clock.now();

  get #maxLogLines(): number {
    return this.#o.maxLogLines ?? 100;
  }
}
