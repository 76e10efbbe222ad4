/**
 * The bar: the same work naq does per job, written straight on the NATS client with nothing
 * in between — one stream write to enqueue, one KV write for the result, then the ack.
 * The stream is shaped like naq's NAQ_JOBS (WorkQueue, one message per subject, discard new
 * per subject) so the server does the same bookkeeping for both.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DiscardPolicy,
  jetstream,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { AsyncPublisher } from '../src/actors/nats/publisher.js';
import { BenchChild, childDrainCpu, perJob, resetJetStream, row, wallNow, type Row } from './util.js';

export const RAW_STREAM = 'BENCH_RAW';
export const RAW_SUBJECT_PREFIX = 'bench.raw.q.';
export const RAW_CONSUMER = 'bench-raw';
export const RAW_BUCKET = 'bench_raw_results';

/** How the raw code talks to the server: a promise per `js.publish` / `kv.put`, or the shared-inbox path. */
export type RawVariant = 'js' | 'async';

export interface RawSettings {
  jobs: number;
  concurrency: number;
  /** Publishes in flight at once (each window awaited with Promise.all). */
  window: number;
  /** Messages per pull request of `consume()`. */
  pullBatch: number;
}

const encoder = new TextEncoder();
export const WARMUP_JOBS = 2000;

/** About the size and shape of a naq job message, so bytes on the wire are comparable. */
export function jobPayload(i: number): Uint8Array {
  return encoder.encode(JSON.stringify({ v: 1, id: String(i), name: 'noop', queue: 'bench', data: { i }, attempts: 1, ts: Date.now() }));
}

/** About the size of a naq job record with its result. */
function resultPayload(key: string): Uint8Array {
  const now = Date.now();
  return encoder.encode(
    JSON.stringify({ v: 1, id: key, name: 'noop', queue: 'bench', status: 'completed', maxAttempts: 1, attempts: [{ n: 1, startedAt: now, finishedAt: now }], result: null }),
  );
}

export async function createRawResources(jsm: JetStreamManager, nc: NatsConnection, pullBatch: number): Promise<void> {
  await jsm.streams.add({
    name: RAW_STREAM,
    subjects: ['bench.raw.>'],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: 1,
    max_msgs_per_subject: 1,
    discard: DiscardPolicy.New,
    discard_new_per_subject: true,
  });
  await jsm.consumers.add(RAW_STREAM, {
    durable_name: RAW_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    filter_subject: `${RAW_SUBJECT_PREFIX}>`,
    ack_wait: 30_000_000_000,
    // Must not be what limits the run: the in-flight cap of the drain loop is.
    max_ack_pending: Math.max(1000, pullBatch * 2),
  });
  await new Kvm(nc).create(RAW_BUCKET, { history: 1, storage: StorageType.File });
}

/** Publishes jobs 0..n-1 (one subject each), `window` in flight at a time. Resolves when all are acked. */
export async function publishJobs(js: JetStreamClient, pub: AsyncPublisher | undefined, n: number, window: number): Promise<void> {
  for (let start = 0; start < n; start += window) {
    const end = Math.min(n, start + window);
    const acks: Promise<unknown>[] = [];
    for (let i = start; i < end; i++) {
      const subject = RAW_SUBJECT_PREFIX + i;
      acks.push(pub ? pub.publish(subject, jobPayload(i)) : js.publish(subject, jobPayload(i)));
    }
    await Promise.all(acks);
  }
}

export interface DrainHandle {
  /** Wall-clock time the first message arrived. */
  readonly first: Promise<number>;
  /** Wall-clock time the n-th ack reached the server (after a flush). */
  readonly done: Promise<number>;
}

/**
 * Consumes until `n` jobs are done. Per message: write the result to KV, then ack once the
 * write is confirmed; at most `concurrency` such writes in flight, like a worker's pool.
 * Returns once the pull subscription is up, so a producer can start after it.
 */
