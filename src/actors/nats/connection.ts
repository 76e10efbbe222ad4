import { readFile } from 'node:fs/promises';
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  UserAuthenticationExpiredError,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { pino } from 'pino';
import { fromCallback, fromPromise } from 'xstate';
import type { NaqConfig } from '../../config/index.js';
import { natsConnectTarget } from '../../config/nats-target.js';
import { errorInfo, NotConnectedError } from '../../core/errors.js';
import {
  connectionMachine,
  type ConnectError,
  type ConnectionEvent,
  type ConnectionHandle,
  type ConnectionInput,
} from '../../machines/connection.js';
import type { Logger } from '../../core/log.js';
import { NaqContext } from './context.js';
import { readFramesFast } from './msg-frames.js';

/**
 * The live connection, as the connection machine holds it, with the per-connection context
 * (nats/context.ts) every service and worker is handed through it. `toJSON` keeps the client
 * object (and anything secret in its options) out of snapshots, logs and the inspector.
 */
export class NatsHandle implements ConnectionHandle {
  constructor(
    readonly nc: NatsConnection,
    readonly context: NaqContext,
  ) {}
  get server(): string {
    return this.nc.getServer();
  }
  toJSON() {
    return { server: this.server, closed: this.nc.isClosed() };
  }
}

/** The NATS client behind a handle the machines pass around. */
export function natsOf(handle: ConnectionHandle | null | undefined): NatsConnection {
  if (!(handle instanceof NatsHandle)) throw new NotConnectedError();
  if (handle.nc.isClosed()) throw new NotConnectedError('the NATS connection is closed');
  return handle.nc;
}

/**
 * `nats://user:pass@host` (or `nats://token@host`) is a common way to give credentials; the
 * client does not read them from the URL, so they move into the options here (explicit
 * user / password / token settings win). The URL is read by the config's one parser, so what
 * is sent is exactly what `naq config` redacts.
 */
function splitCredentials(config: NaqConfig): { servers: string[]; user?: string; pass?: string; token?: string } {
  const { servers, credentials } = natsConnectTarget(config);
  return credentials === undefined ? { servers } : { servers, ...credentials };
}

/** Client options from naq's config: servers, auth, TLS, pings, and reconnects left to the client. */
export async function connectOptions(config: NaqConfig): Promise<NodeConnectionOptions> {
  const n = config.nats;
  const fromUrl = splitCredentials(config);
  const options: NodeConnectionOptions = {
    servers: fromUrl.servers,
    name: n.name,
    timeout: n.connectTimeoutMs,
    // The client keeps reconnecting (and buffering) forever; the connection machine decides
    // when to give up, from config.reconnect.
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: config.reconnect.timeWaitMs,
    waitOnFirstConnect: false,
    // A half-open link (no FIN, no RST) is only detected by these; the client's defaults
    // take minutes (see nats.pingIntervalMs in config.ts).
    pingInterval: n.pingIntervalMs,
    maxPingOut: n.maxPingsOut,
  };
  const user = n.user ?? fromUrl.user;
  const pass = n.password ?? fromUrl.pass;
  const token = n.token ?? fromUrl.token;
  if (user !== undefined) options.user = user;
  if (pass !== undefined) options.pass = pass;
  if (token !== undefined) options.token = token;
  if (n.nkeySeed !== undefined) options.authenticator = nkeyAuthenticator(new TextEncoder().encode(n.nkeySeed));
  if (n.credsFile !== undefined) options.authenticator = credsAuthenticator(await readFile(n.credsFile));
  const tls = n.tls;
  const wantsTls = options.servers && [options.servers].flat().some((s) => s.startsWith('tls://'));
  if (tls && (tls.caFile || tls.certFile || tls.keyFile)) {
    options.tls = {
      ...(tls.caFile ? { caFile: tls.caFile } : {}),
      ...(tls.certFile ? { certFile: tls.certFile } : {}),
      ...(tls.keyFile ? { keyFile: tls.keyFile } : {}),
    };
  } else if (wantsTls) {
    options.tls = {};
  }
  return options;
}

/** Refused credentials are not cured by retrying: say so at once. */
function isFatalConnectError(error: unknown): boolean {
  if (error instanceof AuthorizationError || error instanceof UserAuthenticationExpiredError) return true;
  const message = error instanceof Error ? `${error.message} ${String((error as { cause?: unknown }).cause ?? '')}` : '';
  return /authorization violation|authentication|permissions violation/i.test(message);
}

