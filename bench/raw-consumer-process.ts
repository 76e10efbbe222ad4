/**
 * The raw consumer in a process of its own, for the end-to-end line measured in the same
 * shape as naq and BullMQ (producer in the parent, consumer in a child): on two cores the
 * two sides then do not share one event loop.
 */
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { AsyncPublisher } from '../src/actors/nats/publisher.js';
import { connectBench, RAW_BUCKET, startDrain, type RawVariant } from './raw.js';
import { childConfig, childReporter, exitSoon, stopRequested } from './util.js';

interface Config {
  url: string;
  variant: RawVariant;
  jobs: number;
  concurrency: number;
  pullBatch: number;
}

const config = childConfig<Config>();
// The raw drain reports 'done' itself, after the flush that confirms the last ack.
const reporter = childReporter(Number.POSITIVE_INFINITY, config.jobs);
const stop = stopRequested();

try {
  const nc = await connectBench(config.url, 'bench-raw-consumer');
  const js = jetstream(nc);
  const kv = await new Kvm(nc).open(RAW_BUCKET);
  const pub = config.variant === 'async' ? new AsyncPublisher(nc, { timeoutMs: 30_000 }) : undefined;
  const drain = await startDrain(nc, js, kv, pub, config, config.jobs, reporter.count);
  reporter.send({ type: 'ready' });
  const t = await drain.done;
  reporter.send({ type: 'done', t, count: config.jobs, ...reporter.used(), ...reporter.steady(config.jobs) });
  await stop;
  pub?.close();
  await nc.close();
  reporter.send({ type: 'stopped', ...reporter.finish() });
} catch (error) {
  reporter.send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  await exitSoon(1);
}
await exitSoon(0);
