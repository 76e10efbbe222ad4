/** Reading jobs: a record (or what a job without one is), a pending message, waiting for a result. */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { setLongTimeout, validateDuration, type LongTimer } from '../../core/duration.js';
import { NaqError, OperationTimeoutError, type ErrorInfo } from '../../core/errors.js';
import { decodeJob, recordFromMessage, recordProblem, TERMINAL_STATUSES, type DeadLetter, type JobMessage, type JobRecord } from '../../model/job.js';
import { validateJobId } from '../../model/layout.js';
import type { ScheduleRecord } from '../../model/schedule.js';
import type { FlowRecord } from '../../model/flow.js';
import type { NaqContext } from '../nats/context.js';

/** A job failed for good (or was cancelled); carries the record's error. */
export class JobFailedError extends NaqError {
  readonly jobId: string;
  readonly status: JobRecord['status'];
  readonly error: ErrorInfo | undefined;
  readonly record: JobRecord;
  constructor(record: JobRecord) {
    super(
      record.status === 'cancelled' ? 'JOB_CANCELLED' : 'JOB_FAILED',
      record.status === 'cancelled' ? `job ${record.id} was cancelled` : `job ${record.id} failed: ${record.error?.message ?? 'unknown error'}`,
    );
    this.jobId = record.id;
    this.status = record.status;
    this.error = record.error;
    this.record = record;
  }
}

/** The record; for a job not yet started, one made from its pending (or waiting) message. */
export async function getJob(ctx: NaqContext, id: string): Promise<JobRecord | null> {
  validateJobId(id);
  const kv = await ctx.storage.jobsKv();
  const entry = await ctx.storage.withLayout(`get job ${id}`, () => kv.get(id));
  if (entry && entry.operation === 'PUT') {
    const record = storedRecord(id, entry.string());
    // A finished job's id may be enqueued again: then the new enqueue is what the id is now.
    if (TERMINAL_STATUSES.has(record.status)) {
      const again = await notStarted(ctx, id, record.enqueuedAt);
      if (again) return again;
    }
    if (record.expiresAt !== undefined && record.expiresAt < Date.now()) return null;
    return record;
  }
  return notStarted(ctx, id);
}

/** The stored record, checked: one a foreign worker wrote wrong gets a clear error, not a crash later. */
function storedRecord(id: string, text: string): JobRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new NaqError('BAD_RECORD', `the record of job ${id} is not JSON`);
  }
  const problem = recordProblem(value);
  if (problem) throw new NaqError('BAD_RECORD', `the record of job ${id} does not follow the wire format: ${problem}`);
  return value as JobRecord;
}

/** A job enqueued (after `after`, when given) that has not started: pending in its queue, or waiting on dependencies. */
async function notStarted(ctx: NaqContext, id: string, after = Number.NEGATIVE_INFINITY): Promise<JobRecord | null> {
  // The three places a job waits to start, asked at once: one round trip, not three.
  const [pending, waiting, schedule, parent] = await Promise.all([
    pendingMessage(ctx, id),
    ctx.storage.waitingKv().then((kv) => kv.get(id)),
    ctx.storage.schedulesKv().then((kv) => kv.get(id)),
    ctx.storage.flowsKv().then((kv) => kv.get(id)),
  ]);
  if (pending && pending.job.ts > after) return recordFromMessage(pending.job, 'pending');
  if (waiting && waiting.operation === 'PUT') {
    const job = waiting.json<JobMessage>();
    if (job.ts > after) return recordFromMessage(job, 'waiting');
  }
  // A flow parent or batch completion waiting for its children.
  if (parent && parent.operation === 'PUT') {
    const flow = parent.json<FlowRecord>();
    if (flow.state === 'waiting' && flow.job.ts > after) return recordFromMessage(flow.job, 'waiting');
  }
  // Enqueued to run later: a one-shot schedule named by the job id until it fires.
  if (schedule && schedule.operation === 'PUT') {
    const s = schedule.json<ScheduleRecord>();
    if (s.kind === 'at' && s.status === 'active' && s.createdAt > after) {
      return recordFromMessage({ id, name: s.name, queue: s.queue, attempts: s.opts.attempts ?? ctx.defaults.attempts, ts: s.createdAt, priority: s.opts.priority }, 'delayed');
    }
  }
  return null;
}

