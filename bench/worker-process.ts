/**
 * One naq worker in a process of its own, as it would run in production: the parent (the
 * producer side) must not share its event loop, and its peak RSS is the worker's alone.
 * Counts jobs in the handler and tells the parent when the expected number has run.
 */
import { keepOldGenerationFlat } from '../src/cli/process-settings.js';
import { loadCreateNaq, NAQ_UNAVAILABLE } from './naq-contract.js';
import { childConfig, childReporter, exitSoon, stopRequested, wallNow } from './util.js';

interface Config {
  url: string;
  queue: string;
  jobs: number;
  concurrency: number;
  events?: boolean;
  index?: boolean;
}

// What `naq worker` sets in its process, as the fork's --max-semi-space-size=8 is what
// bin/naq.js passes.
keepOldGenerationFlat();

const config = childConfig<Config>();
const reporter = childReporter(config.jobs);
const stop = stopRequested();
const latencies: number[] = [];

try {
  const createNaq = await loadCreateNaq();
  const worker = createNaq(
    {
      nats: { url: config.url },
      roles: ['worker'],
      worker: { queues: [config.queue], concurrency: config.concurrency },
      events: { enabled: config.events !== false },
      ...(config.index === false ? { jobs: { index: false } } : {}),
      log: { level: 'warn' },
    },
    {
      handlers: {
        noop: async () => {
          reporter.count();
          return null;
        },
        // Enqueue-to-start latency: the job carries its enqueue time (same machine, same clock).
        timed: async (...args: unknown[]) => {
          const data = args[0] as { t: number };
          latencies.push(wallNow() - data.t);
          if (latencies.length === config.jobs) {
            const sorted = [...latencies].sort((a, b) => a - b);
            const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
            reporter.send({ type: 'latency', count: sorted.length, p50: at(50), p99: at(99), max: sorted.at(-1)! });
          }
          reporter.count();
          return null;
        },
      },
    },
  );
  // Without the job API the worker would start and never run anything; say so instead.
  if (typeof worker.enqueueBulk !== 'function') {
    reporter.send({ type: 'unavailable', reason: NAQ_UNAVAILABLE });
    await exitSoon(0);
  }
  await worker.start({ timeoutMs: 10_000 });
  reporter.send({ type: 'ready' });
  await stop;
  await worker.stop();
  reporter.send({ type: 'stopped', ...reporter.finish() });
} catch (error) {
  reporter.send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  await exitSoon(1);
}
await exitSoon(0);
