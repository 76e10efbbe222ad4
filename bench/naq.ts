/**
 * naq doing the raw lines' work through its public API: a producer in this process, one
 * worker in a child process (bench/worker-process.ts).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { loadCreateNaq, NAQ_UNAVAILABLE, type CreateNaqLike, type NaqLike } from './naq-contract.js';
import { WARMUP_JOBS } from './raw.js';
import { BenchChild, resetJetStream, row, sleep, UnavailableError, wallNow, type Row } from './util.js';

export const NAQ_QUEUE = 'bench';

export interface NaqSettings {
  jobs: number;
  concurrency: number;
  /** Jobs per enqueueBulk call. */
  chunk: number;
}

export interface NaqContext {
  url: string;
  jsm: JetStreamManager;
  settings: NaqSettings;
  log: (line: string) => void;
  workerScript: string;
}

export interface NaqOutcome {
  rows: Row[];
  /** Why the naq lines (or some of them) are missing. */
  skipped?: string;
}

async function enqueueAll(producer: NaqLike, n: number, chunk: number, queue = NAQ_QUEUE): Promise<void> {
  for (let start = 0; start < n; start += chunk) {
    const jobs = [];
    for (let i = start; i < Math.min(n, start + chunk); i++) jobs.push({ name: 'noop', data: { i }, opts: { queue } });
    const ids = await producer.enqueueBulk!(jobs);
    if (ids.length !== jobs.length) throw new Error(`enqueueBulk returned ${ids.length} ids for ${jobs.length} jobs`);
  }
}

/**
 * The moment the queue is empty — nothing pending, nothing awaiting an ack — which is a
 * little after the last handler returned: its record write and ack are still on their way.
 * Polled tightly because the poll's granularity is added to the measured time.
 */
async function queueEmptyAt(producer: NaqLike, fallback: number): Promise<{ t: number; note?: string }> {
  if (typeof producer.queueStats !== 'function') return { t: fallback, note: 'no queueStats: end = last handler return' };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const stats = await producer.queueStats(NAQ_QUEUE);
    if (stats.pending === 0 && stats.inFlight === 0) return { t: wallNow() };
    if (Date.now() > deadline) {
      return { t: fallback, note: `queue not empty 30 s after the last handler (pending ${stats.pending}, in flight ${stats.inFlight})` };
    }
    await sleep(5);
  }
}

/** Rows measured with naq's event log turned off, to show what the events cost. */
export const EVENTS_OFF = 'events off';
/** Rows measured with the job index turned off, to show what listing costs the job path. */
export const INDEX_OFF = 'job index off';

async function startProducer(createNaq: CreateNaqLike, url: string, events = true): Promise<NaqLike> {
  const producer = createNaq({ nats: { url }, log: { level: 'warn' }, events: { enabled: events } });
  if (typeof producer.enqueueBulk !== 'function') throw new UnavailableError(NAQ_UNAVAILABLE);
  await producer.start({ timeoutMs: 10_000 });
  return producer;
}

