import { assign, fromCallback, fromPromise, sendParent, sendTo, setup } from 'xstate';
import { notProvided as provideLater, type ConnectionChange } from './shared.js';
import type { ErrorInfo } from '../core/errors.js';
import type { ConnectionHandle } from './connection.js';
import type { ServiceReadyEvent } from './service.js';

/**
 * A worker consuming one queue. Control plane only: the per-job path is plain async code in
 * the provided `processor` (rule 4: no actor per job).
 *
 *   starting (ensure the queue's consumer) → active: serving (running ⇄ paused, open ⇄ held,
 *                                                    heartbeat) → draining → stopped
 *
 * Pauses pulling on DISCONNECTED and resumes on RECONNECTED. Independently, an operator's pause
 * of the queue (`naq queue pause`, seen by the processor as QUEUE.PAUSED) holds it until
 * QUEUE.RESUMED: the processor pulls only while the link is up and the queue is not held, and
 * running jobs finish either way. STOP drains: the processor stops
 * pulling and lets in-flight jobs finish; after `drainGraceMs` the rest are NAKed so another
 * worker gets them at once; then the heartbeat is removed and the actor ends.
 */
export interface WorkerInput {
  name: string;
  queue: string;
  connection: ConnectionHandle;
  heartbeatMs: number;
  drainGraceMs: number;
}

export interface WorkerContext extends WorkerInput {
  error: ErrorInfo | null;
}

/** Events the worker accepts (from the supervisor and from its processor). */
export type WorkerEvent =
  | { type: 'STOP' }
  | ConnectionChange
  | { type: 'QUEUE.PAUSED' }
  | { type: 'QUEUE.RESUMED' }
  | { type: 'PROCESSOR.DRAINED' }
  | { type: 'PROCESSOR.FAILED'; error: ErrorInfo };

/** Commands the machine sends its processor. */
export type ProcessorCommand =
  | { type: 'PAUSE' }
  | { type: 'RESUME' }
  | { type: 'HOLD' }
  | { type: 'RELEASE' }
  | { type: 'HEARTBEAT' }
  | { type: 'DRAIN' }
  | { type: 'NAK_REST' };

export type WorkerOutput = { status: 'stopped' } | { status: 'failed'; error: ErrorInfo | null };

const notProvided = (name: string) => provideLater('worker machine', name);

export const workerMachine = setup({
  types: {
    context: {} as WorkerContext,
    events: {} as WorkerEvent,
    input: {} as WorkerInput,
    output: {} as WorkerOutput,
  },
  actors: {
    setup: fromPromise<void, WorkerInput>(notProvided('setup')),
    processor: fromCallback<ProcessorCommand, WorkerInput>(notProvided('processor')),
  },
  delays: {
    heartbeat: ({ context }) => context.heartbeatMs,
    drainGrace: ({ context }) => context.drainGraceMs,
  },
}).createMachine({
  id: 'worker',
  context: ({ input }) => ({ ...input, error: null }),
  initial: 'starting',
  states: {
    starting: {
      invoke: {
        src: 'setup',
        input: ({ context }) => context,
        onDone: {
          target: 'active',
          actions: sendParent(({ context }): ServiceReadyEvent => ({ type: 'SERVICE_READY', id: context.name })),
        },
        onError: {
          target: 'failed',
          actions: assign({ error: ({ event }) => ({ name: 'Error', message: (event.error as Error)?.message ?? String(event.error) }) }),
        },
      },
      on: { STOP: 'stopped' },
    },
    active: {
      invoke: { id: 'processor', src: 'processor', input: ({ context }) => context },
      initial: 'serving',
      on: {
        'PROCESSOR.FAILED': { target: 'failed', actions: assign({ error: ({ event }) => event.error }) },
      },
      states: {
        serving: {
          type: 'parallel',
          on: { STOP: 'draining' },
          states: {
            flow: {
              initial: 'running',
              states: {
                running: {
                  on: { DISCONNECTED: { target: 'paused', actions: sendTo('processor', { type: 'PAUSE' }) } },
                },
                paused: {
                  on: {
                    RECONNECTED: { target: 'running', actions: sendTo('processor', { type: 'RESUME' }) },
                    CONNECTED: { target: 'running', actions: sendTo('processor', { type: 'RESUME' }) },
                  },
                },
              },
            },
            hold: {
              initial: 'open',
              states: {
                open: { on: { 'QUEUE.PAUSED': { target: 'held', actions: sendTo('processor', { type: 'HOLD' }) } } },
                held: { on: { 'QUEUE.RESUMED': { target: 'open', actions: sendTo('processor', { type: 'RELEASE' }) } } },
              },
            },
            heartbeat: {
              initial: 'waiting',
              states: {
                waiting: {
                  after: { heartbeat: { target: 'waiting', reenter: true, actions: sendTo('processor', { type: 'HEARTBEAT' }) } },
                },
              },
            },
          },
        },
        draining: {
          entry: sendTo('processor', { type: 'DRAIN' }),
          after: { drainGrace: { actions: sendTo('processor', { type: 'NAK_REST' }) } },
          on: { 'PROCESSOR.DRAINED': '#worker.stopped' },
        },
      },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => (context.error ? { status: 'failed', error: context.error } : { status: 'stopped' }),
});

export type WorkerMachine = typeof workerMachine;
