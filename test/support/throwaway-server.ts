/**
 * Throwaway nats-servers for tests, the bench and the chaos runner: a free port and a fresh
 * temp store each, stopped and removed by `cleanup()` — or SIGKILLed on exit if the process
 * dies first. Test support, not part of the package.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServerProcess } from '../../src/nats-server/process.js';

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
// module evaluated twice in one process (vitest does) keeps one list and one exit hook.
const LIVE = Symbol.for('naq.throwawayNatsServers');
const liveThrowaways: Map<NatsServerProcess, string> = ((globalThis as { [LIVE]?: Map<NatsServerProcess, string> })[LIVE] ??= new Map());

/**
 * SIGKILLs every throwaway server still running and deletes its folder, synchronously: for
 * exit and signal hooks, so a process that dies (Ctrl-C, a crash, a test worker ended early)
 * leaves no server holding a port and a store. Installed on 'exit' by the first start; a
 * signal's default action skips 'exit' hooks, so callers that handle signals call it there.
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

export interface ThrowawayNatsServer {
  server: NatsServerProcess;
  /** The temp folder holding the store (and the config file, if any). */
  root: string;
  /** Stop the server and delete its folder. */
  cleanup(): Promise<void>;
}

/**
 * A nats-server that is nobody else's: a free port (retried when another process takes it
 * first) and a fresh temp store, removed by `cleanup()`. What tests, the bench and the chaos
 * runner all need, so it lives here once.
 */
export async function startThrowawayNatsServer(
  options: { prefix: string; configText?: string; port?: number; jetstream?: boolean } = { prefix: 'naq-' },
): Promise<ThrowawayNatsServer> {
  const root = await mkdtemp(join(tmpdir(), options.prefix));
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
  const HOOKED = Symbol.for('naq.throwawayNatsServers.exitHook');
  const g = globalThis as { [HOOKED]?: boolean };
  if (!g[HOOKED]) {
    g[HOOKED] = true;
    process.on('exit', killThrowawayNatsServers);
  }
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
