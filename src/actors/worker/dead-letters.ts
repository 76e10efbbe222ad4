/**
 * Dead letters the job path (job-path.ts) publishes: a job out of attempts (or failed for
 * good), and a delivery that is not a valid job — bad input loses nothing: the raw payload and
 * the reason, and, when its subject names an id, a failed record. Pure functions.
 */
import { errorInfo, type ErrorInfo } from '../../core/errors.js';
import { recordFromMessage, WIRE_VERSION, type DeadLetter, type JobMessage, type JobRecord } from '../../model/job.js';
import type { Delivery } from './delivery.js';

/** The raw payload kept in the dead letter, at most. */
const RAW_BYTES = 64 * 1024;

export function undecodableOutcome(msg: Delivery, error: Error, queue: string, now: number): { dead: DeadLetter; record: JobRecord | null } {
  const jobId = msg.subject.split('.').at(-1);
  const dead: DeadLetter = {
    v: WIRE_VERSION,
    reason: `undecodable job: ${error.message}`,
    error: errorInfo(error),
    queue,
    subject: msg.subject,
    ...(jobId ? { jobId } : {}),
    raw: new TextDecoder().decode(msg.data.subarray(0, RAW_BYTES)),
    ts: now,
  };
  if (!jobId) return { dead, record: null };
  const record = recordFromMessage({ id: jobId, name: '(undecodable)', queue, attempts: 1, ts: now }, 'failed');
  record.finishedAt = now;
  record.error = dead.error!;
  return { dead, record };
}

/** A job that failed for good: after its last attempt, or at once (`permanent`, e.g. no handler). */
export function failedDeadLetter(job: JobMessage, subject: string, error: ErrorInfo, attempt: number, permanent: boolean, now: number): DeadLetter {
  return {
    v: WIRE_VERSION,
    reason: permanent ? error.message : `failed after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${error.message}`,
    error,
    queue: job.queue,
    subject,
    jobId: job.id,
    job,
    ts: now,
  };
}
