import type { ReplyTo } from '../ask.js';
import type { NaqConfig } from '../config.js';
import type { JobRecord } from '../job.js';
import type { Logger } from '../log.js';
import { DependencyResolver } from './dependencies.js';
import { jobsRuntimeFor, type QueueStats, type WorkerInfo } from './jobs-runtime.js';
import { serviceLogic } from './service-logic.js';

/** Control-plane requests the jobs actor accepts (enqueue and reads take the direct path). */
export type JobsRequest =
  | { type: 'jobs.cancel'; id: string; replyTo: ReplyTo<{ id: string; status: string }> }
  | { type: 'jobs.retryDead'; id: string; replyTo: ReplyTo<{ id: string }> }
  | { type: 'jobs.purgeQueue'; queue: string; replyTo: ReplyTo<{ purged: number }> }
  | { type: 'jobs.queueStats'; queue: string; replyTo: ReplyTo<QueueStats> }
  | { type: 'jobs.listQueues'; replyTo: ReplyTo<QueueStats[]> }
  | { type: 'jobs.listWorkers'; replyTo: ReplyTo<WorkerInfo[]> }
  | { type: 'jobs.getJob'; id: string; replyTo: ReplyTo<JobRecord | null> };

export const JOBS_REQUESTS: ReadonlyArray<JobsRequest['type']> = [
  'jobs.cancel',
  'jobs.retryDead',
  'jobs.purgeQueue',
  'jobs.queueStats',
  'jobs.listQueues',
  'jobs.listWorkers',
  'jobs.getJob',
];

/** The jobs service actor: ensures the job layer's streams and buckets, serves control requests, resolves dependencies. */
export function jobsLogic(config: NaqConfig, log: Logger) {
  return serviceLogic<JobsRequest>({
    accepts: JOBS_REQUESTS,
    setup: (nc) => jobsRuntimeFor(nc, config, log).ensureLayout(),
    background: (nc) => {
      const resolver = new DependencyResolver(jobsRuntimeFor(nc, config, log), log.child({ actor: 'jobs' }));
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
    handle: (request, nc) => {
      const rt = jobsRuntimeFor(nc, config, log);
      switch (request.type) {
        case 'jobs.cancel':
          return rt.cancel(request.id);
        case 'jobs.retryDead':
          return rt.retryDead(request.id);
        case 'jobs.purgeQueue':
          return rt.purgeQueue(request.queue);
        case 'jobs.queueStats':
          return rt.queueStats(request.queue);
        case 'jobs.listQueues':
          return rt.listQueues();
        case 'jobs.listWorkers':
          return rt.listWorkers();
        case 'jobs.getJob':
          return rt.getJob(request.id);
      }
    },
  });
}
