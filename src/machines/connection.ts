import { assign, enqueueActions, fromCallback, fromPromise, setup, type AnyActorRef } from 'xstate';
import { notProvided as provideLater, type ConnectionChange, type ConnectionHandle } from './shared.js';
import { backoffDelay } from '../core/backoff.js';
import { errorInfo, type ErrorInfo } from '../core/errors.js';

/**
 * The reconnection machine: owns the process's one NATS connection.
 *
 *   idle → connecting ⇄ waiting → online(connected ⇄ reconnecting) → closing → closed
 *                                   ↘ failed (attempts exhausted, auth refused, given up)
 *
 * The NATS client reconnects by itself (keeping subscriptions and buffering publishes); this
 * machine mirrors its status stream, enforces naq's own limits (initial-connect backoff,
 * reconnect give-up), and tells subscribers CONNECTED / DISCONNECTED / RECONNECTED.
 */

export type { ConnectionHandle } from './shared.js';

export interface ConnectionSettings {
  /** Initial connect attempts before failing; 0 = forever. */
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  jitter: number;
  /** Client reconnect attempts (each 'reconnecting' status) before failing; 0 = forever. */
  reconnectMaxAttempts: number;
  /** Time spent reconnecting before failing; 0 = never give up. */
  reconnectGiveUpAfterMs: number;
}

export interface ConnectionInput {
  settings: ConnectionSettings;
  /** Injected so jitter is reproducible in tests. */
  random?: () => number;
}

export interface ConnectionContext {
  settings: ConnectionSettings;
  random: () => number;
  attempt: number;
  reconnectAttempts: number;
  connection: ConnectionHandle | null;
  server: string | null;
  lastError: ErrorInfo | null;
  /** True when the failure cannot be cured by retrying (e.g. credentials refused). */
  fatal: boolean;
  failed: boolean;
  subscribers: AnyActorRef[];
}

/** Events the connection actor accepts. */
export type ConnectionEvent =
  | { type: 'CONNECT' }
  | { type: 'CLOSE' }
  | { type: 'SUBSCRIBE'; ref: AnyActorRef }
  | { type: 'UNSUBSCRIBE'; ref: AnyActorRef }
  // From the provided status watcher: the client's status stream, translated.
  | { type: 'NATS.DISCONNECT'; server: string }
  | { type: 'NATS.RECONNECTING' }
  | { type: 'NATS.RECONNECT'; server: string }
  | { type: 'NATS.ERROR'; error: ErrorInfo }
  | { type: 'NATS.CLOSED'; error?: ErrorInfo };

/** Notifications sent to subscribers (and emitted for `actor.on(...)`). */
export type ConnectionNotification =
  | ConnectionChange
  | { type: 'CONNECTION_FAILED'; error: ErrorInfo | null; fatal: boolean }
  | { type: 'CONNECTION_CLOSED' };

export type ConnectionOutput =
  | { status: 'closed' }
  | { status: 'failed'; error: ErrorInfo | null; fatal: boolean };

/** Errors thrown by `connect` may carry `fatal: true` to skip the remaining attempts. */
export interface ConnectError extends Error {
  fatal?: boolean;
}

const notProvided = (name: string) => provideLater('connection machine', name);

