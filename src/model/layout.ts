import { InvalidArgumentError } from '../core/errors.js';

/**
 * Names of every stream, subject and bucket naq owns, derived from the configured prefix
 * (DESIGN: NATS layout). One place, so a prefix change moves everything together.
 */
export interface Layout {
  prefix: string;
  jobsStream: string;
  deadStream: string;
  eventsStream: string;
  /** One message per finished job, for listings (src/model/job-index.ts). */
  indexStream: string;
  allIndex: string;
  jobsBucket: string;
  workersBucket: string;
  waitingBucket: string;
  schedulesBucket: string;
  /** Per-queue settings an operator sets (paused), by queue name. */
  queuesBucket: string;
  /** Rate limits' shared windows (src/model/rate-window.ts), by queue name. */
  ratesBucket: string;
  leaderBucket: string;
  /** Dedupe windows by key (src/model/dedupe.ts). */
  dedupeBucket: string;
  jobSubject(queue: string, jobId: string): string;
  queueFilter(queue: string): string;
  allJobs: string;
  deadSubject(queue: string): string;
  allDead: string;
  /** Core (non-stream) subject that tells workers to abort a running job. */
  cancelSubject(queue: string): string;
  consumerName(queue: string): string;
}

export function layout(prefix: string): Layout {
  const upper = prefix.toUpperCase().replace(/-/g, '_');
  return {
    prefix,
    jobsStream: `${upper}_JOBS`,
    deadStream: `${upper}_DEAD`,
    eventsStream: `${upper}_EVENTS`,
    indexStream: `${upper}_INDEX`,
    allIndex: `${prefix}.index.>`,
    jobsBucket: `${prefix}_jobs`,
    workersBucket: `${prefix}_workers`,
    waitingBucket: `${prefix}_waiting`,
    schedulesBucket: `${prefix}_schedules`,
    queuesBucket: `${prefix}_queues`,
    ratesBucket: `${prefix}_rates`,
    leaderBucket: `${prefix}_leader`,
    dedupeBucket: `${prefix}_dedupe`,
    jobSubject: (queue, jobId) => `${prefix}.jobs.${queue}.${jobId}`,
    queueFilter: (queue) => `${prefix}.jobs.${queue}.>`,
    allJobs: `${prefix}.jobs.>`,
    deadSubject: (queue) => `${prefix}.dead.${queue}`,
    allDead: `${prefix}.dead.>`,
    cancelSubject: (queue) => `${prefix}.cancel.${queue}`,
    consumerName: (queue) => `${prefix}-${queue}`,
  };
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** Queue names become subject tokens and consumer names: a strict alphabet keeps both valid. */
export function validateQueue(queue: string): string {
  if (typeof queue !== 'string' || !NAME.test(queue) || queue.length > 128) {
    throw new InvalidArgumentError(`invalid queue name ${JSON.stringify(queue)}: use letters, digits, "_" and "-" (at most 128)`);
  }
  return queue;
}

/** Job ids are subject tokens and KV keys: letters, digits, "_", "-", "=" and ":"-free. */
const JOB_ID = /^[A-Za-z0-9_=-]+$/;

export function validateJobId(id: string): string {
  if (typeof id !== 'string' || !JOB_ID.test(id) || id.length > 200) {
    throw new InvalidArgumentError(`invalid job id ${JSON.stringify(id)}: use letters, digits, "_", "-" and "=" (at most 200)`);
  }
  return id;
}
