/**
 * naq's public entry: `createNaq()` for the whole runtime; the config helpers; the errors; the
 * types of jobs, records, schedules and events; the machines and their NATS-backed logic for
 * hosts that run naq's actors inside their own XState system, with the message types each
 * actor accepts. Nothing internal: what a host may need beyond this is in `naq/internals`
 * (src/internals.ts), which promises no stability.
 */
export { createNaq, type CreateNaqOptions, type HealthReport, type ActorHealth, type Naq, type StartOptions, type JobData, type JobResult } from './naq.js';
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
  type LogLevel,
} from './config/index.js';
export { createLogger, type Logger } from './core/log.js';
export { loadHandlers } from './actors/worker/handlers-module.js';
export { loadSandboxedHandlers, SandboxPool, SandboxCrashError, SandboxClosedError, type SandboxedHandlers, type SandboxPoolOptions, type SandboxStats } from './actors/worker/sandbox.js';
export { stateName } from './core/state-name.js';

// Errors: every one has a stable `code`.
export * from './core/errors.js';
export { JobFailedError } from './actors/jobs/reads.js';
export { JobTimeoutError, JobCancelledError, RateLimitedError, type Handler, type Handlers, type JobContext } from './actors/worker/handler.js';
export type { Middleware, MiddlewareJob, Next } from './actors/worker/middleware.js';
export { ResultNotSerializableError, ResultTooLargeError, ProgressNotSerializableError, ProgressTooLargeError } from './actors/worker/outcome.js';

// Jobs, schedules and events as users see them (docs/wire-format.md).
export {
  WIRE_VERSION,
  type JobMessage,
  type JobRecord,
  type JobOptions,
  type JobStatus,
  type BackoffOptions,
  type AttemptRecord,
  type DeadLetter,
  type WorkerInfo,
  type QueueStats,
  type EnqueueItem,
} from './model/job.js';
export { type ScheduleRecord, type ScheduleSpec, type ScheduleOptions, type ScheduleStatus } from './model/schedule.js';
export { ON_FAILURE, MAX_FAILED_IDS, type FlowSpec, type FlowIds, type OnFailure, type BatchOptions, type BatchCompletion, type BatchSummary, type FlowRecord, type ChildNotice } from './model/flow.js';
export type { FlowNode, BatchStatus } from './actors/jobs/flow-reads.js';
export { DEDUPE_MODES, type DedupeOptions, type DedupeMode, type DedupeRecord } from './model/dedupe.js';
export { EVENT_TYPES, type NaqEvent, type NaqEventType, type StoredEvent } from './model/event.js';
export type { EventFilter, HistoryFilter, StatsFilter, EventStats, EventSubscription } from './actors/events/queries.js';
export type { EventLogCounters } from './actors/events/buffer.js';
export { validateQueue, validateJobId } from './model/layout.js';
export { LIST_STATES, type ListState, type ListFilter, type JobPage, type JobRow } from './model/job-index.js';
export type { RetryFilter, RetryOutcome, CleanFilter } from './actors/jobs/bulk.js';

// The machines, their NATS-backed logic, and how to talk to the actors.
export * from './machines/index.js';
export { ask, answer, type Reply, type ReplyTo, type AskOptions } from './core/ask.js';
export { StreamsClient, KvClient } from './actors/clients.js';
export { naqSupervisor, servicesForRoles, supervisorInput } from './actors/system.js';
export { natsConnectionLogic, connectOptions, connectionSettings, natsOf, NatsHandle, type ConnectionRegistry } from './actors/nats/connection.js';
export { serviceLogic, type ServiceDefinition } from './actors/service-logic.js';
export { streamsLogic, STREAMS_REQUESTS, type StreamsRequest, type StreamMessage } from './actors/nats/streams.js';
export type { WantedStream } from './actors/nats/jetstream.js';
export { kvLogic, KV_REQUESTS, type KvRequest, type KvRecord, type KvWatchHandle, type BucketOptions } from './actors/nats/kv.js';
export { eventsLogic, EVENTS_REQUESTS, type EventsRequest } from './actors/events/service.js';
export { jobsLogic, JOBS_REQUESTS, type JobsRequest } from './actors/jobs/service.js';
export { workerLogic } from './actors/worker/logic.js';
export { schedulerLogic } from './actors/scheduler/logic.js';
export { startInspector, replayRecording, type InspectorOptions, type RunningInspector, type RecordedInspectionEvent } from './inspect/inspector.js';
export { machineToJSON, machineToMermaid, exportMachines, mermaidBlocks } from './inspect/machine-export.js';
export { startNatsServer, isNatsReachable, findNatsServerBinary, type NatsServerProcess } from './nats-server/process.js';
