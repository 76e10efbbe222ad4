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
import { NotFoundError } from '../core/errors.js';
import type { JobPage, ListFilter } from '../model/job-index.js';
import type { CleanFilter, RetryFilter, RetryOutcome } from '../actors/jobs/bulk.js';
import type { FlowNode } from '../actors/jobs/flow-reads.js';

export { LIST_STATES, type JobPage, type JobRow, type ListFilter as ListJobsFilter, type ListState } from '../model/job-index.js';
export type { CleanFilter as CleanJobsFilter, RetryFilter as RetryJobsFilter, RetryOutcome } from '../actors/jobs/bulk.js';

/** A job record as the dashboard reads it (with the lines its handler logged). */
export type DashboardJob = JobRecord;

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
  listJobs(filter: ListFilter): Promise<JobPage>;
  getJob(id: string): Promise<DashboardJob | null>;
  /** The flow under a job, at most `maxChildren` children per node and `maxNodes` in all; null when it has no children. */
  getFlow(id: string, limits: { maxChildren: number; maxNodes: number }): Promise<FlowNode | null>;
  retryJobs(filter: RetryFilter): Promise<RetryOutcome>;
  cleanJobs(filter: CleanFilter): Promise<{ removed: number }>;
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

export function backendFromNaq(naq: Naq<any>): DashboardBackend {
  return {
    listQueues: () => naq.listQueues(),
    queueStats: (queue) => naq.queueStats(queue),
    listJobs: (filter) => naq.listJobs(filter),
    async getJob(id) {
      const record = await naq.getJob(id);
      if (!record || record.data !== undefined) return record;
      // The record does not keep the data; the message, schedule or dead letter may.
      const kept = await naq.jobData(id).catch(() => null);
      return kept ? { ...record, data: kept.data } : record;
    },
    async getFlow(id, limits) {
      const flow = await naq.getFlow(id, limits).catch((error: unknown) => {
        if (error instanceof NotFoundError) return null;
        throw error;
      });
      return flow?.children ? flow : null;
    },
    retryJobs: (filter) => naq.retryJobs(filter),
    cleanJobs: (filter) => naq.cleanJobs(filter),
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
      if (!schedule) throw new NotFoundError(`schedule ${id}`);
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
