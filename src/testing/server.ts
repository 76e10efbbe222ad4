/**
 * Throwaway nats-servers: a free port and a fresh temp store each, stopped and removed on
 * request — or SIGKILLed (and their folders removed) when the process exits or is ended by
 * SIGTERM / SIGINT first. `startTestServer()` is the public face (naq/testing) for users'
 * integration tests; `startThrowawayNatsServer()` is what naq's own tests, bench and chaos
 * runner use (through test/support/throwaway-server.ts). One implementation for all of them,
 * on src/nats-server/process.ts, which finds the binary (PATH, /usr/sbin, /usr/local/bin,
 * /usr/bin) and says how to install it when it is missing (NATS_SERVER_MISSING).
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServerProcess } from '../nats-server/process.js';
import { NaqError } from '../core/errors.js';

/**
 * A TCP port that was free on 127.0.0.1 a moment ago (for a server to start on). Another
 * process can take it first: callers treat "address already in use" as a cue to retry.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close((err) => (err ? reject(err) : port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

// Throwaway servers still running and the folder each owns. Shared through globalThis so a
// module evaluated twice in one process (vitest does; so does dist beside src) keeps one list
// and one set of hooks.
const LIVE = Symbol.for('naq.throwawayNatsServers');
const liveThrowaways: Map<NatsServerProcess, string> = ((globalThis as { [LIVE]?: Map<NatsServerProcess, string> })[LIVE] ??= new Map());

/**
 * SIGKILLs every throwaway server still running and deletes its folder, synchronously: for
 * exit and signal hooks, so a process that dies (Ctrl-C, a crash, a test worker ended early)
 * leaves no server holding a port and a store. Installed on 'exit', SIGTERM and SIGINT by the
 * first start.
 */
export function killThrowawayNatsServers(): void {
  for (const [server, root] of liveThrowaways) {
    if (!server.exited) {
      try {
        process.kill(server.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    try {
      rmSync(root, { recursive: true, force: true });
    } catch {
      // A server still dying may write one last file; a stray temp dir is harmless.
    }
  }
  liveThrowaways.clear();
}

/**
 * A signal's default action skips 'exit' hooks (and vitest ends a fork worker with SIGTERM),
 * so the signals get their own: the servers are killed, then the signal is raised again so the
 * process still dies the way it would have — unless someone else listens for it and has their
 * own plans (the bench and the chaos runner exit themselves).
 */
function onSignal(signal: NodeJS.Signals): void {
  killThrowawayNatsServers();
  if (process.listenerCount(signal) === 1) {
    process.off(signal, onSignal);
    process.kill(process.pid, signal);
  }
}

function installHooks(): void {
  const HOOKED = Symbol.for('naq.throwawayNatsServers.exitHook');
  const g = globalThis as { [HOOKED]?: boolean };
  if (g[HOOKED]) return;
  g[HOOKED] = true;
  process.on('exit', killThrowawayNatsServers);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

export interface ThrowawayNatsServer {
  server: NatsServerProcess;
  /** The temp folder holding the store (and the config file, if any). */
  root: string;
  /** Stop the server and delete its folder. */
  cleanup(): Promise<void>;
}

export interface ThrowawayOptions {
  /** The temp folder's name starts with this (default `naq-`). */
  prefix?: string;
  /** nats-server config text, written to a file passed with `-c`; `-p` and `-sd` still win. */
  configText?: string;
  /** A fixed client port; default: a free one (retried if another process takes it first). */
  port?: number;
  /** Default true. */
  jetstream?: boolean;
  /** The binary's name (looked up on PATH and the usual system folders) or path. Default `nats-server`. */
  binary?: string;
}

/**
 * A nats-server that is nobody else's: a free port (retried when another process takes it
 * first) and a fresh temp store, removed by `cleanup()`.
 */
export async function startThrowawayNatsServer(options: ThrowawayOptions = {}): Promise<ThrowawayNatsServer> {
  // Before the process starts: a signal while it starts still finds the hooks.
  installHooks();
  const root = await mkdtemp(join(tmpdir(), options.prefix ?? 'naq-'));
  let configFile: string | undefined;
  if (options.configText !== undefined) {
    configFile = join(root, 'server.conf');
    await writeFile(configFile, options.configText);
  }
  let server: NatsServerProcess | undefined;
  let lastError: unknown;
  for (let attempt = 0; attempt < 3 && !server; attempt++) {
    try {
      server = await startNatsServer({
        port: options.port ?? (await freePort()),
        storeDir: join(root, 'store'),
        jetstream: options.jetstream ?? true,
        ...(configFile ? { configFile } : {}),
        ...(options.binary !== undefined ? { binary: options.binary } : {}),
      });
    } catch (error) {
      lastError = error;
      // A fixed port cannot be helped by retrying; a free one taken meanwhile can.
      if (options.port !== undefined || !(error instanceof Error && error.message.includes('address already in use'))) break;
    }
  }
  if (!server) {
    await rm(root, { recursive: true, force: true });
    throw lastError;
  }
  const s = server;
  installHooks();
  liveThrowaways.set(s, root);
  return {
    server: s,
    root,
    async cleanup() {
      liveThrowaways.delete(s);
      await s.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

export type TestServerOptions = Omit<ThrowawayOptions, 'prefix'>;

/** A throwaway nats-server with JetStream, for integration tests against the real thing. */
export interface TestServer extends AsyncDisposable {
  /** `nats://127.0.0.1:PORT`: give it to `createNaq({ nats: { url } })`. */
  readonly url: string;
  readonly port: number;
  /** The running process: pid, `recentLog()`, and the rest of NatsServerProcess. */
  readonly process: NatsServerProcess;
  /** Stops the server and deletes its store. Safe to call twice. */
  stop(): Promise<void>;
  /** Ends it with `signal` (default SIGKILL) and keeps its store, for `restart()`: an outage or a crash. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and store (stopping it first if it runs). */
  restart(): Promise<void>;
}

/**
 * Starts a throwaway nats-server (`-js`, a free port, a temp store) and resolves once it
 * accepts clients. Rejects with code NATS_SERVER_MISSING (saying how to install it) when no
 * binary is found, NATS_SERVER_START_FAILED (quoting its log) when it does not start.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const throwaway = await startThrowawayNatsServer({ ...options, prefix: 'naq-test-server-' });
  const p = throwaway.server;
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= throwaway.cleanup());
  return {
    get url() {
      return p.url;
    },
    get port() {
      return p.port;
    },
    process: p,
    stop,
    kill: (signal = 'SIGKILL') => p.kill(signal),
    // After stop() the store is gone and nothing would clean a new process up: refused.
    restart: () => (stopped ? Promise.reject(new NaqError('SERVER_STOPPED', 'this test server was stopped (its store deleted); start another with startTestServer()')) : p.restart()),
    [Symbol.asyncDispose]: stop,
  };
}
