/** Reading jobs: a record (or what a job without one is), a pending message, waiting for a result. */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { setLongTimeout, validateDuration, type LongTimer } from '../../core/duration.js';
import { NaqError, OperationTimeoutError, type ErrorInfo } from '../../core/errors.js';
import { decodeJob, recordFromMessage, TERMINAL_STATUSES, type JobMessage, type JobRecord } from '../../model/job.js';
import { validateJobId } from '../../model/layout.js';
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
    const record = entry.json<JobRecord>();
    if (record.expiresAt !== undefined && record.expiresAt < Date.now()) return null;
    return record;
  }
  const pending = await pendingMessage(ctx, id);
  if (pending) return recordFromMessage(pending.job, 'pending');
  const waiting = await (await ctx.storage.waitingKv()).get(id);
  if (waiting && waiting.operation === 'PUT') return recordFromMessage(waiting.json<JobMessage>(), 'waiting');
  return null;
}

/** The pending message of a job, found by id alone (the queue is a wildcard in the subject). */
export async function pendingMessage(ctx: NaqContext, id: string): Promise<{ job: JobMessage; seq: number } | null> {
  const jsm = await ctx.jsm();
  try {
    const msg = await jsm.streams.getMessage(ctx.layout.jobsStream, { last_by_subj: ctx.layout.jobSubject('*', id) });
    if (!msg) return null;
    try {
      return { job: decodeJob(msg.data), seq: msg.seq };
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
    for await (const e of watch) {
      if (e.operation !== 'PUT') continue;
      const record = e.json<JobRecord>();
      if (record.status === 'completed') return record.result as T;
      if (TERMINAL_STATUSES.has(record.status)) throw new JobFailedError(record);
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
