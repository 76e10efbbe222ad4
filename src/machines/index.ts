import type { AnyStateMachine } from 'xstate';
import { connectionMachine } from './connection.js';
import { serviceMachine } from './service.js';
import { supervisorMachine } from './supervisor.js';
import { workerMachine } from './worker.js';
import { leaderMachine } from './leader.js';
import { schedulerMachine } from './scheduler.js';

export * from './connection.js';
export * from './service.js';
export * from './supervisor.js';
export * from './worker.js';
export * from './leader.js';
export * from './scheduler.js';

/** Every machine naq runs, by name: what `naq machines` prints. */
export const MACHINES: Record<string, AnyStateMachine> = {
  supervisor: supervisorMachine,
  connection: connectionMachine,
  service: serviceMachine,
  worker: workerMachine,
  scheduler: schedulerMachine,
  leader: leaderMachine,
};
