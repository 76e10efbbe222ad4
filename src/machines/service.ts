import { assign, enqueueActions, fromCallback, fromPromise, sendParent, setup, type EventObject } from 'xstate';
import { notProvided as provideLater, type ConnectionChange } from './shared.js';
import { ActorUnavailableError, errorInfo, type ErrorInfo } from '../core/errors.js';
import type { ReplyTo } from '../core/ask.js';
import type { ConnectionHandle } from './connection.js';

/**
 * The lifecycle every service actor (streams, kv, and later events, jobs) shares:
 *
 *   starting (setup: ensure its streams / buckets) → ready ⇄ (online | offline) → stopping → stopped
 *                                                    ↘ failed
 *
 * Requests are forwarded to the provided `handler` callback actor, which serves them
 * concurrently and answers each `replyTo`; outside `ready` a request is refused at once with
 * a typed error, never left hanging. A service that fails ends in `failed`, and the
 * supervisor restarts it.
 */

export interface ServiceInput {
  name: string;
  connection: ConnectionHandle;
}

/** Any event with a reply target is a request for the handler. */
export interface ServiceRequest extends EventObject {
  replyTo: ReplyTo<unknown>;
}

export type ServiceControlEvent =
  | { type: 'STOP' }
  | ConnectionChange;

export type ServiceEvent = ServiceControlEvent | ServiceRequest;

/** Sent to the parent (the supervisor) once setup is complete. */
export interface ServiceReadyEvent {
  type: 'SERVICE_READY';
  id: string;
}

export interface ServiceContext {
  name: string;
  connection: ConnectionHandle;
  online: boolean;
  error: ErrorInfo | null;
}

export type ServiceOutput = { status: 'stopped' } | { status: 'failed'; error: ErrorInfo | null };

const notProvided = (name: string) => provideLater('service machine', name);

function isRequest(event: EventObject): event is ServiceRequest {
  const replyTo = (event as Partial<ServiceRequest>).replyTo;
  return typeof replyTo === 'object' && replyTo !== null && typeof replyTo.send === 'function';
}

export const serviceMachine = setup({
  types: {
    context: {} as ServiceContext,
    events: {} as ServiceEvent,
    input: {} as ServiceInput,
    output: {} as ServiceOutput,
  },
  actors: {
    setup: fromPromise<void, ServiceInput>(notProvided('setup')),
    handler: fromCallback<EventObject, ServiceInput>(notProvided('handler')),
    teardown: fromPromise<void, ServiceInput>(async () => {}),
  },
  actions: {
    refuse: (_, params: { event: EventObject; reason: string; service: string }) => {
      if (isRequest(params.event)) {
        params.event.replyTo.send({
          type: 'reply',
          ok: false,
          error: new ActorUnavailableError(params.service, params.reason),
        });
      }
    },
    forward: enqueueActions(({ enqueue, event }) => {
      if (isRequest(event)) enqueue.sendTo('handler', event);
    }),
  },
  guards: {
    isRequest: ({ event }) => isRequest(event),
  },
}).createMachine({
  id: 'service',
  context: ({ input }) => ({ name: input.name, connection: input.connection, online: true, error: null }),
  initial: 'starting',
  on: {
    DISCONNECTED: { actions: assign({ online: false }) },
    RECONNECTED: { actions: assign({ online: true, connection: ({ event }) => (event as { connection: ConnectionHandle }).connection }) },
    CONNECTED: { actions: assign({ online: true, connection: ({ event }) => (event as { connection: ConnectionHandle }).connection }) },
  },
  states: {
    starting: {
      invoke: {
        src: 'setup',
        input: ({ context }) => ({ name: context.name, connection: context.connection }),
        onDone: {
          target: 'ready',
          actions: sendParent(({ context }): ServiceReadyEvent => ({ type: 'SERVICE_READY', id: context.name })),
        },
        onError: { target: 'failed', actions: assign({ error: ({ event }) => errorInfo(event.error) }) },
      },
      on: {
        STOP: 'stopped',
        '*': {
          guard: 'isRequest',
          actions: { type: 'refuse', params: ({ context, event }) => ({ event, reason: 'is still starting', service: context.name }) },
        },
      },
    },
    ready: {
      invoke: {
        id: 'handler',
        src: 'handler',
        input: ({ context }) => ({ name: context.name, connection: context.connection }),
      },
      on: {
        STOP: 'stopping',
        // Exact matches above win over the wildcard, so control events are never forwarded.
        '*': { guard: 'isRequest', actions: 'forward' },
      },
    },
    stopping: {
      invoke: {
        src: 'teardown',
        input: ({ context }) => ({ name: context.name, connection: context.connection }),
        onDone: 'stopped',
        onError: 'stopped',
      },
      on: {
        '*': {
          guard: 'isRequest',
          actions: { type: 'refuse', params: ({ context, event }) => ({ event, reason: 'is stopping', service: context.name }) },
        },
      },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => (context.error ? { status: 'failed', error: context.error } : { status: 'stopped' }),
});

export type ServiceMachine = typeof serviceMachine;
