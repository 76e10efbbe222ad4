import type { AnyStateMachine } from 'xstate';
import { connectionMachine } from './connection.js';
import { serviceMachine } from './service.js';
import { supervisorMachine } from './supervisor.js';
import { workerMachine } from './worker.js';

export * from './connection.js';
export * from './service.js';
export * from './supervisor.js';
export * from './worker.js';

/** Every machine naq runs, by name: what `naq machines` prints. */
export const MACHINES: Record<string, AnyStateMachine> = {
  supervisor: supervisorMachine,
  connection: connectionMachine,
  service: serviceMachine,
  worker: workerMachine,
};
