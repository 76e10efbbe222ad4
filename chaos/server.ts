/**
 * The chaos runner's own nats-server: a free port and a throwaway store, never a server on
 * 4222 that someone else uses. Tests pass the harness's `startServer` instead; both satisfy
 * `ChaosServer`.
 */
import { startThrowawayNatsServer } from '../test/support/throwaway-server.js';
import type { NatsServerProcess } from '../src/nats-server/process.js';

export interface ChaosServer extends Pick<NatsServerProcess, 'url' | 'kill' | 'restart' | 'recentLog'> {
  /** Stop the server and delete its store. */
  cleanup(): Promise<void>;
}

// A runner that dies (Ctrl-C, a crash) leaves no server behind: a throwaway server is
// SIGKILLed on exit, and run.ts turns SIGINT / SIGTERM into an exit.
export async function startChaosServer(): Promise<ChaosServer> {
  const throwaway = await startThrowawayNatsServer({ prefix: 'naq-chaos-server-' });
  const s = throwaway.server;
  return {
    get url() {
      return s.url;
    },
    kill: (signal) => s.kill(signal),
    restart: () => s.restart(),
    recentLog: () => s.recentLog(),
    cleanup: () => throwaway.cleanup(),
  };
}
