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
  /** Parents waiting for children (flows, batches), by the parent's id (src/model/flow.ts). */
  flowsBucket: string;
  /** One notice per finished child of a flow or batch. */
  flowsStream: string;
  allFlowNotices: string;
  /** Where a child of `parent` tells that it finished: `<prefix>.flows.<parent>.<child>`. */
  flowNoticeSubject(parent: string, child: string): string;
  /**
   * A job's subject: `<prefix>.jobs.<lane>.<id>`, where the lane is the queue for the default
   * priority and `<queue>~<priority>` for the others (laneToken).
   */
  jobSubject(queue: string, jobId: string, priority?: number): string;
  /** The subjects of one priority level of a queue (every level: queueFilters). */
  queueFilter(queue: string, priority?: number): string;
  /** One filter per priority level, most urgent first, then the group staging lane's. */
  queueFilters(queue: string): string[];
  /** Where a job with a `group` waits until the group dispatcher releases it to its priority lane. */
  stagedSubject(queue: string, jobId: string): string;
  allJobs: string;
  deadSubject(queue: string): string;
  allDead: string;
  /** Core (non-stream) subject that tells workers to abort a running job. */
  cancelSubject(queue: string): string;
  /** The durable consumer of one priority level of a queue, shared by its workers. */
  consumerName(queue: string, priority?: number): string;
  /** The group dispatcher's consumer of a queue's staging lane. */
  stagingConsumer(queue: string): string;
  /** Core subject: a worker tells the group dispatcher a grouped job finished (`<id> <group>`) or its group must hold. */
  groupNoticeSubject(queue: string, kind: 'done' | 'hold'): string;
}

/** Priority levels: 1 is the most urgent, 10 the least; jobs without one are at 5. */
export const PRIORITIES: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
export const DEFAULT_PRIORITY = 5;

/**
 * The subject token of a queue's priority level. Workqueue consumers on nats-server 2.9 may not
 * overlap and take one filter each, so every level is a lane of its own: the default level keeps
 * the queue's plain token (what other clients publish to), the others add `~<level>`. Queue
 * names cannot contain `~`, so no lane is taken for another queue.
 */
export function laneToken(queue: string, priority: number = DEFAULT_PRIORITY): string {
  return priority === DEFAULT_PRIORITY ? queue : `${queue}~${priority}`;
}

/** The lane where jobs with a group wait for the group dispatcher (docs/wire-format.md 3.8). */
export function stagingToken(queue: string): string {
  return `${queue}~g`;
}

/** The queue and priority of a subject's lane token (`q`, `q~<level>`; `q~g` is the staging lane, `staged`). */
export function parseLane(token: string): { queue: string; priority: number; staged?: true } {
  const tilde = token.indexOf('~');
  if (tilde < 0) return { queue: token, priority: DEFAULT_PRIORITY };
  if (token.slice(tilde + 1) === 'g') return { queue: token.slice(0, tilde), priority: DEFAULT_PRIORITY, staged: true };
  const priority = Number(token.slice(tilde + 1));
  return { queue: token.slice(0, tilde), priority: PRIORITIES.includes(priority) ? priority : DEFAULT_PRIORITY };
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
    flowsBucket: `${prefix}_flows`,
    flowsStream: `${upper}_FLOWS`,
    allFlowNotices: `${prefix}.flows.>`,
    flowNoticeSubject: (parent, child) => `${prefix}.flows.${parent}.${child}`,
    jobSubject: (queue, jobId, priority) => `${prefix}.jobs.${laneToken(queue, priority)}.${jobId}`,
    queueFilter: (queue, priority) => `${prefix}.jobs.${laneToken(queue, priority)}.>`,
    queueFilters: (queue) => [...PRIORITIES.map((p) => `${prefix}.jobs.${laneToken(queue, p)}.>`), `${prefix}.jobs.${stagingToken(queue)}.>`],
    stagedSubject: (queue, jobId) => `${prefix}.jobs.${stagingToken(queue)}.${jobId}`,
    allJobs: `${prefix}.jobs.>`,
    deadSubject: (queue) => `${prefix}.dead.${queue}`,
    allDead: `${prefix}.dead.>`,
    cancelSubject: (queue) => `${prefix}.cancel.${queue}`,
    consumerName: (queue, priority) => `${prefix}-${laneToken(queue, priority)}`,
    stagingConsumer: (queue) => `${prefix}-${stagingToken(queue)}`,
    groupNoticeSubject: (queue, kind) => `${prefix}.groups.${queue}.${kind}`,
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

/** A priority level: an integer from 1 (most urgent) to 10. */
export function validatePriority(priority: unknown): number {
  if (typeof priority !== 'number' || !PRIORITIES.includes(priority)) {
    throw new InvalidArgumentError(`priority must be an integer from 1 (most urgent) to 10 (least), got ${JSON.stringify(priority)}`);
  }
  return priority;
}

/** A group key: it travels in the job's body only, so any text of 1 to 256 characters. */
export function validateGroup(group: unknown): string {
  if (typeof group !== 'string' || group.length === 0 || group.length > 256) {
    throw new InvalidArgumentError(`group must be a string of 1 to 256 characters, got ${JSON.stringify(group)}`);
  }
  return group;
}

/** Job ids are subject tokens and KV keys: letters, digits, "_", "-", "=" and ":"-free. */
const JOB_ID = /^[A-Za-z0-9_=-]+$/;

export function validateJobId(id: string): string {
  if (typeof id !== 'string' || !JOB_ID.test(id) || id.length > 200) {
    throw new InvalidArgumentError(`invalid job id ${JSON.stringify(id)}: use letters, digits, "_", "-" and "=" (at most 200)`);
  }
  return id;
}
