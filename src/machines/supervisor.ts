import { assign, emit, enqueueActions, fromPromise, setup, type AnyEventObject } from 'xstate';
import { notProvided as provideLater } from './shared.js';
import { backoffDelay } from '../core/backoff.js';
import type { ErrorInfo } from '../core/errors.js';
import type { ConnectionHandle, ConnectionInput, ConnectionNotification } from './connection.js';
import type { ServiceReadyEvent } from './service.js';

/**
 * The root of a naq process. Spawns the connection actor, then — once connected — each
 * service actor in order, waiting for each to be ready before the next. A child that fails
 * (errors, or ends on its own) is restarted after a backoff; if the connection fails, the
 * services that depend on it are stopped and everything starts again once it is back. More
 * than `maxRestarts` restarts within `restartWindowMs` fails the supervisor for good.
 * STOP stops the children in reverse order, each given `stopTimeoutMs` to drain.
 */

/** The kinds of service actor a supervisor can run, in start order. */
export const SERVICE_ORDER = ['streams', 'kv', 'events', 'jobs', 'worker', 'scheduler'] as const;
export type ServiceKind = (typeof SERVICE_ORDER)[number];
/** A service's id: its kind, or `kind:name` for one of several (`worker:emails`). */
export type ServiceName = ServiceKind | `${ServiceKind}:${string}`;

/** The logic a service id runs: `worker:emails` runs the `worker` logic. */
export function serviceKind(id: string): ServiceKind {
  return id.split(':')[0] as ServiceKind;
}

export interface SupervisorSettings {
  maxRestarts: number;
  restartWindowMs: number;
  restartDelayMs: number;
  restartMaxDelayMs: number;
  stopTimeoutMs: number;
}

export interface SupervisorInput {
  services: ServiceName[];
  settings: SupervisorSettings;
  connection: ConnectionInput;
  /** Extra input for a service, by id (merged with `{ name, connection }`). */
  serviceInput?: Record<string, Record<string, unknown>>;
}

export interface SupervisorContext {
  services: ServiceName[];
  settings: SupervisorSettings;
  connectionInput: ConnectionInput;
  serviceInput: Record<string, Record<string, unknown>>;
  connection: ConnectionHandle | null;
  /** Index into `services` of the one being started. */
  startIndex: number;
  /** Children currently alive, in start order ('connection' first). */
  live: string[];
  /** Restarts inside the current window; each one expires by a delayed event. */
  recentRestarts: number;
  totalFailures: number;
  stopQueue: string[];
  failed: boolean;
  lastFailure: { child: string; error: ErrorInfo | null } | null;
}

export type SupervisorEvent =
  | { type: 'STOP' }
  | ConnectionNotification
  | ServiceReadyEvent
  | { type: 'RESTART'; id: string }
  | { type: 'RESTART_EXPIRED' }
  // Child lifecycle events XState delivers to the parent.
  | { type: `xstate.done.actor.${string}`; actorId?: string; output?: unknown }
  | { type: `xstate.error.actor.${string}`; actorId?: string; error?: unknown };

export type SupervisorOutput = { status: 'stopped' } | { status: 'failed'; failure: SupervisorContext['lastFailure'] };

/** Log lines the machine emits (`actor.on('report', ...)`); the real system logs them. */
export interface SupervisorReport {
  type: 'report';
  level: 'info' | 'warn' | 'error';
  msg: string;
  data?: Record<string, unknown>;
}

function report(level: SupervisorReport['level'], msg: string, data?: Record<string, unknown>): SupervisorReport {
  return { type: 'report', level, msg, ...(data ? { data } : {}) };
}

const notProvided = (name: string) => fromPromise<never>(provideLater('supervisor', name));

function childId(event: AnyEventObject): string {
  if (typeof event.actorId === 'string') return event.actorId;
  return event.type.replace(/^xstate\.(done|error)\.actor\./, '');
}