/** Tracks the connection a process currently has, so the runtime can close it whatever the machines did. */
export interface ConnectionRegistry {
  current: NatsConnection | null;
}

export function connectionSettings(config: NaqConfig): ConnectionInput['settings'] {
  return {
    maxAttempts: config.connect.maxAttempts,
    initialDelayMs: config.connect.initialDelayMs,
    maxDelayMs: config.connect.maxDelayMs,
    jitter: config.connect.jitter,
    reconnectMaxAttempts: config.reconnect.maxAttempts,
    reconnectGiveUpAfterMs: config.reconnect.giveUpAfterMs,
  };
}

/** The connection machine with NATS behind it. */
export function natsConnectionLogic(config: NaqConfig, registry: ConnectionRegistry = { current: null }, log: Logger = pino({ level: 'silent' })) {
  return connectionMachine.provide({
    actors: {
      connect: fromPromise<ConnectionHandle, { attempt: number }>(async ({ signal }) => {
        let nc: NatsConnection;
        try {
          nc = await connect(await connectOptions(config));
        } catch (error) {
          const e = (error instanceof Error ? error : new Error(String(error))) as ConnectError;
          if (isFatalConnectError(error)) e.fatal = true;
          throw e;
        }
        // CLOSE arrived while we were connecting: do not leak the connection.
        if (signal.aborted) {
          await nc.close().catch(() => {});
          throw new NotConnectedError('connect cancelled');
        }
        registry.current = nc;
        if (!readFramesFast(nc)) log.debug('this nats.js has no parser FrameReader knows: inbound frames are read by the client');
        // Everything that lives as long as this connection is built here, once.
        const context = new NaqContext(nc, config, log);
        void nc.closed().then(() => context.close());
        return new NatsHandle(nc, context);
      }),
      watchStatus: fromCallback<ConnectionEvent, { connection: ConnectionHandle }>(({ sendBack, input }) => {
        const nc = natsOf(input.connection);
        let stopped = false;
        const statuses = nc.status();
        void (async () => {
          for await (const s of statuses) {
            if (stopped) break;
            switch (s.type) {
              case 'disconnect':
                sendBack({ type: 'NATS.DISCONNECT', server: s.server });
                break;
              case 'reconnecting':
                sendBack({ type: 'NATS.RECONNECTING' });
                break;
              case 'reconnect':
                sendBack({ type: 'NATS.RECONNECT', server: s.server });
                break;
              case 'error':
                sendBack({ type: 'NATS.ERROR', error: errorInfo(s.error) });
                break;
              default:
                break;
            }
          }
        })().catch(() => {});
        void nc.closed().then((err) => {
          if (!stopped) sendBack({ type: 'NATS.CLOSED', ...(err ? { error: errorInfo(err) } : {}) });
        });
        return () => {
          stopped = true;
          (statuses as { stop?: () => void }).stop?.();
        };
      }),
      close: fromPromise<void, { connection: ConnectionHandle | null }>(async ({ input }) => {
        if (!(input.connection instanceof NatsHandle)) return;
        const nc = input.connection.nc;
        if (nc.isClosed()) return;
        // The last writes (a stopping worker's index batch, the last events) get their acks
        // first: the drain closes the inbox they come back on.
        const started = Date.now();
        input.connection.context.storage.flushIndex();
        // Half the stop's budget at most: the drain keeps the rest.
        await input.connection.context.publisher.settled(config.supervisor.stopTimeoutMs / 2);
        // Drain flushes what was published and lets subscriptions finish; bounded, then close.
        // The bound's timer must not outlive the drain: it would keep a host's process alive.
        let bound: NodeJS.Timeout | undefined;
        await Promise.race([nc.drain(), new Promise((r) => (bound = setTimeout(r, Math.max(0, config.supervisor.stopTimeoutMs - (Date.now() - started)))))])
          .catch(() => {})
          .finally(() => clearTimeout(bound));
        if (!nc.isClosed()) await nc.close().catch(() => {});
        if (registry.current === nc) registry.current = null;
      }),
    },
    actions: {
      abandonConnection: (_, params: { connection: ConnectionHandle | null }) => {
        if (params.connection instanceof NatsHandle && !params.connection.nc.isClosed()) {
          void params.connection.nc.close().catch(() => {});
        }
      },
    },
  });
}