export async function startDrain(
  nc: NatsConnection,
  js: JetStreamClient,
  kv: KV | undefined,
  pub: AsyncPublisher | undefined,
  settings: Pick<RawSettings, 'concurrency' | 'pullBatch'>,
  n: number,
  onJob?: () => void,
): Promise<DrainHandle> {
  const consumer = await js.consumers.get(RAW_STREAM, RAW_CONSUMER);
  const messages = await consumer.consume({ max_messages: settings.pullBatch });
  let resolveFirst!: (t: number) => void;
  let resolveDone!: (t: number) => void;
  let rejectDone!: (error: unknown) => void;
  const first = new Promise<number>((r) => (resolveFirst = r));
  const done = new Promise<number>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  // Awaited later (after the producer has run): until then a failure must not count as unhandled.
  done.catch(() => undefined);
  let completed = 0;
  let inFlight = 0;
  let slot: (() => void) | undefined;
  let failures = 0;

  const write = (m: JsMsg): Promise<unknown> => {
    const key = m.subject.slice(RAW_SUBJECT_PREFIX.length);
    return pub ? pub.publish(`$KV.${RAW_BUCKET}.${key}`, resultPayload(key)) : kv!.put(key, resultPayload(key));
  };

  const finished = (): void => {
    inFlight--;
    if (slot) {
      const wake = slot;
      slot = undefined;
      wake();
    }
  };

  void (async () => {
    let seen = 0;
    for await (const m of messages) {
      if (seen++ === 0) resolveFirst(wallNow());
      inFlight++;
      write(m).then(
        () => {
          m.ack();
          finished();
          onJob?.();
          if (++completed === n) {
            messages.stop();
            // The ack is a fire-and-forget publish: the flush is what says the server has it.
            nc.flush().then(() => resolveDone(wallNow()), rejectDone);
          }
        },
        () => {
          // A failed write is redelivered, as a worker would do: nak and carry on.
          failures++;
          m.nak();
          finished();
          if (failures > 1000) rejectDone(new Error('more than 1000 result writes failed'));
        },
      );
      if (inFlight >= settings.concurrency) await new Promise<void>((r) => (slot = r));
    }
  })().catch(rejectDone);

  return { first, done };
}

export interface RawContext {
  url: string;
  nc: NatsConnection;
  jsm: JetStreamManager;
  settings: RawSettings;
  log: (line: string) => void;
  /** Compiled script of the raw consumer child. */
  consumerScript: string;
  /** nats-server's CPU µs so far (util.processCpuUs), for its CPU per job on the drain lines. */
  serverCpuUs?: () => number | undefined;
}

const ENQUEUE_LABEL: Record<RawVariant, string> = { js: 'js.publish (windowed)', async: 'publish-async' };
export const DRAIN_LABEL: Record<RawVariant, string> = { js: 'kv.put (awaited, 100 concurrent)', async: 'publish-async to $KV' };
/** The raw drain measured in naq's shape: a fresh consumer process draining the backlog. */
export const FRESH_DRAIN_LABEL = 'publish-async to $KV, fresh child process';
const E2E_LABEL: Record<RawVariant, string> = { js: 'js.publish + kv.put', async: 'publish-async' };

/**
 * Every raw line. Each variant gets a fresh stream, consumer and bucket: its enqueue runs on
 * an empty stream and leaves exactly the n-job backlog its drain then consumes.
 */