export const connectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
    emitted: {} as ConnectionNotification,
    output: {} as ConnectionOutput,
  },
  actors: {
    connect: fromPromise<ConnectionHandle, { attempt: number }>(notProvided('connect')),
    watchStatus: fromCallback<ConnectionEvent, { connection: ConnectionHandle }>(notProvided('watchStatus')),
    close: fromPromise<void, { connection: ConnectionHandle | null }>(notProvided('close')),
  },
  actions: {
    addSubscriber: assign({
      subscribers: ({ context, event }) =>
        event.type === 'SUBSCRIBE' ? [...context.subscribers.filter((r) => r !== event.ref), event.ref] : context.subscribers,
    }),
    /** Closes the connection without waiting (used when giving up). */
    abandonConnection: (_, _params: { connection: ConnectionHandle | null }) => {},
    notify: enqueueActions(({ context, enqueue }, notification: ConnectionNotification) => {
      for (const ref of context.subscribers) enqueue.sendTo(ref, notification);
      enqueue.emit(notification);
    }),
  },
  guards: {
    attemptsLeft: ({ context }) => context.settings.maxAttempts === 0 || context.attempt < context.settings.maxAttempts,
    fatalError: (_, params: { error: unknown }) => Boolean((params.error as ConnectError | undefined)?.fatal),
    reconnectAttemptsExhausted: ({ context }) =>
      context.settings.reconnectMaxAttempts > 0 && context.reconnectAttempts >= context.settings.reconnectMaxAttempts,
    givesUp: ({ context }) => context.settings.reconnectGiveUpAfterMs > 0,
  },
  delays: {
    retryDelay: ({ context }) => backoffDelay(context.attempt, context.settings, context.random),
    reconnectGiveUp: ({ context }) => context.settings.reconnectGiveUpAfterMs || 1,
  },
}).createMachine({
  id: 'connection',
  context: ({ input }) => ({
    settings: input.settings,
    random: input.random ?? Math.random,
    attempt: 0,
    reconnectAttempts: 0,
    connection: null,
    server: null,
    lastError: null,
    fatal: false,
    failed: false,
    subscribers: [],
  }),
  initial: 'idle',
  on: {
    SUBSCRIBE: { actions: 'addSubscriber' },
    UNSUBSCRIBE: {
      actions: assign({ subscribers: ({ context, event }) => context.subscribers.filter((r) => r !== event.ref) }),
    },
  },
  states: {
    idle: {
      on: { CONNECT: 'connecting', CLOSE: 'closed' },
    },
    connecting: {
      entry: assign({ attempt: ({ context }) => context.attempt + 1 }),
      invoke: {
        src: 'connect',
        input: ({ context }) => ({ attempt: context.attempt }),
        onDone: {
          target: 'online',
          actions: [
            assign({
              connection: ({ event }) => event.output,
              server: ({ event }) => event.output.server,
              attempt: 0,
              lastError: null,
            }),
            { type: 'notify', params: ({ event }) => ({ type: 'CONNECTED', connection: event.output, server: event.output.server }) },
          ],
        },
        onError: [
          {
            guard: { type: 'fatalError', params: ({ event }) => ({ error: event.error }) },
            target: 'failed',
            actions: assign({ lastError: ({ event }) => errorInfo(event.error), fatal: true }),
          },
          {
            guard: 'attemptsLeft',
            target: 'waiting',
            actions: assign({ lastError: ({ event }) => errorInfo(event.error) }),
          },
          { target: 'failed', actions: assign({ lastError: ({ event }) => errorInfo(event.error) }) },
        ],
      },
      on: { CLOSE: 'closed' },
    },
    waiting: {
      after: { retryDelay: 'connecting' },
      on: { CLOSE: 'closed' },
    },
    online: {
      invoke: {
        src: 'watchStatus',
        input: ({ context }) => ({ connection: context.connection! }),
      },
      initial: 'connected',
      on: {
        CLOSE: 'closing',
        'NATS.CLOSED': {
          target: 'failed',
          actions: assign({
            lastError: ({ event, context }) => event.error ?? context.lastError ?? { name: 'Error', message: 'connection closed by the client' },
          }),
        },
        'NATS.ERROR': { actions: assign({ lastError: ({ event }) => event.error }) },
      },
      states: {
        connected: {
          on: {
            SUBSCRIBE: {
              // A late subscriber learns the current state at once.
              actions: [
                'addSubscriber',
                enqueueActions(({ context, event, enqueue }) => {
                  enqueue.sendTo(event.ref, {
                    type: 'CONNECTED',
                    connection: context.connection!,
                    server: context.server ?? context.connection!.server,
                  } satisfies ConnectionNotification);
                }),
              ],
            },
            'NATS.DISCONNECT': {
              target: 'reconnecting',
              actions: [
                assign({ reconnectAttempts: 0 }),
                { type: 'notify', params: ({ event }) => ({ type: 'DISCONNECTED', server: event.server }) },
              ],
            },
          },
        },
        reconnecting: {
          after: {
            reconnectGiveUp: {
              guard: 'givesUp',
              target: '#connection.failed',
              actions: assign({
                lastError: ({ context }) => ({
                  name: 'ConnectionFailedError',
                  code: 'CONNECTION_FAILED',
                  message: `gave up reconnecting after ${context.settings.reconnectGiveUpAfterMs} ms`,
                }),
              }),
            },
          },
          on: {
            SUBSCRIBE: {
              actions: [
                'addSubscriber',
                enqueueActions(({ context, event, enqueue }) => {
                  enqueue.sendTo(event.ref, { type: 'DISCONNECTED', server: context.server } satisfies ConnectionNotification);
                }),
              ],
            },
            'NATS.RECONNECTING': [
              {
                guard: 'reconnectAttemptsExhausted',
                target: '#connection.failed',
                actions: assign({
                  lastError: ({ context }) => ({
                    name: 'ConnectionFailedError',
                    code: 'CONNECTION_FAILED',
                    message: `gave up after ${context.reconnectAttempts} reconnect attempts`,
                  }),
                }),
              },
              { actions: assign({ reconnectAttempts: ({ context }) => context.reconnectAttempts + 1 }) },
            ],
            'NATS.RECONNECT': {
              target: 'connected',
              actions: [
                assign({ server: ({ event }) => event.server, reconnectAttempts: 0 }),
                {
                  type: 'notify',
                  params: ({ context, event }) => ({ type: 'RECONNECTED', connection: context.connection!, server: event.server }),
                },
              ],
            },
          },
        },
      },
    },
    closing: {
      invoke: {
        src: 'close',
        input: ({ context }) => ({ connection: context.connection }),
        onDone: 'closed',
        onError: 'closed',
      },
    },
    closed: {
      type: 'final',
      entry: [assign({ connection: null }), { type: 'notify', params: { type: 'CONNECTION_CLOSED' } }],
    },
    failed: {
      type: 'final',
      entry: [
        { type: 'abandonConnection', params: ({ context }) => ({ connection: context.connection }) },
        assign({ connection: null, failed: true }),
        {
          type: 'notify',
          params: ({ context }) => ({ type: 'CONNECTION_FAILED', error: context.lastError, fatal: context.fatal }),
        },
      ],
    },
  },
  output: ({ context }) =>
    context.failed
      ?  { status: 'failed', error: context.lastError, fatal: context.fatal }
      : { status: 'closed' },
});

export type ConnectionMachine = typeof connectionMachine;