/** The pending message of a job, found by id alone (the queue is a wildcard in the subject). */
export async function pendingMessage(ctx: NaqContext, id: string): Promise<{ job: JobMessage; seq: number; subject: string } | null> {
  const jsm = await ctx.jsm();
  try {
    const msg = await jsm.streams.getMessage(ctx.layout.jobsStream, { last_by_subj: ctx.layout.jobSubject('*', id) });
    if (!msg) return null;
    try {
      return { job: decodeJob(msg.data), seq: msg.seq, subject: msg.subject };
    } catch {
      return null;
    }
  } catch (error) {
    if (error instanceof JetStreamApiError && (error.code === JetStreamApiCodes.NoMessageFound || error.code === JetStreamApiCodes.StreamNotFound)) return null;
    throw error;
  }
}

/** Resolves with the result once the job completed; throws JobFailedError if it failed or was cancelled. */
export async function waitFor<T = unknown>(ctx: NaqContext, id: string, options: { timeoutMs?: number } = {}): Promise<T> {
  validateJobId(id);
  const timeoutMs = validateDuration('timeoutMs', options.timeoutMs ?? 30_000);
  const kv = await ctx.storage.jobsKv();
  // A watch delivers the current value first, then every change: no polling, no gap.
  // Retried: just after a server restart the watch's consumer may not be creatable yet.
  const watch = await ctx.storage.withLayout(`watch job ${id}`, () => kv.watch({ key: id }));
  let timer: LongTimer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setLongTimeout(() => reject(new OperationTimeoutError(`waiting for job ${id}`, timeoutMs)), timeoutMs);
  });
  const result = (async () => {
    // Records of earlier enqueues of this id (a finished job's id enqueued again) are not the answer.
    let since = Number.NEGATIVE_INFINITY;
    for await (const e of watch) {
      if (e.operation !== 'PUT') continue;
      const record = e.json<JobRecord>();
      if (record.enqueuedAt < since || !TERMINAL_STATUSES.has(record.status)) continue;
      const again = await notStarted(ctx, id, record.enqueuedAt);
      if (again) {
        since = again.enqueuedAt;
        continue;
      }
      // A newer enqueue may have run and been acked since this record was read: the watch brings its record next.
      const latest = await kv.get(id);
      if (latest && latest.revision > e.revision) continue;
      if (record.status === 'completed') return record.result as T;
      throw new JobFailedError(record);
    }
    throw new NaqError('WATCH_ENDED', `the watch on job ${id} ended`);
  })();
  try {
    return await Promise.race([result, timeout]);
  } finally {
    timer?.clear();
    watch.stop();
  }
}

/**
 * A job's data, where it is still kept: the message of a job not yet acked (pending, active,
 * retrying), the waiting message, the one-shot schedule of a delayed job, or the dead letter
 * of a failed one. Null once nothing keeps it (a completed or cancelled job's message is gone).
 */
export async function jobData(ctx: NaqContext, id: string): Promise<{ data: unknown } | null> {
  const record = await getJob(ctx, id);
  if (!record) return null;
  if (record.status === 'pending' || record.status === 'active' || record.status === 'retrying') {
    const pending = await pendingMessage(ctx, id);
    return pending ? { data: pending.job.data } : null;
  }
  if (record.status === 'waiting') {
    const entry = await (await ctx.storage.waitingKv()).get(id);
    return entry && entry.operation === 'PUT' ? { data: entry.json<JobMessage>().data } : null;
  }
  if (record.status === 'delayed') {
    const entry = await (await ctx.storage.schedulesKv()).get(id);
    return entry && entry.operation === 'PUT' ? { data: entry.json<ScheduleRecord>().data } : null;
  }
  if (record.status === 'failed' && record.deadSeq !== undefined) {
    const jsm = await ctx.jsm();
    const msg = await jsm.streams.getMessage(ctx.layout.deadStream, { seq: record.deadSeq }).catch(() => null);
    if (!msg) return null;
    const dead = msg.json<DeadLetter>();
    return dead.job && !dead.dataTruncated ? { data: dead.job.data } : null;
  }
  return null;
}
