/**
 * The chaos runner's own nats-server: a free port and a throwaway store, never a server on
 * 4222 that someone else uses. Tests pass the harness's `startServer` instead; both satisfy
 * `ChaosServer`.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startNatsServer, type NatsServerProcess } from '../src/nats-server.js';

export interface ChaosServer extends Pick<NatsServerProcess, 'url' | 'kill' | 'restart' | 'recentLog'> {
  /** Stop the server and delete its store. */
  cleanup(): Promise<void>;
}


const live = new Map<NatsServerProcess, string>();
let hooked = false;

// A runner that dies (Ctrl-C, a crash) must not leave a server holding its port and store.
function killLeftovers() {
  for (const [server, root] of live) {
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
      // A stray temp dir is harmless.
    }
  }
  live.clear();
}

export async function startChaosServer(): Promise<ChaosServer> {
  if (!hooked) {
    hooked = true;
    process.on('exit', killLeftovers);
  }
  const root = await mkdtemp(join(tmpdir(), 'naq-chaos-server-'));
  let server: NatsServerProcess | undefined;
  let lastError: unknown;
  // The free port can be taken by someone else before the server binds it; a new one fixes that.
  for (let attempt = 0; attempt < 3 && !server; attempt++) {
    try {
      server = await startNatsServer({ port: await freePort(), storeDir: join(root, 'store') });
    } catch (error) {
      lastError = error;
      if (!(error instanceof Error && error.message.includes('address already in use'))) break;
    }
  }
  if (!server) {
    await rm(root, { recursive: true, force: true });
    throw lastError;
  }
  live.set(server, root);
  const s = server;
  return {
    get url() {
      return s.url;
    },
    kill: (signal) => s.kill(signal),
    restart: () => s.restart(),
    recentLog: () => s.recentLog(),
    cleanup: async () => {
      live.delete(s);
      await s.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