export async function runRaw(ctx: RawContext): Promise<Row[]> {
  const { nc, jsm, settings } = ctx;
  const n = settings.jobs;
  const js = jetstream(nc);
  const rows: Row[] = [];
  const pubFor = (variant: RawVariant): AsyncPublisher | undefined =>
    variant === 'async' ? new AsyncPublisher(nc, { timeoutMs: 30_000 }) : undefined;

  // Warm-up, untimed: the first variant measured must not pay for JIT compilation alone.
  for (const variant of ['js', 'async'] as const) {
    await resetJetStream(jsm);
    await createRawResources(jsm, nc, settings.pullBatch);
    const kv = await new Kvm(nc).open(RAW_BUCKET);
    const pub = pubFor(variant);
    const warm = Math.min(n, WARMUP_JOBS);
    await publishJobs(js, pub, warm, settings.window);
    await (await startDrain(nc, js, kv, pub, settings, warm)).done;
    pub?.close();
  }

  for (const variant of ['js', 'async'] as const) {
    await resetJetStream(jsm);
    await createRawResources(jsm, nc, settings.pullBatch);
    const kv = await new Kvm(nc).open(RAW_BUCKET);
    const pub = pubFor(variant);
    try {
      let t0 = wallNow();
      await publishJobs(js, pub, n, settings.window);
      rows.push(row('enqueue', 'raw', ENQUEUE_LABEL[variant], n, wallNow() - t0));
      ctx.log(`  raw enqueue ${ENQUEUE_LABEL[variant]}: done`);

      const state = await jsm.streams.info(RAW_STREAM);
      if (state.state.messages !== n) throw new Error(`backlog has ${state.state.messages} messages, expected ${n}`);
      // The drain runs in this process, which does nothing else meanwhile: its CPU is the consumer's.
      const cpu0 = process.cpuUsage();
      const server0 = ctx.serverCpuUs?.();
      const drain = await startDrain(nc, js, kv, pub, settings, n);
      const end = await drain.done;
      const cpu = process.cpuUsage(cpu0);
      const serverCpu = perJob(server0, ctx.serverCpuUs?.(), n);
      t0 = await drain.first;
      rows.push(
        row('drain', 'raw', DRAIN_LABEL[variant], n, end - t0, {
          cpuUsPerJob: (cpu.user + cpu.system) / n,
          ...(serverCpu !== undefined ? { serverCpuUsPerJob: serverCpu } : {}),
        }),
      );
      ctx.log(`  raw drain ${DRAIN_LABEL[variant]}: done`);
    } finally {
      pub?.close();
    }
  }

  // The drain again with the consumer in a fresh child process, as the naq worker is measured
  // (no warm-up, an event loop of its own). Not the bar — the warm in-process line above is —
  // but the same shape as naq's line, so a reader can compare like with like.
  {
    await resetJetStream(jsm);
    await createRawResources(jsm, nc, settings.pullBatch);
    const pub = pubFor('async');
    const child = new BenchChild(
      ctx.consumerScript,
      { url: ctx.url, variant: 'async', jobs: n, concurrency: settings.concurrency, pullBatch: settings.pullBatch },
      ctx.serverCpuUs,
    );
    try {
      await publishJobs(js, pub, n, settings.window);
      await child.next('ready');
      const first = await child.next('first');
      const done = await child.next('done');
      rows.push(row('drain', 'raw', FRESH_DRAIN_LABEL, n, done.t - first.t, childDrainCpu(first, done, n)));
      ctx.log(`  raw drain ${FRESH_DRAIN_LABEL}: done`);
    } finally {
      pub?.close();
      await child.stop();
    }
  }

  // End to end, first in one process (producer and consumer share a CPU core), then with the
  // consumer in a child process — the shape naq and BullMQ are measured in.
  for (const variant of ['js', 'async'] as const) {
    await resetJetStream(jsm);
    await createRawResources(jsm, nc, settings.pullBatch);
    const kv = await new Kvm(nc).open(RAW_BUCKET);
    const pub = pubFor(variant);
    try {
      const drain = await startDrain(nc, js, kv, pub, settings, n);
      const t0 = wallNow();
      await publishJobs(js, pub, n, settings.window);
      const end = await drain.done;
      rows.push(row('end-to-end', 'raw', `${E2E_LABEL[variant]}, one process`, n, end - t0));
      ctx.log(`  raw end-to-end ${E2E_LABEL[variant]} (one process): done`);
    } finally {
      pub?.close();
    }
  }

  for (const variant of ['js', 'async'] as const) {
    await resetJetStream(jsm);
    await createRawResources(jsm, nc, settings.pullBatch);
    const pub = pubFor(variant);
    const child = new BenchChild(ctx.consumerScript, { url: ctx.url, variant, jobs: n, concurrency: settings.concurrency, pullBatch: settings.pullBatch });
    try {
      await child.next('ready');
      const t0 = wallNow();
      await publishJobs(js, pub, n, settings.window);
      const done = await child.next('done');
      const rss = await child.stop();
      rows.push(row('end-to-end', 'raw', `${E2E_LABEL[variant]}, consumer in child`, n, done.t - t0, rss ? { peakRssBytes: rss.vmHwm ?? rss.peakRss } : {}));
      ctx.log(`  raw end-to-end ${E2E_LABEL[variant]} (consumer in child): done`);
    } finally {
      pub?.close();
      await child.stop();
    }
  }
  await resetJetStream(jsm);
  return rows;
}

/** A bench connection: a server that goes away mid-run should fail the run, not be waited for. */
export function connectBench(url: string, name: string): Promise<NatsConnection> {
  return connect({ servers: url, name, maxReconnectAttempts: 0 });
}
