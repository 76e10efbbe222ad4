/**
 * naq doing the raw lines' work through its public API: a producer in this process, one
 * worker in a child process (bench/worker-process.ts).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { loadCreateNaq, NAQ_UNAVAILABLE, type CreateNaqLike, type NaqLike } from './naq-contract.js';
import { WARMUP_JOBS } from './raw.js';
import { BenchChild, childDrainCpu, resetJetStream, row, sleep, UnavailableError, wallNow, type Row } from './util.js';

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
  /** Which round this is (from 1): the order of the variants turns with it. */
  round?: number;
  /** nats-server's CPU µs so far (util.processCpuUs), for its CPU per job on the drain lines. */
  serverCpuUs?: () => number | undefined;
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
    const t0 = wallNow();
    await enqueueAll(producer, n, settings.chunk);
    rows.push(row('enqueue', 'naq', `enqueueBulk (chunks of ${settings.chunk})`, n, wallNow() - t0));
    ctx.log('  naq enqueue: done');
    if (typeof producer.queueStats === 'function') {
      const stats = await producer.queueStats(NAQ_QUEUE);
      if (stats.pending !== n) throw new Error(`after enqueueBulk of ${n} jobs, queueStats says ${stats.pending} pending`);
    }

    await producer.stop();
    producer = undefined;

    // Drain and end to end: the default, and each part switched off (what it costs), in an
    // order that turns with the round: whichever ran first after the enqueue line was
    // measurably slower here, which read as the default costing more than it does.
    const variants: Variant[] = [
      { tag: 'default', drain: `1 worker process, concurrency ${settings.concurrency}`, e2e: 'producer + 1 worker process', worker: workerConfig, events: true },
      { tag: EVENTS_OFF, drain: EVENTS_OFF, e2e: EVENTS_OFF, worker: { ...workerConfig, events: false }, events: false },
      { tag: INDEX_OFF, drain: INDEX_OFF, e2e: INDEX_OFF, worker: { ...workerConfig, index: false }, events: true },
    ];
    const turn = (ctx.round ?? 0) % variants.length;
    for (const v of [...variants.slice(turn), ...variants.slice(0, turn)]) {
      rows.push(...(await variantRows(ctx, createNaq, v)));
      ctx.log(`  naq ${v.tag}: done`);
    }
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

interface Variant {
  tag: string;
  /** The rows' labels. */
  drain: string;
  e2e: string;
  worker: Record<string, unknown>;
  /** The producer's event log. */
  events: boolean;
}

/**
 * Drain (from the worker's first job to the queue being empty) and end to end (the worker up
 * and idle, then the producer enqueues) with the worker configured as the variant says.
 */
async function variantRows(ctx: NaqContext, createNaq: CreateNaqLike, v: Variant): Promise<Row[]> {
  const { jsm, settings, url } = ctx;
  const n = settings.jobs;
  const rows: Row[] = [];
  let producer: NaqLike | undefined;
  let child: BenchChild | undefined;
  try {
    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url, v.events);
    await enqueueAll(producer, n, settings.chunk);
    child = new BenchChild(ctx.workerScript, v.worker, ctx.serverCpuUs);
    const first = await child.next('first');
    const done = await child.next('done');
    const empty = await queueEmptyAt(producer, done.t);
    ctx.log(`  naq drain (${v.tag}): first job → last handler ${(done.t - first.t).toFixed(0)} ms, → queue empty ${(empty.t - first.t).toFixed(0)} ms`);
    const rss = await child.stop();
    child = undefined;
    rows.push(
      row('drain', 'naq', v.drain, n, empty.t - first.t, {
        ...(rss ? { peakRssBytes: rss.vmHwm ?? rss.peakRss } : {}),
        ...childDrainCpu(first, done, n),
        ...(empty.note ? { note: empty.note } : {}),
      }),
    );
    await producer.stop();
    producer = undefined;

    await resetJetStream(jsm);
    producer = await startProducer(createNaq, url, v.events);
    child = new BenchChild(ctx.workerScript, v.worker);
    await child.next('ready');
    const t0 = wallNow();
    await enqueueAll(producer, n, settings.chunk);
    const e2e = await child.next('done');
    const e2eEmpty = await queueEmptyAt(producer, e2e.t);
    const e2eRss = await child.stop();
    child = undefined;
    rows.push(
      row('end-to-end', 'naq', v.e2e, n, e2eEmpty.t - t0, {
        ...(e2eRss ? { peakRssBytes: e2eRss.vmHwm ?? e2eRss.peakRss } : {}),
        ...(e2eEmpty.note ? { note: e2eEmpty.note } : {}),
      }),
    );
    return rows;
  } finally {
    await child?.stop();
    await producer?.stop().catch(() => undefined);
  }
}
