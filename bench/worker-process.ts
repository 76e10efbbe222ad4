/**
 * One naq worker in a process of its own, as it would run in production: the parent (the
 * producer side) must not share its event loop, and its peak RSS is the worker's alone.
 * Counts jobs in the handler and tells the parent when the expected number has run.
 */
import { loadCreateNaq, NAQ_UNAVAILABLE } from './naq-contract.js';
import { childConfig, childReporter, exitSoon, stopRequested } from './util.js';

interface Config {
  url: string;
  queue: string;
  jobs: number;
  concurrency: number;
  events?: boolean;
}

const config = childConfig<Config>();
const reporter = childReporter(config.jobs);
const stop = stopRequested();

try {
  const createNaq = await loadCreateNaq();
  const worker = createNaq(
    {
      nats: { url: config.url },
      roles: ['worker'],
      worker: { queues: [config.queue], concurrency: config.concurrency },
      events: { enabled: config.events !== false },
      log: { level: 'warn' },
    },
    {
      handlers: {
        noop: async () => {
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