export async function runNaq(ctx: NaqContext): Promise<NaqOutcome> {
  const { jsm, settings, url } = ctx;
  const n = settings.jobs;
  const rows: Row[] = [];
  const workerConfig = { url, queue: NAQ_QUEUE, jobs: n, concurrency: settings.concurrency };
  let createNaq: CreateNaqLike;
  try {
    createNaq = await loadCreateNaq();
  } catch (error) {
    return { rows, skipped: `naq could not be loaded: ${error instanceof Error ? error.message : String(error)}` };
  }

  let producer: NaqLike | undefined;
  let child: BenchChild | undefined;
  try {
    // Warm-up, untimed, so the enqueue line does not pay for JIT compilation of naq's code.
    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url);
    await enqueueAll(producer, Math.min(n, WARMUP_JOBS), settings.chunk, 'warmup');
    await producer.stop();
    producer = undefined;

    // Enqueue, which leaves the backlog the drain line consumes.
    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url);
    let t0 = wallNow();
    await enqueueAll(producer, n, settings.chunk);
    rows.push(row('enqueue', 'naq', `enqueueBulk (chunks of ${settings.chunk})`, n, wallNow() - t0));
    ctx.log('  naq enqueue: done');
    if (typeof producer.queueStats === 'function') {
      const stats = await producer.queueStats(NAQ_QUEUE);
      if (stats.pending !== n) throw new Error(`after enqueueBulk of ${n} jobs, queueStats says ${stats.pending} pending`);
    }

    // Drain: from the worker's first job to the queue being empty.
    child = new BenchChild(ctx.workerScript, workerConfig);
    const first = await child.next('first');
    const done = await child.next('done');
    const empty = await queueEmptyAt(producer, done.t);
    ctx.log(`  naq drain: first job → last handler ${(done.t - first.t).toFixed(0)} ms, → queue empty ${(empty.t - first.t).toFixed(0)} ms`);
    const rss = await child.stop();
    child = undefined;
    rows.push(
      row('drain', 'naq', `1 worker process, concurrency ${settings.concurrency}`, n, empty.t - first.t, {
        ...(rss ? { peakRssBytes: rss.vmHwm ?? rss.peakRss } : {}),
        ...(done.cpuUs !== undefined ? { cpuUsPerJob: done.cpuUs / n } : {}),
        ...(empty.note ? { note: empty.note } : {}),
      }),
    );
    ctx.log('  naq drain: done');
    await producer.stop();
    producer = undefined;

    // End to end: the worker is up and idle, then the producer starts enqueueing.
    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url);
    child = new BenchChild(ctx.workerScript, workerConfig);
    await child.next('ready');
    t0 = wallNow();
    await enqueueAll(producer, n, settings.chunk);
    const e2eDone = await child.next('done');
    const e2eEmpty = await queueEmptyAt(producer, e2eDone.t);
    const e2eRss = await child.stop();
    child = undefined;
    rows.push(
      row('end-to-end', 'naq', `producer + 1 worker process`, n, e2eEmpty.t - t0, {
        ...(e2eRss ? { peakRssBytes: e2eRss.vmHwm ?? e2eRss.peakRss } : {}),
        ...(e2eEmpty.note ? { note: e2eEmpty.note } : {}),
      }),
    );
    ctx.log('  naq end-to-end: done');
    await producer.stop();
    producer = undefined;

    // The same drain and end to end with a part off: the difference is what that part costs.
    rows.push(...(await variantRows(ctx, createNaq, EVENTS_OFF, { ...workerConfig, events: false }, false)));
    ctx.log('  naq with events off: done');
    rows.push(...(await variantRows(ctx, createNaq, INDEX_OFF, { ...workerConfig, index: false }, true)));
    ctx.log('  naq with the job index off: done');
    return { rows };
  } catch (error) {
    if (error instanceof UnavailableError) return { rows, skipped: error.message };
    return { rows, skipped: `naq failed: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    await child?.stop();
    await producer?.stop().catch(() => undefined);
    await resetJetStream(jsm).catch(() => undefined);
  }
}

/** Drain and end to end once more, with the worker configured as `workerConfig` says. */
async function variantRows(ctx: NaqContext, createNaq: CreateNaqLike, variant: string, workerConfig: Record<string, unknown>, producerEvents: boolean): Promise<Row[]> {
  const { jsm, settings, url } = ctx;
  const n = settings.jobs;
  const rows: Row[] = [];
  let producer: NaqLike | undefined;
  let child: BenchChild | undefined;
  try {
    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url, producerEvents);
    await enqueueAll(producer, n, settings.chunk);
    child = new BenchChild(ctx.workerScript, workerConfig);
    const first = await child.next('first');
    const done = await child.next('done');
    const empty = await queueEmptyAt(producer, done.t);
    await child.stop();
    child = undefined;
    rows.push(row('drain', 'naq', variant, n, empty.t - first.t, done.cpuUs !== undefined ? { cpuUsPerJob: done.cpuUs / n } : {}));
    await producer.stop();
    producer = undefined;

    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url, producerEvents);
    child = new BenchChild(ctx.workerScript, workerConfig);
    await child.next('ready');
    const t0 = wallNow();
    await enqueueAll(producer, n, settings.chunk);
    const e2e = await child.next('done');
    const e2eEmpty = await queueEmptyAt(producer, e2e.t);
    await child.stop();
    child = undefined;
    rows.push(row('end-to-end', 'naq', variant, n, e2eEmpty.t - t0));
    return rows;
  } finally {
    await child?.stop();
    await producer?.stop().catch(() => undefined);
  }
}
