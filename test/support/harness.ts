/**
 * The one way tests get a real nats-server: each server has its own free port and a fresh
 * store directory, and every server and raw client started here is tracked so that
 * `afterAll(stopAllServers)` cleans up — and a test file that dies early still SIGKILLs its
 * servers on the way out instead of leaking them onto later runs.
 */
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { freePort, startThrowawayNatsServer } from './throwaway-server.js';
import type { NatsServerProcess } from '../../src/nats-server/process.js';

export { freePort };

export interface StartServerOptions {
  /** nats-server config text, written to a temp `.conf` and passed with `-c`; the harness
   * still passes `-p` and `-sd`, which win over the file. */
  configText?: string;
  /** Default true. */
  jetstream?: boolean;
  /** A fixed client port (a cluster's config names its nodes' ports); default: a free one. */
  port?: number;
}

export interface TestServer extends NatsServerProcess {
  /** Stop the server and delete its store directory. */
  cleanup(): Promise<void>;
}

/** The servers this test file started and has not cleaned up yet. */
const servers = new Set<TestServer>();
const clients = new Set<NatsConnection>();


export async function startServer(opts: StartServerOptions = {}): Promise<TestServer> {
  const throwaway = await startThrowawayNatsServer({
    prefix: 'naq-test-',
    ...(opts.configText !== undefined ? { configText: opts.configText } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    jetstream: opts.jetstream ?? true,
  });

  const p = throwaway.server;
  // Delegates rather than copying: pid, port and exited change across kill and restart.
  const server: TestServer = {
    get url() {
      return p.url;
    },
    get port() {
      return p.port;
    },
    get host() {
      return p.host;
    },
    get storeDir() {
      return p.storeDir;
    },
    get pid() {
      return p.pid;
    },
    get exited() {
      return p.exited;
    },
    stop: () => p.stop(),
    kill: (signal?: NodeJS.Signals) => p.kill(signal),
    restart: () => p.restart(),
    recentLog: () => p.recentLog(),
    cleanup: async () => {
      servers.delete(server);
      await throwaway.cleanup();
    },
  };
  servers.add(server);
  return server;
}

/** A raw NATS client for `server`, closed by `stopAllServers()` if the test does not. */
export async function connectTo(
  server: Pick<NatsServerProcess, 'url'>,
  opts: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, ...opts });
  clients.add(nc);
  void nc.closed().then(() => clients.delete(nc));
  return nc;
}

/** Close every tracked client, then stop every tracked server and remove its store. */
export async function stopAllServers(): Promise<void> {
  await Promise.allSettled([...clients].map((nc) => nc.close()));
  clients.clear();
  await Promise.allSettled([...servers].map((s) => s.cleanup()));
  servers.clear();
}

// Servers are SIGKILLed when the process exits or gets SIGTERM / SIGINT first: the hooks of
// src/testing/server.ts, installed by the first start.

/**
 * A JetStream cluster of `size` nodes on loopback: a client port and a route port each,
 * routes between all of them. Resolves once every node is ready; the JetStream meta leader
 * may still be being elected, so callers retry their first JetStream call.
 */
export async function startCluster(size = 3): Promise<TestServer[]> {
  const clientPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`).join(', ');
  return Promise.all(
    clientPorts.map((port, i) =>
      startServer({
        port,
        configText: [
          `server_name: n${i + 1}`,
          'jetstream { max_mem: 64MB, max_file: 1GB }',
          `cluster { name: naq-test, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes}] }`,
          '',
        ].join('\n'),
      }),
    ),
  );
}

/**
 * Lets `ms` pass: for an outage or an observation window that must last this long ("no
 * second run in 1.5 s", "the stream is gone for 8 s"). Never to wait for something to
 * happen: that is `until`.
 */
export function elapse(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it holds; fails after `timeoutMs` instead of hanging the test. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The runner's environment without its NAQ_ variables, plus the test's own: for subprocesses. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));
  return { ...clean, NO_COLOR: '1', ...extra };
}
