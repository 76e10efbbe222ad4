import type { NaqConfig, Role } from '../config/index.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { supervisorMachine, type ServiceName, type SupervisorInput } from '../machines/supervisor.js';
import { eventsLogic } from './events/service.js';
import { jobsLogic, type JobsOptions } from './jobs/service.js';
import { kvLogic } from './nats/kv.js';
import { connectionSettings, natsConnectionLogic, type ConnectionRegistry } from './nats/connection.js';
import type { Handlers } from './worker/queue-worker.js';
import { streamsLogic } from './nats/streams.js';
import type { JobMetrics } from '../metrics/metrics.js';
import { workerLogic } from './worker/logic.js';
import { candidateId, schedulerLogic } from './scheduler/logic.js';

/**
 * Which service actors a process runs for its roles, in start order. The worker role brings
 * the scheduler too (`worker.fireSchedules`, on by default): delayed jobs and schedules then
 * fire wherever jobs run, one leader at a time.
 */
export function servicesForRoles(roles: readonly Role[], config: NaqConfig): ServiceName[] {
  const services: ServiceName[] = ['streams', 'kv', 'events', 'jobs'];
  for (const role of roles) {
    if (role === 'producer') continue;
    if (role === 'worker') {
      for (const queue of config.worker.queues) services.push(`worker:${queue}`);
      if (config.worker.fireSchedules && !services.includes('scheduler')) services.push('scheduler');
      continue;
    }
    if (role === 'scheduler') {
      if (!services.includes('scheduler')) services.push('scheduler');
      continue;
    }
    throw new InvalidArgumentError(`unknown role "${role}" (available: producer, worker, scheduler)`);
  }
  return services;
}

export function supervisorInput(config: NaqConfig, services: ServiceName[]): SupervisorInput {
  const serviceInput: Record<string, Record<string, unknown>> = {};
  for (const id of services) {
    if (id.startsWith('worker:')) {
      serviceInput[id] = { queue: id.slice('worker:'.length), heartbeatMs: config.worker.heartbeatMs, drainGraceMs: config.worker.drainGraceMs };
    }
    if (id === 'scheduler') {
      serviceInput[id] = {
        candidateId: candidateId(),
        leader: { ttlMs: config.scheduler.leaderTtlMs, renewMs: config.scheduler.renewMs, retryMs: config.scheduler.electionRetryMs },
      };
    }
  }
  return {
    services,
    serviceInput,
    settings: {
      maxRestarts: config.supervisor.maxRestarts,
      restartWindowMs: config.supervisor.restartWindowMs,
      restartDelayMs: config.supervisor.restartDelayMs,
      restartMaxDelayMs: config.supervisor.restartMaxDelayMs,
      stopTimeoutMs: config.supervisor.stopTimeoutMs,
    },
    connection: { settings: connectionSettings(config) },
  };
}

/** The supervisor machine with every child's real, NATS-backed logic provided. */
export function naqSupervisor(config: NaqConfig, registry: ConnectionRegistry, handlers: Handlers, log: Logger, jobs: JobsOptions = {}, metrics?: JobMetrics) {
  return supervisorMachine.provide({
    actors: {
      connection: natsConnectionLogic(config, registry, log),
      streams: streamsLogic(),
      kv: kvLogic(),
      events: eventsLogic(config, log),
      jobs: jobsLogic(log, jobs),
      worker: workerLogic(config, handlers, log, metrics),
      scheduler: schedulerLogic(config, log),
    } as never,
  });
}
