/**
 * `naq/internals`: the building blocks behind the public entry, for hosts and tools that need
 * one (a custom worker loop, a test double, a benchmark). Nothing here is covered by semver:
 * names and shapes change with the code. Prefer `naq` (src/index.ts) wherever it suffices.
 */
export { NaqContext, contextOf } from './actors/nats/context.js';
export { JobStorage, type JobStorageDeps } from './actors/nats/storage.js';
export { AsyncPublisher, PublishRejectedError, PublishTimeoutError, NoStreamError, type PubAck, type PublishOptions } from './actors/nats/publisher.js';
export { ensureStream, reportDrift, type EnsureStreamOptions, type RefusedSetting } from './actors/nats/jetstream.js';
export { BucketPool } from './actors/nats/bucket-pool.js';
export { enqueue, enqueueBulk, publishJob } from './actors/jobs/enqueue.js';
export { getJob, pendingMessage, waitFor } from './actors/jobs/reads.js';
export { cancel, retryDead, purgeQueue, listWorkers, queueStats, listQueues } from './actors/jobs/admin.js';
export { DependencyResolver } from './actors/jobs/dependencies.js';
export { QueueWorker, type QueueWorkerSettings } from './actors/worker/queue-worker.js';
export { JobPath, type JobIO, type JobPathOptions } from './actors/worker/job-path.js';
export { deliveryCount, type Delivery } from './actors/worker/delivery.js';
export { ScheduleStore } from './actors/scheduler/store.js';
export { ScheduleDispatcher } from './actors/scheduler/dispatcher.js';
export { EventBuffer, counters, type EventLog } from './actors/events/buffer.js';
export { history, subscribe, stats } from './actors/events/queries.js';
export { ensureEventsStream } from './actors/events/stream.js';
export { layout, type Layout } from './model/layout.js';
export { decodeJob, buildJob, retryDelay, recordFromMessage } from './model/job.js';
export { encodeBatch, decodeBatch } from './model/event.js';
export { buildSchedule, nextRun } from './model/schedule.js';
export { systemClock, type Clock } from './core/clock.js';
