/**
 * A naq worker process for the bench's sandbox section: the handlers of bench/sandbox-handlers
 * in-process (`loadHandlers`) or in worker threads (`loadSandboxedHandlers`), otherwise alike.
 * Jobs are counted by a middleware, which runs in the main thread either way.
 */
import { childConfig, childReporter, exitSoon, stopRequested } from './util.js';

interface Config {
  url: string;
  queue: string;
  jobs: number;
  concurrency: number;
  sandbox: boolean;
  /** The handlers module, a path. */
  module: string;
}

const config = childConfig<Config>();
const reporter = childReporter(config.jobs);
const stop = stopRequested();

try {
  const naq = await import('../src/index.js');
  const loaded = config.sandbox
    ? await naq.loadSandboxedHandlers(config.module, { threads: config.concurrency })
    : { handlers: await naq.loadHandlers(config.module), pool: undefined };
  const worker = naq.createNaq(
    { nats: { url: config.url }, roles: ['worker'], worker: { queues: [config.queue], concurrency: config.concurrency }, log: { level: 'warn' } },
    { handlers: loaded.handlers },
  );
  worker.use(async (_job, _ctx, next) => {
    const result = await next();
    reporter.count();
    return result;
  });
  await worker.start({ timeoutMs: 10_000 });
  reporter.send({ type: 'ready' });
  await stop;
  await worker.stop();
  await loaded.pool?.close();
  reporter.send({ type: 'stopped', ...reporter.finish() });
} catch (error) {
  reporter.send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  await exitSoon(1);
}
await exitSoon(0);
