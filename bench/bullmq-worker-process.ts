/**
 * One BullMQ worker in a process of its own — the same shape as the naq worker child, so
 * neither side gets the producer's event loop for free. Counts 'completed' events: BullMQ
 * emits one once the job's result is stored and the job moved to completed, which is
 * naq's "outcome recorded, then acked".
 */
import { Worker } from 'bullmq';
import { childConfig, childReporter, exitSoon, stopRequested, wallNow } from './util.js';

interface Config {
  queue: string;
  jobs: number;
  concurrency: number;
  host: string;
  port: number;
}

const config = childConfig<Config>();
const reporter = childReporter(config.jobs);
const stop = stopRequested();

try {
  const worker = new Worker(
    config.queue,
    async () => {
      reporter.first(wallNow());
      return null;
    },
    { connection: { host: config.host, port: config.port, maxRetriesPerRequest: null }, concurrency: config.concurrency },
  );
  worker.on('completed', () => reporter.count());
  worker.on('failed', (_job, error) => reporter.send({ type: 'error', message: `job failed: ${error.message}` }));
  await worker.waitUntilReady();
  reporter.send({ type: 'ready' });
  await stop;
  await worker.close();
  reporter.send({ type: 'stopped', ...reporter.finish() });
} catch (error) {
  reporter.send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  await exitSoon(1);
}
await exitSoon(0);
