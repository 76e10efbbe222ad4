/**
 * The chaos runner's own nats-server: a free port and a throwaway store, never a server on
 * 4222 that someone else uses. Tests pass the harness's `startServer` instead; both satisfy
 * `ChaosServer`.
 */
import { rmSync } from 'node:fs';
import { startThrowawayNatsServer, type NatsServerProcess } from '../src/nats-server.js';

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
  const throwaway = await startThrowawayNatsServer({ prefix: 'naq-chaos-server-' });
  const { server, root } = throwaway;
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
      await throwaway.cleanup();
    },
  };
}
