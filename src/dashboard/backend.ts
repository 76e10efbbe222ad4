/**
 * Every call the dashboard makes, behind one small interface, so the HTTP layer is tested
 * against a fake and the one adapter from `Naq` is the only place that knows the library.
 */
import type { Naq } from '../naq.js';
import type { HealthReport } from '../naq.js';
import type { JobRecord, QueueStats, WorkerInfo } from '../model/job.js';
import type { ScheduleRecord } from '../model/schedule.js';
import type { StoredEvent } from '../model/event.js';
import type { EventFilter, EventSubscription, HistoryFilter } from '../actors/events/queries.js';
import { NaqError } from '../core/errors.js';

export const LIST_STATES = ['pending', 'delayed', 'waiting', 'active', 'retrying', 'completed', 'failed', 'dead', 'cancelled'] as const;
export type ListState = (typeof LIST_STATES)[number];

export interface JobRow {
  id: string;
  name: string;
  queue: string;
  state: ListState;
  /** When it entered this state, ms since the epoch. */
  at: number;
  enqueuedAt: number;
  attempts: number;
  maxAttempts: number;
  error?: string;
  deadSeq?: number;
}

export interface ListJobsFilter {
  queue?: string;
  state?: ListState;
  name?: string;
  limit?: number;
  cursor?: string;
}

export interface JobPage {
  jobs: JobRow[];
  /** null: no more. */
  cursor: string | null;
}

export interface RetryJobsFilter {
  queue: string;
  state: 'dead' | 'failed';
  name?: string;
}

export interface CleanJobsFilter {
  queue: string;
  state: 'completed' | 'failed' | 'cancelled' | 'dead';
  olderThanMs: number;
  name?: string;
}

export interface JobLogLine {
  ts: number;
  level: string;
  msg: string;
}

/** A job record as the dashboard reads it: `logs` once the library keeps them. */
export type DashboardJob = JobRecord & { logs?: JobLogLine[] };

/** Who holds the scheduler lease, read from the leader bucket (any process can). */
export interface LeaderLease {
  candidateId: string;
  host?: string;
  pid?: number;
  /** When the lease was last written (taken or renewed). */
  ts?: number;
}

export interface DashboardBackend {
  listQueues(): Promise<QueueStats[]>;
  queueStats(queue: string): Promise<QueueStats>;
  listJobs(filter: ListJobsFilter): Promise<JobPage>;
  getJob(id: string): Promise<DashboardJob | null>;
  retryJobs(filter: RetryJobsFilter): Promise<{ retried: number }>;
  cleanJobs(filter: CleanJobsFilter): Promise<{ removed: number }>;
  cancel(id: string): Promise<unknown>;
  retryDead(id: string): Promise<unknown>;
  promote(id: string): Promise<unknown>;
  removeJob(id: string): Promise<unknown>;
  pauseQueue(queue: string): Promise<unknown>;
  resumeQueue(queue: string): Promise<unknown>;
  listWorkers(): Promise<WorkerInfo[]>;
  listSchedules(): Promise<ScheduleRecord[]>;
  pauseSchedule(id: string): Promise<unknown>;
  resumeSchedule(id: string): Promise<unknown>;
  removeSchedule(id: string): Promise<unknown>;
  /** Enqueues the schedule's job now, outside its timing (the schedule itself is unchanged). */
  runScheduleNow(id: string): Promise<{ jobId: string }>;
  history(filter: HistoryFilter): Promise<StoredEvent[]>;
  subscribe(filter: EventFilter): Promise<EventSubscription>;
  health(): HealthReport;
  isLeader(): boolean;
  leaderLease(): Promise<LeaderLease | null>;
  /** Prometheus text, when this process keeps metrics. */
  metricsText(): Promise<{ contentType: string; body: string } | null>;
}

/** The job listing methods, added to `Naq` in the same release: typed here so an older `Naq` fails clearly. */
interface JobListing {
  listJobs(filter: ListJobsFilter): Promise<JobPage>;
  retryJobs(filter: RetryJobsFilter): Promise<{ retried: number }>;
  cleanJobs(filter: CleanJobsFilter): Promise<{ removed: number }>;
}

function listing(naq: object, method: keyof JobListing): JobListing {
  if (typeof (naq as Partial<JobListing>)[method] !== 'function') {
    throw new NaqError('DASHBOARD_UNSUPPORTED', `this naq has no ${method}: the job listing needs a newer naq`);
  }
  return naq as JobListing;
}

export function backendFromNaq(naq: Naq<any>): DashboardBackend {
  return {
    listQueues: () => naq.listQueues(),
    queueStats: (queue) => naq.queueStats(queue),
    listJobs: async (filter) => listing(naq, 'listJobs').listJobs(filter),
    getJob: (id) => naq.getJob(id) as Promise<DashboardJob | null>,
    retryJobs: async (filter) => listing(naq, 'retryJobs').retryJobs(filter),
    cleanJobs: async (filter) => listing(naq, 'cleanJobs').cleanJobs(filter),
    cancel: (id) => naq.cancel(id),
    retryDead: (id) => naq.retryDead(id),
    promote: (id) => naq.promote(id),
    removeJob: (id) => naq.removeJob(id),
    pauseQueue: (queue) => naq.pauseQueue(queue),
    resumeQueue: (queue) => naq.resumeQueue(queue),
    listWorkers: () => naq.listWorkers(),
    listSchedules: () => naq.listSchedules(),
    pauseSchedule: (id) => naq.pauseSchedule(id),
    resumeSchedule: (id) => naq.resumeSchedule(id),
    removeSchedule: (id) => naq.removeSchedule(id),
    async runScheduleNow(id) {
      const schedule = await naq.getSchedule(id);
      if (!schedule) throw new NaqError('NOT_FOUND', `no schedule ${id}`);
      const jobId = await naq.enqueue(schedule.name, schedule.data as never, { ...schedule.opts, queue: schedule.queue });
      return { jobId };
    },
    history: (filter) => naq.events.history(filter),
    subscribe: (filter) => naq.events.subscribe(filter),
    health: () => naq.health(),
    isLeader: () => naq.isLeader(),
    async leaderLease() {
      const record = await naq.kv.get(`${naq.config.prefix}_leader`, 'scheduler');
      if (!record || record.operation !== 'PUT') return null;
      try {
        return JSON.parse(record.value) as LeaderLease;
      } catch {
        return null;
      }
    },
    async metricsText() {
      if (!naq.metrics) return null;
      return { contentType: naq.metrics.contentType, body: await naq.metrics.text() };
    },
  };
}
