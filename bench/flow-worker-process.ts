/**
 * A worker process for the flow-control lines: runs `job`, which waits `data.ms` (if any),
 * and remembers when each tagged job started against the time it carries (its enqueue or due
 * time). The parent asks for the starts with a `report` message.
 */
import { loadCreateNaq } from './naq-contract.js';
import { childConfig, exitSoon, sleep, stopRequested, wallNow, type ChildMessage } from './util.js';

interface Config {
  url: string;
  queue: string;
  concurrency: number;
  /** Extra worker config, e.g. `{ fireSchedules: false }`. */
  worker?: Record<string, unknown>;
}

const config = childConfig<Config>();
const send = (msg: ChildMessage) => process.send?.(msg);
const stop = stopRequested();
const starts: Array<[string, number, number, string]> = [];
let count = 0;

process.on('message', (msg: { type?: string }) => {
  if (msg?.type === 'report') send({ type: 'starts', count, starts: starts.splice(0) });
});

try {
  const createNaq = await loadCreateNaq();
  const worker = createNaq(
    {
      nats: { url: config.url },
      roles: ['worker'],
      worker: { queues: [config.queue], concurrency: config.concurrency, ...config.worker },
      log: { level: 'warn' },
    },
    {
      handlers: {
        job: async (...args: unknown[]) => {
          const now = wallNow();
          const data = args[0] as { tag?: string; t?: number; ms?: number } | null;
          const ctx = args[1] as { jobId: string };
          count++;
          if (data?.tag) starts.push([data.tag, now, data.t ?? 0, ctx.jobId]);
          if (data?.ms) await sleep(data.ms);
          return null;
        },
      },
    },
  );
  await worker.start({ timeoutMs: 10_000 });
  send({ type: 'ready' });
  await stop;
  await worker.stop();
  send({ type: 'stopped', peakRss: process.memoryUsage.rss(), vmHwm: null });
} catch (error) {
  send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  await exitSoon(1);
}
await exitSoon(0);
