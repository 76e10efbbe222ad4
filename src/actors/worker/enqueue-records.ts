/**
 * The job path's reads of a job's record (job-path.ts): the record of this enqueue of the job
 * (its `enqueuedAt` is the message's `ts`), to tell a redelivery whose outcome is recorded from
 * one to run, and the history a retry's records build on. First attempts read nothing.
 */
import type { Logger } from '../../core/log.js';
import { recordFromMessage, type JobMessage, type JobRecord } from '../../model/job.js';
import { isIndexedState } from '../../model/job-index.js';
import type { JobIO } from './job-io.js';
import { attachLogs, historyOf, NO_HISTORY, recordLogs, type History } from './job-logs.js';
import type { RunningJob } from './running-job.js';

/** Deliveries of this enqueue that a rate-limited handler gave back (not attempts). */
export function deferredOf(record: JobRecord | null): number {
  return record && Number.isInteger(record.deferred) && record.deferred! > 0 ? record.deferred! : 0;
}

export class EnqueueRecords {
  readonly #io: Pick<JobIO, 'readRecord'>;
  readonly #log: Logger;
  readonly #maxLogLines: number;

  constructor(io: Pick<JobIO, 'readRecord'>, log: Logger, maxLogLines: number) {
    this.#io = io;
    this.#log = log;
    this.#maxLogLines = maxLogLines;
  }

  /** A redelivered job's record, when it already says how it ended (and is for this enqueue). */
  async finished(job: JobMessage): Promise<JobRecord | null> {
    const r = await this.current(job);
    return r !== null && isIndexedState(r.status) ? r : null;
  }

  /** The record of this enqueue of the job, or null (none, another enqueue's, or unreadable). */
  async current(job: JobMessage): Promise<JobRecord | null> {
    try {
      const r = await this.#io.readRecord(job.id);
      return r !== null && r.enqueuedAt === job.ts ? r : null;
    } catch {
      // Unknown: run it (at least once beats at most once).
      return null;
    }
  }

  /** The record so far: fresh on a first attempt; on a retry, with the earlier attempts; with the lines logged. */
  async base(job: JobMessage, attempt: number, running?: RunningJob): Promise<JobRecord> {
    const history = attempt <= 1 ? NO_HISTORY : await this.history(job, attempt, running);
    const record = attachLogs(recordFromMessage(job, 'pending', [...history.attempts]), recordLogs(history, running?.logs, this.#maxLogLines));
    if (running?.deferred) record.deferred = running.deferred;
    return record;
  }

  /** The finished attempts before this one and their lines, from the record (read once per running attempt). */
  history(job: JobMessage, attempt: number, running?: RunningJob): Promise<History> {
    if (running?.prior) return running.prior;
    const prior = (async () => {
      try {
        const record = await this.#io.readRecord(job.id);
        // Only this enqueue's history: the id may have run before, under another enqueue.
        if (record && record.enqueuedAt === job.ts) return historyOf(record, attempt);
      } catch (error) {
        this.#log.debug({ err: error, jobId: job.id }, 'could not read the record history');
      }
      return NO_HISTORY;
    })();
    if (running) running.prior = prior;
    return prior;
  }
}
