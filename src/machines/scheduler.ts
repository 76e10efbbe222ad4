import { assign, fromCallback, fromPromise, sendParent, sendTo, setup, type AnyStateMachine } from 'xstate';
import { notProvided as provideLater, type ConnectionChange } from './shared.js';
import type { ErrorInfo } from '../core/errors.js';
import type { ConnectionHandle } from './connection.js';
import { leaderMachine, type LeaderNotification, type LeaderSettings } from './leader.js';
import type { ServiceReadyEvent } from './service.js';

/**
 * The scheduler service: every scheduler process runs one, but only the leader fires.
 *
 *   starting (ensure buckets) → active: standby ⇄ leading (dispatcher fires due schedules)
 *                                       → stopping (the leader steps down) → stopped
 *
 * The `leader` child is the election machine; while this process leads, the provided
 * `dispatcher` watches the schedules and fires them on time.
 */
export interface SchedulerInput {
  name: string;
  connection: ConnectionHandle;
  candidateId: string;
  leader: LeaderSettings;
}

export interface SchedulerContext extends SchedulerInput {
  error: ErrorInfo | null;
}

export type SchedulerEvent =
  | { type: 'STOP' }
  | ConnectionChange
  | LeaderNotification
  | { type: 'DISPATCHER.FAILED'; error: ErrorInfo }
  | { type: `xstate.done.actor.${string}` };

const notProvided = (name: string) => provideLater('scheduler machine', name);

export const schedulerMachine = setup({
  types: {
    context: {} as SchedulerContext,
    events: {} as SchedulerEvent,
    input: {} as SchedulerInput,
  },
  actors: {
    /** Resolves with the leader settings that hold (the lease is the bucket's TTL, whoever made it). */
    setup: fromPromise<LeaderSettings | void, SchedulerInput>(notProvided('setup')),
    leader: leaderMachine as AnyStateMachine,
    dispatcher: fromCallback<{ type: string }, SchedulerInput>(notProvided('dispatcher')),
  },
}).createMachine({
  id: 'scheduler',
  context: ({ input }) => ({ ...input, error: null }),
  initial: 'starting',
  states: {
    starting: {
      invoke: {
        src: 'setup',
        input: ({ context }) => context,
        onDone: {
          target: 'active',
          actions: [
            assign({ leader: ({ context, event }) => event.output ?? context.leader }),
            sendParent(({ context }): ServiceReadyEvent => ({ type: 'SERVICE_READY', id: context.name })),
          ],
        },
        onError: {
          target: 'failed',
          actions: assign({ error: ({ event }) => ({ name: 'Error', message: (event.error as Error)?.message ?? String(event.error) }) }),
        },
      },
      on: { STOP: 'stopped' },
    },
    active: {
      invoke: {
        id: 'leader',
        systemId: 'leader',
        src: 'leader',
        input: ({ context }: { context: SchedulerContext }) => ({ settings: context.leader, candidateId: context.candidateId, connection: context.connection }),
      },
      initial: 'standby',
      on: {
        'DISPATCHER.FAILED': { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
      },
      states: {
        standby: {
          on: { LEADER_ELECTED: 'leading', STOP: 'stopping' },
        },
        leading: {
          invoke: { id: 'dispatcher', src: 'dispatcher', input: ({ context }) => context },
          on: { LEADER_LOST: 'standby', STOP: 'stopping' },
        },
        stopping: {
          entry: sendTo('leader', { type: 'STOP' }),
          after: { 5000: '#scheduler.stopped' },
          on: { 'xstate.done.actor.leader': '#scheduler.stopped' },
        },
      },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => (context.error ? { status: 'failed', error: context.error } : { status: 'stopped' }),
});

export type SchedulerMachine = typeof schedulerMachine;
