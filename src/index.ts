/**
 * naq as a library: `createNaq()` for the whole runtime, or the machines and their
 * NATS-backed logic for hosts that run naq's actors inside their own XState system.
 */
export { stateName } from './state-name.js';
export { createNaq, type CreateNaqOptions, type HealthReport, type ActorHealth, type Naq, type StartOptions } from './naq.js';
export {
  loadConfig,
  resolveConfig,
  defaultConfig,
  redactConfig,
  configSecrets,
  natsServers,
  isNatsUrlConfigured,
  KNOWN_ENV_VARS,
  type NaqConfig,
  type NaqConfigInput,
  type Role,
} from './config.js';
export * from './errors.js';
export { ask, answer, type Reply, type ReplyTo, type AskOptions } from './ask.js';
export { StreamsClient, KvClient } from './clients.js';
export * from './machines/index.js';
export { natsConnectionLogic, connectOptions, connectionSettings, natsOf, NatsHandle, type ConnectionRegistry } from './actors/nats-connection.js';
export { streamsLogic, ensureStream, type StreamsRequest, type WantedStream, type StreamMessage } from './actors/streams.js';
export { kvLogic, BucketPool, type KvRequest, type KvRecord, type KvWatchHandle, type BucketOptions } from './actors/kv.js';
export { serviceLogic, type ServiceDefinition } from './actors/service-logic.js';
export { naqSupervisor, servicesForRoles, supervisorInput } from './actors/system.js';
export { startInspector, type InspectorOptions, type RunningInspector, type RecordedInspectionEvent } from './inspector.js';
export { machineToJSON, machineToMermaid, exportMachines, mermaidBlocks } from './machine-export.js';
export { startNatsServer, isNatsReachable, findNatsServerBinary, type NatsServerProcess } from './nats-server.js';
export { createLogger, type Logger } from './log.js';
export { jobsLogic, JOBS_REQUESTS, type JobsRequest } from './actors/jobs.js';
export { workerLogic } from './actors/worker.js';
export {
  JobsRuntime,
  JobFailedError,
  jobsRuntimeFor,
  type EnqueueItem,
  type QueueStats,
  type WorkerInfo,
  type DeadLetter,
} from './actors/jobs-runtime.js';
export { QueueWorker, JobTimeoutError, JobCancelledError, type Handler, type Handlers, type JobContext } from './actors/queue-worker.js';
export { AsyncPublisher, type PubAck } from './actors/publisher.js';
export { loadHandlers } from './handlers-module.js';
export { layout, validateQueue, validateJobId, type Layout } from './layout.js';
export {
  WIRE_VERSION,
  decodeJob,
  buildJob,
  retryDelay,
  type JobMessage,
  type JobRecord,
  type JobOptions,
  type JobStatus,
  type BackoffOptions,
  type AttemptRecord,
} from './job.js';
export type { JobData, JobResult } from './naq.js';
export { eventsLogic, EVENTS_REQUESTS, type EventsRequest } from './actors/events.js';
export {
  EVENT_TYPES,
  eventLogFor,
  history as eventHistory,
  subscribe as subscribeEvents,
  stats as eventStats,
  type NaqEvent,
  type NaqEventType,
  type StoredEvent,
  type EventFilter,
  type HistoryFilter,
  type StatsFilter,
  type EventStats,
  type EventSubscription,
  type EventLog,
} from './event-log.js';
export { schedulerLogic, ScheduleStore, ScheduleDispatcher } from './actors/scheduler.js';
export { buildSchedule, nextRun, type ScheduleRecord, type ScheduleSpec, type ScheduleOptions, type ScheduleStatus } from './schedule.js';
