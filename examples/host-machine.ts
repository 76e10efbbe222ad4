/**
 * Your own XState v5 app running one of naq's actors inside it: the host machine invokes
 * naq's connection actor (`natsConnectionLogic`), subscribes to it, and keeps its own
 * `waitingForNats → online ⇄ offline` states in step with CONNECTED / DISCONNECTED /
 * RECONNECTED. No supervisor, no services: just the reconnection machine, so the host can
 * gate its own work on NATS being there (the raw client is `natsOf(connection)`).
 *
 * Output on stdout: one `host: <state>` line per state entered
 * (waitingForNats, online, offline, closing, closed | failed); the server on stderr.
 *
 * Run (after `npm run build`, with a nats-server on 4222):
 *   NAQ_NATS_URL=nats://127.0.0.1:4222 node dist/examples/host-machine.js
 * Stop and restart nats-server to see offline / online; SIGTERM (or Ctrl-C) closes the
 * connection and exits 0 once it is closed.
 */
import { assign, createActor, sendTo, setup } from 'xstate';
import {
  connectionSettings,
  loadConfig,
  natsConnectionLogic,
  natsOf,
  type ConnectionHandle,
  type ConnectionNotification,
  type ErrorInfo,
} from '../src/index.js';

// createNaq is not used here, but the same config (and NAQ_* environment) drives the actor.
const config = loadConfig({ env: process.env });

type HostEvent = ConnectionNotification | { type: 'SHUTDOWN' };

interface HostContext {
  /** Held while online so host work can use the client: `natsOf(connection)`. */
  connection: ConnectionHandle | null;
  outages: number;
  /** Why the connection gave up (attempts exhausted, credentials refused, ...). */
  failure: ErrorInfo | null;
}

const hostMachine = setup({
  types: {
    context: {} as HostContext,
    events: {} as HostEvent,
  },
  actors: {
    nats: natsConnectionLogic(config),
  },
  actions: {
    print: (_, params: { state: string }) => console.log(`host: ${params.state}`),
    describeServer: ({ context }) => {
      // Only a handle from natsConnectionLogic unwraps; the machines pass it around opaque.
      if (context.connection) console.error(`nats server: ${natsOf(context.connection).getServer()}`);
    },
  },
}).createMachine({
  id: 'host',
  context: { connection: null, outages: 0, failure: null },
  // Invoked on the root so the connection lives exactly as long as the host does; its end
  // (after CLOSE, or when it gives up) ends the host.
  invoke: {
    id: 'nats',
    src: 'nats',
    input: { settings: connectionSettings(config) },
    onDone: [
      { guard: ({ event }) => event.output.status === 'closed', target: '.closed' },
      {
        target: '.failed',
        actions: assign({ failure: ({ event }) => (event.output.status === 'failed' ? event.output.error : null) }),
      },
    ],
  },
  initial: 'waitingForNats',
  states: {
    waitingForNats: {
      // Subscribe before CONNECT so not even the first CONNECTED is missed; the actor is idle
      // until told to connect, which lets a host choose when to open the connection.
      entry: [
        { type: 'print', params: { state: 'waitingForNats' } },
        sendTo('nats', ({ self }) => ({ type: 'SUBSCRIBE', ref: self })),
        sendTo('nats', { type: 'CONNECT' }),
      ],
      on: {
        CONNECTED: { target: 'online', actions: assign({ connection: ({ event }) => event.connection }) },
        SHUTDOWN: 'closing',
      },
    },
    online: {
      entry: [{ type: 'print', params: { state: 'online' } }, 'describeServer'],
      on: {
        DISCONNECTED: { target: 'offline', actions: assign({ outages: ({ context }) => context.outages + 1 }) },
        SHUTDOWN: 'closing',
      },
    },
    offline: {
      // The NATS client reconnects by itself and keeps the same connection object.
      entry: { type: 'print', params: { state: 'offline' } },
      on: {
        RECONNECTED: { target: 'online', actions: assign({ connection: ({ event }) => event.connection }) },
        SHUTDOWN: 'closing',
      },
    },
    closing: {
      // The connection drains (bounded by supervisor.stopTimeoutMs), then ends as `closed`,
      // which the root's onDone turns into our own `closed`.
      entry: [{ type: 'print', params: { state: 'closing' } }, sendTo('nats', { type: 'CLOSE' })],
    },
    closed: {
      type: 'final',
      entry: [assign({ connection: null }), { type: 'print', params: { state: 'closed' } }],
    },
    failed: {
      type: 'final',
      entry: [assign({ connection: null }), { type: 'print', params: { state: 'failed' } }],
    },
  },
});

const host = createActor(hostMachine);
host.subscribe({
  complete: () => {
    const { value, context } = host.getSnapshot();
    const ok = value === 'closed';
    if (!ok) console.error(`the NATS connection failed: ${context.failure?.message ?? 'unknown error'}`);
    process.exit(ok ? 0 : 1);
  },
  error: (error) => {
    console.error('host machine crashed:', error);
    process.exit(1);
  },
});

process.on('SIGTERM', () => host.send({ type: 'SHUTDOWN' }));
process.on('SIGINT', () => host.send({ type: 'SHUTDOWN' }));

host.start();
