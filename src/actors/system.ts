import type { NaqConfig, Role } from '../config.js';
import { InvalidArgumentError } from '../errors.js';
import { supervisorMachine, type ServiceName, type SupervisorInput } from '../machines/supervisor.js';
import { kvLogic } from './kv.js';
import { connectionSettings, natsConnectionLogic, type ConnectionRegistry } from './nats-connection.js';
import { streamsLogic } from './streams.js';

/** Which service actors a process runs for its roles, in start order. */
export function servicesForRoles(roles: readonly Role[]): ServiceName[] {
  const services: ServiceName[] = ['streams', 'kv'];
  for (const role of roles) {
    if (role !== 'producer') throw new InvalidArgumentError(`role "${role}" is not available in this version of naq (available: producer)`);
  }
  return services;
}

export function supervisorInput(config: NaqConfig, services: ServiceName[]): SupervisorInput {
  return {
    services,
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
export function naqSupervisor(config: NaqConfig, registry: ConnectionRegistry) {
  return supervisorMachine.provide({
    actors: {
      connection: natsConnectionLogic(config, registry),
      streams: streamsLogic(config),
      kv: kvLogic(config),
    } as never,
  });
}
