import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, type NaqConfigInput } from '../src/config.js';
import {
  ensureEventsStream,
  eventLogFor,
  eventsStreamOptions,
  history,
  percentile,
  stats,
  subscribe,
  type NaqEventInput,
  type StoredEvent,
} from '../src/event-log.js';
import { connectTo, startServer, stopAllServers, type TestServer } from './harness.js';

const connections: NatsConnection[] = [];
afterEach(async () => {
  await Promise.allSettled(connections.splice(0).map((nc) => nc.close()));
});
afterAll(stopAllServers);

/** A raw connection with the event log of a process, its stream ensured. */
async function eventsOn(server: TestServer, events: NaqConfigInput['events'] = {}) {
  const config = resolveConfig({ nats: { url: server.url }, ops: { timeoutMs: 5000 }, events: { flushMs: 20, ...events } });
  const nc = await connectTo(server, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  connections.push(nc);
  await ensureEventsStream(await jetstreamManager(nc), config.prefix, eventsStreamOptions(config));
  return { nc, log: eventLogFor(nc, config) };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The first `n` events a subscription yields. */
async function take(iterable: AsyncIterable<StoredEvent>, n: number): Promise<StoredEvent[]> {
  const seen: StoredEvent[] = [];
  if (n === 0) return seen;
  for await (const e of iterable) {
    seen.push(e);
    if (seen.length === n) break;
  }
  return seen;
}

const withTimeout = <T>(p: Promise<T>, ms = 10_000) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no result in ${ms} ms`)), ms))]);

describe('event log on a real nats-server', () => {
  it('returns a job’s full history in order, and filters by queue, type, time, sequence and limit', async () => {
    const server = await startServer();
    // Small batches: the job's events spread over several messages, interleaved with others.
    const { nc, log } = await eventsOn(server, { maxBatch: 2 });
    const lifecycle: NaqEventInput[] = [
      { type: 'job.enqueued', queue: 'mail', jobId: 'A', data: { name: 'send' } },
      { type: 'job.started', queue: 'mail', jobId: 'A', workerId: 'w1', data: { attempt: 1 } },
      { type: 'job.progress', queue: 'mail', jobId: 'A', workerId: 'w1', data: { progress: 50 } },
      { type: 'job.retrying', queue: 'mail', jobId: 'A', workerId: 'w1', data: { attempt: 1, delayMs: 100 } },
      { type: 'job.started', queue: 'mail', jobId: 'A', workerId: 'w2', data: { attempt: 2 } },
      { type: 'job.completed', queue: 'mail', jobId: 'A', workerId: 'w2', data: { attempt: 2, durationMs: 12 } },
    ];
    for (const [i, event] of lifecycle.entries()) {
      log.emit(event);
      log.emit({ type: 'job.enqueued', queue: 'mail', jobId: `other${i}` });
      log.emit({ type: 'job.enqueued', queue: 'img', jobId: `img${i}` });
      if (i === 2) await log.flush();
    }
    await log.flush();
    expect(log.published).toBe(18);

    const a = await history(nc, 'naq', { jobId: 'A' });
    expect(a.map((e) => [e.type, e.workerId])).toEqual(lifecycle.map((e) => [e.type, e.workerId]));
    expect(a.map((e) => e.data)).toEqual(lifecycle.map((e) => e.data));
    expect(a.every((e) => e.v === 1 && e.queue === 'mail' && typeof e.ts === 'number')).toBe(true);
    const seqs = a.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));

    expect(await history(nc, 'naq', { queue: 'mail', jobId: 'A' })).toEqual(a);
    expect((await history(nc, 'naq', { queue: 'img' })).map((e) => e.jobId)).toEqual(lifecycle.map((_, i) => `img${i}`));
    expect((await history(nc, 'naq', { jobId: 'A', types: ['job.started'] })).map((e) => e.workerId)).toEqual(['w1', 'w2']);
    expect((await history(nc, 'naq', { limit: 4 })).map((e) => e.jobId)).toEqual(['A', 'other0', 'img0', 'A']);
    expect((await history(nc, 'naq', { jobId: 'A', sinceSeq: a[4]!.seq })).map((e) => e.type)).toEqual(['job.started', 'job.completed']);
    const later = Date.now() + 1;
    await new Promise((r) => setTimeout(r, 5));
    log.emit({ type: 'job.cancelled', queue: 'mail', jobId: 'late' });
    await log.flush();
    expect((await history(nc, 'naq', { since: later })).map((e) => e.jobId)).toEqual(['late']);
    expect(await history(nc, 'naq', { since: Date.now() + 60_000 })).toEqual([]);
    expect(await history(nc, 'naq', { jobId: 'nobody' })).toEqual([]);
  });

  it('tails live events: only those after the subscription, filtered', async () => {
    const server = await startServer();
    const { nc, log } = await eventsOn(server);
    log.emit({ type: 'job.enqueued', queue: 'live', jobId: 'before' });
    await log.flush();

    const all = await subscribe(nc, 'naq', { queue: 'live' });
    const done = await subscribe(nc, 'naq', { types: ['job.completed'] });
    const allSeen = take(all, 3);
    const doneSeen = take(done, 2);
    log.emit({ type: 'job.started', queue: 'live', jobId: 'x' });
    log.emit({ type: 'job.completed', queue: 'elsewhere', jobId: 'y', data: { durationMs: 1 } });
    await log.flush();
    log.emit({ type: 'job.completed', queue: 'live', jobId: 'x', data: { durationMs: 2 } });
    log.emit({ type: 'worker.stopped', queue: 'live', workerId: 'w' });
    await log.flush();

    expect((await withTimeout(allSeen)).map((e) => e.jobId ?? e.workerId)).toEqual(['x', 'x', 'w']);
    expect((await withTimeout(doneSeen)).map((e) => `${e.queue}/${e.jobId}`)).toEqual(['elsewhere/y', 'live/x']);
    all.stop();
    done.stop();
  });

  it('stats match what was run: counts, rate, failure ratio, duration percentiles', async () => {
    const server = await startServer();
    const { nc, log } = await eventsOn(server, { maxBatch: 50 });
    const since = Date.now();
    const durations: number[] = [];
    let completed = 0;
    let failed = 0;
    for (let i = 0; i < 120; i++) {
      const queue = i % 3 === 0 ? 'b' : 'a';
      const durationMs = (i * 37) % 500;
      log.emit({ type: 'job.enqueued', queue, jobId: `j${i}` });
      log.emit({ type: 'job.started', queue, jobId: `j${i}` });
      if (i % 10 === 0) {
        log.emit({ type: 'job.retrying', queue, jobId: `j${i}`, data: { attempt: 1 } });
        log.emit({ type: 'job.failed', queue, jobId: `j${i}`, data: { durationMs } });
        log.emit({ type: 'job.dead', queue, jobId: `j${i}` });
        failed++;
      } else {
        log.emit({ type: 'job.completed', queue, jobId: `j${i}`, data: { durationMs } });
        completed++;
      }
      durations.push(durationMs);
    }
    log.emit({ type: 'leader.elected', queue: '_system', data: { id: 'me' } });
    await log.flush();
    const until = Date.now();

    const s = await stats(nc, 'naq', { since, until });
    const sorted = [...durations].sort((x, y) => x - y);
    const total = 120 * 3 + failed * 2 + 1;
    expect(s.total).toBe(total);
    expect(s.byType).toEqual({
      'job.enqueued': 120,
      'job.started': 120,
      'job.completed': completed,
      'job.retrying': failed,
      'job.failed': failed,
      'job.dead': failed,
      'leader.elected': 1,
    });
    expect(s.byQueue).toEqual({ a: 80 * 3 + 8 * 2, b: 40 * 3 + 4 * 2, _system: 1 });
    expect(s.failureRatio).toBeCloseTo(failed / (completed + failed));
    expect(s.durationMs).toEqual({ p50: percentile(sorted, 50), p95: percentile(sorted, 95), count: 120 });
    expect(s.durationMs.p50).toBe(sorted[59]);
    expect(s.durationMs.p95).toBe(sorted[113]);
    expect(s.ratePerSec).toBeCloseTo(total / ((until - since) / 1000));

    const b = await stats(nc, 'naq', { queue: 'b', since, until });
    expect(b.total).toBe(40 * 3 + 4 * 2);
    expect(b.byQueue).toEqual({ b: 128 });
    expect(b.failureRatio).toBeCloseTo(4 / 40);
    const before = await stats(nc, 'naq', { since: since - 60_000, until: since - 1 });
    expect(before.total).toBe(0);
  });

  it('delivers the events buffered while the nats-server restarts', async () => {
    const server = await startServer();
    const { nc, log } = await eventsOn(server);
    log.emit({ type: 'worker.started', queue: 'r', workerId: 'w' });
    await log.flush();

    await server.kill('SIGKILL');
    await until(() => !log.online, 5000);
    for (let i = 0; i < 200; i++) log.emit({ type: 'job.completed', queue: 'r', jobId: `down${i}`, data: { durationMs: i } });
    expect(log.buffered).toBe(200);
    await server.restart();

    await until(async () => log.published === 201 && log.buffered === 0 && log.inFlight === 0, 20_000);
    const events = await history(nc, 'naq', { queue: 'r', limit: 10_000 });
    expect(events.map((e) => e.jobId ?? e.workerId)).toEqual(['w', ...Array.from({ length: 200 }, (_, i) => `down${i}`)]);
    expect(log.dropped).toBe(0);
  });

  it('with a full buffer during an outage keeps the newest events and reports exactly how many it dropped', async () => {
    const server = await startServer();
    const { nc, log } = await eventsOn(server, { maxBuffered: 10 });
    await server.kill('SIGKILL');
    await until(() => !log.online, 5000);
    for (let i = 0; i < 25; i++) log.emit({ type: 'job.enqueued', queue: 'tiny', jobId: `e${i}` });
    expect(log.buffered).toBe(10);
    expect(log.dropped).toBe(15);
    await server.restart();

    await until(async () => (await history(nc, 'naq', { types: ['events.dropped'] })).length > 0, 20_000);
    const [report] = await history(nc, 'naq', { queue: '_system', types: ['events.dropped'] });
    expect(report).toMatchObject({ type: 'events.dropped', queue: '_system', data: { count: 15 } });
    const kept = await history(nc, 'naq', { queue: 'tiny' });
    expect(kept.map((e) => e.jobId)).toEqual(Array.from({ length: 10 }, (_, i) => `e${i + 15}`));
  });
});
