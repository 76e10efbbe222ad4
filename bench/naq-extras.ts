/**
 * naq-only lines of the bench: end-to-end throughput with 1, 2 and 4 worker processes, and
 * enqueue-to-start latency at light load (100 jobs/s).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { CreateNaqLike, NaqLike } from './naq-contract.js';
import { BenchChild, resetJetStream, sleep, wallNow } from './util.js';

const QUEUE = 'bench';

export interface ScalingResult {
  workers: number;
  jobs: number;
  seconds: number;
  jobsPerSec: number;
}

export interface LatencyResult {
  jobs: number;
  ratePerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

async function emptyAt(producer: NaqLike): Promise<number> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = await producer.queueStats!(QUEUE);
    if (s.pending === 0 && s.inFlight === 0) return wallNow();
    if (Date.now() > deadline) throw new Error(`queue not empty: ${JSON.stringify(s)}`);
    await sleep(5);
  }
}

/** End to end with k worker processes: from the first enqueue to the queue being empty. */
export async function runScaling(
  createNaq: CreateNaqLike,
  jsm: JetStreamManager,
  url: string,
  workerScript: string,
  jobs: number,
  concurrency: number,
  counts: number[] = [1, 2, 4],
): Promise<ScalingResult[]> {
  const results: ScalingResult[] = [];
  for (const k of counts) {
    await resetJetStream(jsm);
    const producer = createNaq({ nats: { url }, log: { level: 'warn' } });
    await producer.start({ timeoutMs: 10_000 });
    const children = Array.from({ length: k }, () => new BenchChild(workerScript, { url, queue: QUEUE, jobs: jobs + 1, concurrency }));
    try {
      await Promise.all(children.map((c) => c.next('ready')));
      const t0 = wallNow();
      for (let i = 0; i < jobs; i += 5000) {
        await producer.enqueueBulk!(Array.from({ length: Math.min(5000, jobs - i) }, (_, j) => ({ name: 'noop', data: { i: i + j }, opts: { queue: QUEUE } })));
      }
      const seconds = ((await emptyAt(producer)) - t0) / 1000;
      results.push({ workers: k, jobs, seconds, jobsPerSec: jobs / seconds });
    } finally {
      await Promise.all(children.map((c) => c.stop()));
      await producer.stop();
    }
  }
  return results;
}

/** Light load: one job every 1000/rate ms, each carrying its enqueue time; the worker measures start − enqueue. */
export async function runLatency(
  createNaq: CreateNaqLike,
  jsm: JetStreamManager,
  url: string,
  workerScript: string,
  jobs = 500,
  ratePerSec = 100,
): Promise<LatencyResult> {
  await resetJetStream(jsm);
  const producer = createNaq({ nats: { url }, log: { level: 'warn' } });
  await producer.start({ timeoutMs: 10_000 });
  const child = new BenchChild(workerScript, { url, queue: QUEUE, jobs, concurrency: 10 });
  try {
    await child.next('ready');
    const interval = 1000 / ratePerSec;
    const start = performance.now();
    for (let i = 0; i < jobs; i++) {
      // Paced against the start, so a slow enqueue does not stretch the schedule.
      const wait = start + i * interval - performance.now();
      if (wait > 0) await sleep(wait);
      void producer.enqueue!('timed', { t: wallNow() }, { queue: QUEUE });
    }
    const l = await child.next('latency', 60_000);
    return { jobs: l.count, ratePerSec, p50Ms: l.p50, p99Ms: l.p99, maxMs: l.max };
  } finally {
    await child.stop();
    await producer.stop();
  }
}
