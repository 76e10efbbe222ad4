/**
 * A completed attempt's record, encoded and checked to fit one message; or the error that
 * fails the attempt instead (a result JSON cannot carry, or one too large). Pure: the job
 * path (job-path.ts) gives the time, the worker id and the server's max_payload.
 */
import type { JobRecord } from '../../model/job.js';
import { completedFirstAttemptBytes, tryEncode } from '../../model/record-codec.js';
import { NO_HISTORY, recordLogs } from './job-logs.js';
import { ResultNotSerializableError, ResultTooLargeError } from './outcome.js';
import type { RunningJob } from './running-job.js';

/** A completed record, encoded and known to fit. */
export interface Completion {
  bytes: Uint8Array;
  finishedAt: number;
}

export interface CompletionSettings {
  workerId: string;
  maxLogLines: number;
  maxMessageBytes: number;
}

/** Within the server's max_payload, or the error that fails the attempt. */
function fits(bytes: Uint8Array, finishedAt: number, value: unknown, max: number): Completion | Error {
  if (bytes.length > max) return new ResultTooLargeError(Buffer.byteLength(JSON.stringify(value) ?? ''), max);
  return { bytes, finishedAt };
}

/** The common case, without a record object: a first attempt has no history to keep. */
export function completedFirst(running: RunningJob, value: unknown, finishedAt: number, s: CompletionSettings): Completion | Error {
  let bytes: Uint8Array;
  try {
    bytes = completedFirstAttemptBytes(running.job, running.attempt, s.workerId, running.startedAt, finishedAt, value, running.progress, recordLogs(NO_HISTORY, running.logs, s.maxLogLines));
  } catch (error) {
    // The result was checked: only a value that changed while it was read (a getter) gets here.
    return new ResultNotSerializableError(`encoding it threw: ${(error as Error).message}`);
  }
  return fits(bytes, finishedAt, value, s.maxMessageBytes);
}

/** `record` (the history so far) completed by this attempt. */
export function completed(running: RunningJob, value: unknown, record: JobRecord, finishedAt: number, s: CompletionSettings): Completion | Error {
  const { job, attempt, startedAt } = running;
  record.status = 'completed';
  record.startedAt = startedAt;
  record.finishedAt = finishedAt;
  record.result = value === undefined ? null : value;
  record.attempts.push({ n: attempt, startedAt, finishedAt, workerId: s.workerId });
  if (running.progress !== undefined) record.progress = running.progress;
  if (job.resultTtlMs) record.expiresAt = finishedAt + job.resultTtlMs;
  // The result was checked, so encoding can only throw on a value that changed while it
  // was read (a getter).
  const bytes = tryEncode(record);
  if (!bytes) return new ResultNotSerializableError('encoding it threw');
  return fits(bytes, finishedAt, value, s.maxMessageBytes);
}
