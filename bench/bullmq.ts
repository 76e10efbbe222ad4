/**
 * BullMQ on the local Redis doing the same no-op jobs, with its defaults (results kept),
 * the worker in a child process like naq's.
 */
import { Queue } from 'bullmq';
import { WARMUP_JOBS } from './raw.js';
import { BenchChild, redisAnswers, row, wallNow, type Row } from './util.js';

export const REDIS = { host: '127.0.0.1', port: 6379 };

export interface BullmqSettings {
  jobs: number;
  concurrency: number;
  chunk: number;
}

export interface BullmqContext {
  settings: BullmqSettings;
  log: (line: string) => void;
  workerScript: string;
}

export interface BullmqOutcome {
  rows: Row[];
  skipped?: string;
  version?: string;
}

async function addAll(queue: Queue, n: number, chunk: number): Promise<void> {
  for (let start = 0; start < n; start += chunk) {
    const jobs = [];
    for (let i = start; i < Math.min(n, start + chunk); i++) jobs.push({ name: 'noop', data: { i } });
    await queue.addBulk(jobs);
  }
}

/**
 * A queue nobody else uses, removed afterwards: a leftover backlog from an earlier or
 * concurrent run would be drained by this run's worker and skew the figures.
 */
function freshQueue(phase: string): Queue {
  return new Queue(`naq-bench-${phase}-${process.pid}-${Date.now()}`, { connection: { ...REDIS } });
}

async function discard(queue: Queue): Promise<void> {
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close().catch(() => undefined);
}

export async function runBullmq(ctx: BullmqContext): Promise<BullmqOutcome> {
  if (!(await redisAnswers(REDIS.host, REDIS.port))) return { rows: [], skipped: 'BullMQ skipped: no Redis' };
  const { settings } = ctx;
  const n = settings.jobs;
  const rows: Row[] = [];
  const workerConfig = (queue: Queue) => ({ queue: queue.name, jobs: n, concurrency: settings.concurrency, ...REDIS });
  let child: BenchChild | undefined;
  let queue: Queue | undefined;
  try {
    // Warm-up, untimed: BullMQ loads its Lua scripts on first use, and JIT compilation should not count.
    queue = freshQueue('warmup');
    await addAll(queue, Math.min(n, WARMUP_JOBS), settings.chunk);
    await discard(queue);

    // addBulk, leaving the backlog the drain line consumes.
    queue = freshQueue('drain');
    await queue.waitUntilReady();
    let t0 = wallNow();
    await addAll(queue, n, settings.chunk);
    rows.push(row('enqueue', 'bullmq', `addBulk (chunks of ${settings.chunk})`, n, wallNow() - t0));
    ctx.log('  BullMQ enqueue: done');
    const waiting = await queue.getWaitingCount();
    if (waiting !== n) throw new Error(`after addBulk of ${n} jobs, ${waiting} are waiting`);

    child = new BenchChild(ctx.workerScript, workerConfig(queue));
    const first = await child.next('first');
    const done = await child.next('done');
    const rss = await child.stop();
    child = undefined;
    rows.push(
      row('drain', 'bullmq', `1 worker process, concurrency ${settings.concurrency}`, n, done.t - first.t, rss ? { peakRssBytes: rss.vmHwm ?? rss.peakRss } : {}),
    );
    ctx.log('  BullMQ drain: done');
    await discard(queue);

    queue = freshQueue('e2e');
    await queue.waitUntilReady();
    child = new BenchChild(ctx.workerScript, workerConfig(queue));
    await child.next('ready');
    t0 = wallNow();
    await addAll(queue, n, settings.chunk);
    const e2eDone = await child.next('done');
    const e2eRss = await child.stop();
    child = undefined;
    rows.push(row('end-to-end', 'bullmq', 'producer + 1 worker process', n, e2eDone.t - t0, e2eRss ? { peakRssBytes: e2eRss.vmHwm ?? e2eRss.peakRss } : {}));
    ctx.log('  BullMQ end-to-end: done');
    return { rows };
  } catch (error) {
    return { rows, skipped: `BullMQ failed: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    await child?.stop();
    if (queue) await discard(queue);
  }
}