function failureOf(event: AnyEventObject): ErrorInfo | null {
  if (event.type.startsWith('xstate.error.actor.')) {
    const e = event.error as { name?: string; message?: string; code?: unknown } | undefined;
    return { name: e?.name ?? 'Error', message: e?.message ?? String(event.error) };
  }
  const output = event.output as { error?: ErrorInfo | null; status?: string } | undefined;
  return output?.error ?? { name: 'Error', message: `${childId(event)} ended unexpectedly (${output?.status ?? 'done'})` };
}

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    output: {} as SupervisorOutput,
    emitted: {} as SupervisorReport,
  },
  actors: {
    // Placeholders: the real system (src/actors/system.ts) provides machines for each.
    connection: notProvided('connection'),
    streams: notProvided('streams'),
    kv: notProvided('kv'),
    events: notProvided('events'),
    jobs: notProvided('jobs'),
    worker: notProvided('worker'),
    scheduler: notProvided('scheduler'),
  },
  actions: {
    spawnConnection: enqueueActions(({ context, enqueue, self }) => {
      enqueue.stopChild('connection');
      enqueue.spawnChild('connection', { id: 'connection', systemId: 'connection', input: context.connectionInput as never });
      enqueue.assign({ live: ['connection'], connection: null });
      enqueue.sendTo('connection', { type: 'SUBSCRIBE', ref: self });
      enqueue.sendTo('connection', { type: 'CONNECT' });
    }),
    spawnService: enqueueActions(({ context, enqueue }, params: { id: string }) => {
      enqueue.stopChild(params.id);
      enqueue.spawnChild(serviceKind(params.id), {
        id: params.id,
        systemId: params.id,
        input: { ...context.serviceInput[params.id], name: params.id, connection: context.connection } as never,
      });
    }),
    forwardToServices: enqueueActions(({ context, enqueue, event }) => {
      for (const id of context.live) if (id !== 'connection') enqueue.sendTo(id, event);
    }),
    recordFailure: enqueueActions(({ context, enqueue, event }) => {
      const id = childId(event);
      const error = failureOf(event);
      enqueue.assign({
        recentRestarts: context.recentRestarts + 1,
        totalFailures: context.totalFailures + 1,
        lastFailure: { child: id, error },
        live: context.live.filter((c) => c !== id),
      });
      enqueue.emit(report('error', `${id} failed`, { child: id, error }));
      enqueue.raise({ type: 'RESTART_EXPIRED' }, { delay: context.settings.restartWindowMs });
    }),
    scheduleRestart: enqueueActions(({ context, enqueue, event }) => {
      const id = childId(event);
      const delay = backoffDelay(context.recentRestarts, {
        initialDelayMs: context.settings.restartDelayMs,
        maxDelayMs: context.settings.restartMaxDelayMs,
      });
      enqueue.emit(report('warn', `restarting ${id} in ${delay} ms`, { child: id, delay }));
      enqueue.raise({ type: 'RESTART', id }, { delay });
    }),
    stopServices: enqueueActions(({ context, enqueue }) => {
      for (const id of context.live) if (id !== 'connection') enqueue.stopChild(id);
      enqueue.assign({ live: context.live.filter((c) => c === 'connection'), connection: null });
    }),
    stopHead: enqueueActions(({ context, enqueue }) => {
      const head = context.stopQueue[0];
      if (head === undefined) return;
      enqueue.emit(report('info', `stopping ${head}`));
      enqueue.sendTo(head, head === 'connection' ? { type: 'CLOSE' } : { type: 'STOP' });
    }),
    abandonAll: enqueueActions(({ context, enqueue }) => {
      for (const id of [...context.live].reverse()) {
        enqueue.sendTo(id, id === 'connection' ? { type: 'CLOSE' } : { type: 'STOP' });
      }
    }),
  },
  guards: {
    fatalFailure: ({ event }) => (event as { output?: { fatal?: boolean } }).output?.fatal === true,
    tooManyRestarts: ({ context }) => context.recentRestarts + 1 > context.settings.maxRestarts,
    isConnection: ({ event }) => childId(event) === 'connection',
    isLiveChild: ({ context, event }) => context.live.includes(childId(event)),
    allStarted: ({ context }) => context.startIndex >= context.services.length,
    isCurrentService: ({ context, event }) => 'id' in event && event.id === context.services[context.startIndex],
    restartsConnection: ({ event }) => 'id' in event && event.id === 'connection',
    restartsAbsentService: ({ context, event }) =>
      'id' in event && event.id !== 'connection' && !context.live.includes(event.id),
    stopQueueEmpty: ({ context }) => context.stopQueue.length === 0,
    isStopHead: ({ context, event }) => childId(event) === context.stopQueue[0],
  },
  delays: {
    stopTimeout: ({ context }) => context.settings.stopTimeoutMs,
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({
    services: input.services,
    settings: input.settings,
    connectionInput: input.connection,
    serviceInput: input.serviceInput ?? {},
    connection: null,
    startIndex: 0,
    live: [],
    recentRestarts: 0,
    totalFailures: 0,
    stopQueue: [],
    failed: false,
    lastFailure: null,
  }),
  initial: 'active',
  on: {
    RESTART_EXPIRED: { actions: assign({ recentRestarts: ({ context }) => Math.max(0, context.recentRestarts - 1) }) },
  },
  states: {
    active: {
      entry: 'spawnConnection',
      initial: 'connecting',
      on: {
        STOP: 'stopping',
        DISCONNECTED: { actions: ['forwardToServices', emit(report('warn', 'NATS disconnected'))] },
        RECONNECTED: {
          actions: [
            assign({ connection: ({ event }) => event.connection }),
            'forwardToServices',
            emit(report('info', 'NATS reconnected')),
          ],
        },
        'xstate.done.actor.*': [
          // Refused credentials will be refused again: fail loudly instead of looping.
          { guard: 'fatalFailure', target: 'failed', actions: 'recordFailure' },
          { guard: 'tooManyRestarts', target: 'failed', actions: 'recordFailure' },
          { guard: 'isConnection', target: '.recovering', actions: ['recordFailure', 'stopServices', 'scheduleRestart'] },
          { guard: 'isLiveChild', actions: ['recordFailure', 'scheduleRestart'] },
          // A service that failed while still starting is not live yet.
          { actions: ['recordFailure', 'scheduleRestart'] },
        ],
        'xstate.error.actor.*': [
          { guard: 'tooManyRestarts', target: 'failed', actions: 'recordFailure' },
          { guard: 'isConnection', target: '.recovering', actions: ['recordFailure', 'stopServices', 'scheduleRestart'] },
          { actions: ['recordFailure', 'scheduleRestart'] },
        ],
      },
      states: {
        connecting: {
          on: {
            CONNECTED: {
              target: 'startingServices',
              actions: [
                assign({ connection: ({ event }) => event.connection, startIndex: 0 }),
                emit(({ event }) => report('info', `connected to ${event.server}`)),
              ],
            },
          },
        },
        startingServices: {
          entry: enqueueActions(({ context, enqueue }) => {
            const id = context.services[context.startIndex];
            if (id !== undefined) enqueue({ type: 'spawnService', params: { id } });
          }),
          always: { guard: 'allStarted', target: 'running' },
          on: {
            SERVICE_READY: {
              guard: 'isCurrentService',
              target: 'startingServices',
              reenter: true,
              actions: assign({
                live: ({ context, event }) => [...context.live.filter((c) => c !== event.id), event.id],
                startIndex: ({ context }) => context.startIndex + 1,
              }),
            },
            RESTART: {
              guard: 'isCurrentService',
              actions: { type: 'spawnService', params: ({ event }) => ({ id: event.id }) },
            },
          },
        },
        running: {
          entry: emit(report('info', 'all services running')),
          on: {
            SERVICE_READY: {
              actions: [
                assign({ live: ({ context, event }) => [...context.live.filter((c) => c !== event.id), event.id] }),
                emit(({ event }) => report('info', `${event.id} restarted`)),
              ],
            },
            RESTART: {
              guard: 'restartsAbsentService',
              actions: { type: 'spawnService', params: ({ event }) => ({ id: event.id }) },
            },
          },
        },
        recovering: {
          on: {
            RESTART: { guard: 'restartsConnection', target: 'connecting', actions: 'spawnConnection' },
          },
        },
      },
    },
    stopping: {
      entry: assign({ stopQueue: ({ context }) => [...context.live].reverse() }),
      initial: 'next',
      states: {
        next: {
          always: { guard: 'stopQueueEmpty', target: '#supervisor.stopped' },
          entry: 'stopHead',
          after: {
            stopTimeout: {
              target: 'next',
              reenter: true,
              actions: enqueueActions(({ context, enqueue }) => {
                const head = context.stopQueue[0];
                if (head === undefined) return;
                enqueue.emit(report('warn', `${head} did not stop in time; stopping it anyway`));
                enqueue.stopChild(head);
                enqueue.assign({ stopQueue: context.stopQueue.slice(1) });
              }),
            },
          },
          on: {
            'xstate.done.actor.*': [
              {
                guard: 'isStopHead',
                target: 'next',
                reenter: true,
                actions: assign({ stopQueue: ({ context }) => context.stopQueue.slice(1) }),
              },
              { actions: assign({ stopQueue: ({ context, event }) => context.stopQueue.filter((c) => c !== childId(event)) }) },
            ],
            'xstate.error.actor.*': [
              {
                guard: 'isStopHead',
                target: 'next',
                reenter: true,
                actions: assign({ stopQueue: ({ context }) => context.stopQueue.slice(1) }),
              },
              { actions: assign({ stopQueue: ({ context, event }) => context.stopQueue.filter((c) => c !== childId(event)) }) },
            ],
          },
        },
      },
    },
    stopped: {
      type: 'final',
      entry: emit(report('info', 'stopped')),
    },
    failed: {
      type: 'final',
      entry: [
        assign({ failed: true }),
        'abandonAll',
        emit(({ context }) =>
          report(
            'error',
            context.recentRestarts > context.settings.maxRestarts
              ? `too many restarts (more than ${context.settings.maxRestarts} in ${context.settings.restartWindowMs} ms); giving up`
              : `${context.lastFailure?.child} failed for good: ${context.lastFailure?.error?.message}; giving up`,
            { lastFailure: context.lastFailure },
          ),
        ),
      ],
    },
  },
  output: ({ context }) =>
    context.failed ? { status: 'failed', failure: context.lastFailure } : { status: 'stopped' },
});

export type SupervisorMachine = typeof supervisorMachine;
