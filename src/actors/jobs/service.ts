import type { ReplyTo } from '../../core/ask.js';
import type { JobRecord } from '../../model/job.js';
import type { Logger } from '../../core/log.js';
import { DependencyResolver } from './dependencies.js';
import type { QueueStats, WorkerInfo } from '../../model/job.js';
import { cancel, listQueues, listWorkers, purgeQueue, queueStats, retryDead, setGroupLimit, setQueueLimit, setQueuePaused } from './admin.js';
import type { GroupLimit, RateLimit } from '../../model/queue-settings.js';
import { getJob } from './reads.js';
import { cleanJobs, retryJobs, type CleanFilter, type RetryFilter, type RetryOutcome } from './bulk.js';
import { changeDelay, promote, removeJob } from './operate.js';
import { serviceLogic } from '../service-logic.js';

/** Control-plane requests the jobs actor accepts (enqueue and reads take the direct path). */
export type JobsRequest =
  | { type: 'jobs.cancel'; id: string; replyTo: ReplyTo<{ id: string; status: string }> }
  | { type: 'jobs.retryDead'; id: string; replyTo: ReplyTo<{ id: string }> }
  | { type: 'jobs.purgeQueue'; queue: string; replyTo: ReplyTo<{ purged: number }> }
  | { type: 'jobs.promote'; id: string; replyTo: ReplyTo<{ id: string; promoted: true }> }
  | { type: 'jobs.removeJob'; id: string; replyTo: ReplyTo<{ id: string; removed: string }> }
  | { type: 'jobs.changeDelay'; id: string; delayMs: number; replyTo: ReplyTo<{ id: string; runAt: number }> }
  | { type: 'jobs.setQueuePaused'; queue: string; paused: boolean; replyTo: ReplyTo<{ queue: string; paused: boolean }> }
  | { type: 'jobs.setQueueLimit'; queue: string; limit: RateLimit | null; replyTo: ReplyTo<{ queue: string; limit: RateLimit | null }> }
  | { type: 'jobs.setGroupLimit'; queue: string; limit: GroupLimit | null; replyTo: ReplyTo<{ queue: string; groups: GroupLimit | null }> }
  | { type: 'jobs.queueStats'; queue: string; replyTo: ReplyTo<QueueStats> }
  | { type: 'jobs.listQueues'; replyTo: ReplyTo<QueueStats[]> }
  | { type: 'jobs.listWorkers'; replyTo: ReplyTo<WorkerInfo[]> }
  | { type: 'jobs.getJob'; id: string; replyTo: ReplyTo<JobRecord | null> }
  | { type: 'jobs.retryJobs'; filter: RetryFilter; replyTo: ReplyTo<RetryOutcome> }
  | { type: 'jobs.cleanJobs'; filter: CleanFilter; replyTo: ReplyTo<{ removed: number }> };

export const JOBS_REQUESTS: ReadonlyArray<JobsRequest['type']> = [
  'jobs.cancel',
  'jobs.retryDead',
  'jobs.purgeQueue',
  'jobs.promote',
  'jobs.removeJob',
  'jobs.changeDelay',
  'jobs.setQueuePaused',
  'jobs.setQueueLimit',
  'jobs.setGroupLimit',
  'jobs.queueStats',
  'jobs.listQueues',
  'jobs.listWorkers',
  'jobs.getJob',
  'jobs.retryJobs',
  'jobs.cleanJobs',
];

export interface JobsOptions {
  /**
   * Release jobs waiting on dependencies (default true). Off in a process that lives for one
   * command: it would start a watch only to tear it down, and release nothing meanwhile.
   */
  resolveDependencies?: boolean;
}

/** The jobs service actor: ensures the job layer's streams and buckets, serves control requests, resolves dependencies. */
export function jobsLogic(log: Logger, options: JobsOptions = {}) {
  return serviceLogic<JobsRequest>({
    accepts: JOBS_REQUESTS,
    setup: (ctx) => ctx.storage.ensureLayout(),
    background: (ctx) => {
      if (options.resolveDependencies === false) return () => {};
      const nc = ctx.nc;
      const resolver = new DependencyResolver(ctx, log.child({ actor: 'jobs' }));
      let stopped = false;
      resolver.start().catch((error: unknown) => {
        // A one-shot command that stops while the watch is still starting is not a failure.
        if (stopped || nc.isClosed() || nc.isDraining()) return;
        log.warn({ err: error }, 'dependency resolver did not start');
      });
      return () => {
        stopped = true;
        resolver.stop();
      };
    },
    handle: (request, ctx) => {
      switch (request.type) {
        case 'jobs.cancel':
          return cancel(ctx, request.id);
        case 'jobs.retryDead':
          return retryDead(ctx, request.id);
        case 'jobs.purgeQueue':
          return purgeQueue(ctx, request.queue);
        case 'jobs.promote':
          return promote(ctx, request.id);
        case 'jobs.removeJob':
          return removeJob(ctx, request.id);
        case 'jobs.changeDelay':
          return changeDelay(ctx, request.id, request.delayMs);
        case 'jobs.setQueuePaused':
          return setQueuePaused(ctx, request.queue, request.paused);
        case 'jobs.setQueueLimit':
          return setQueueLimit(ctx, request.queue, request.limit);
        case 'jobs.setGroupLimit':
          return setGroupLimit(ctx, request.queue, request.limit);
        case 'jobs.queueStats':
          return queueStats(ctx, request.queue);
        case 'jobs.listQueues':
          return listQueues(ctx);
        case 'jobs.listWorkers':
          return listWorkers(ctx);
        case 'jobs.getJob':
          return getJob(ctx, request.id);
        case 'jobs.retryJobs':
          return retryJobs(ctx, request.filter);
        case 'jobs.cleanJobs':
          return cleanJobs(ctx, request.filter);
      }
    },
  });
}
