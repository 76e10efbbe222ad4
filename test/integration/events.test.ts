import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createActor, setup, type AnyActorRef } from 'xstate';
import { eventsLogic, type EventsRequest } from '../../src/actors/events/service.js';
import { NaqContext } from '../../src/actors/nats/context.js';
import { NatsHandle } from '../../src/actors/nats/connection.js';
import { ask } from '../../src/core/ask.js';
import { resolveConfig, type NaqConfig, type NaqConfigInput } from '../../src/config/index.js';
import { ensureEventsStream, eventsStreamOptions } from '../../src/actors/events/stream.js';
import { EventBuffer, type EventLogCounters } from '../../src/actors/events/buffer.js';
import { history, percentile, stats, subscribe, type EventStats, type EventSubscription } from '../../src/actors/events/queries.js';
import { type NaqEventInput, type StoredEvent } from '../../src/model/event.js';
import { until, connectTo, startServer, stopAllServers, type TestServer } from '../support/harness.js';

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
  return { nc, log: new NaqContext(nc, config, pino({ level: 'silent' })).events };
}

/** Polls `check`; a check that throws (the server is still coming back) counts as not yet. */

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
    expect((await history(nc, 'naq', { queue: 'mail', limit: 3 })).map((e) => e.jobId)).toEqual(['A', 'other0', 'A']);
    expect(await history(nc, 'naq', { limit: 5 })).toHaveLength(5);
    expect((await history(nc, 'naq', { jobId: 'A', sinceSeq: a[4]!.seq })).map((e) => e.type)).toEqual(['job.started', 'job.completed']);
    const later = Date.now() + 1;
    await until(() => Date.now() > later);
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

  it('publishes caught by the outage time out, are put back and arrive once the server is back', async () => {
    const server = await startServer();
    const config = resolveConfig({ nats: { url: server.url }, jobs: { publishTimeoutMs: 300 }, events: { flushMs: 20 } });
    const nc = await connectTo(server, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    connections.push(nc);
    await ensureEventsStream(await jetstreamManager(nc), config.prefix, eventsStreamOptions(config));
    const log = new NaqContext(nc, config, pino({ level: 'silent' })).events;
    await server.kill('SIGKILL');
    await until(() => !log.online, 5000);
    // flush() tries even while offline (it is what a stop calls): these publishes wait in the
    // client's reconnect buffer, time out here, and go out twice once the server is back.
    for (let i = 0; i < 50; i++) log.emit({ type: 'job.started', queue: 'caught', jobId: `c${i}` });
    void log.flush();
    await until(() => log.inFlight === 0 && log.buffered === 50, 5000);
    await server.restart();
    await until(() => log.published === 50 && log.buffered === 0 && log.inFlight === 0, 20_000);
    // The re-sent copies of a batch are dropped by its Nats-Msg-Id: stored once, whenever they land.
    await until(async () => (await history(nc, 'naq', { queue: 'caught' })).length >= 50, 10_000);
    const events = await history(nc, 'naq', { queue: 'caught' });
    expect(events.map((e) => e.jobId)).toEqual(Array.from({ length: 50 }, (_, i) => `c${i}`));
  });

  it('a batch retried after its ack was lost is stored once (Nats-Msg-Id)', async () => {
    const server = await startServer();
    const { nc } = await eventsOn(server);
    const config = resolveConfig({ nats: { url: server.url } });
    const publisher = new NaqContext(nc, config, pino({ level: 'silent' })).publisher;
    let loseNextAck = true;
    const buffer = new EventBuffer(
      async (subject, data, options) => {
        const ack = await publisher.publish(subject, data, options);
        if (loseNextAck) {
          loseNextAck = false;
          throw new Error('ack lost');
        }
        return ack;
      },
      'naq',
      { maxBatch: 100, flushMs: 20, maxBuffered: 1000 },
      pino({ level: 'silent' }),
    );
    for (let i = 0; i < 5; i++) buffer.emit({ type: 'job.enqueued', queue: 'dedupe', jobId: `d${i}` });
    await until(() => buffer.published === 5 && buffer.buffered === 0, 10_000);
    buffer.stop();
    expect(loseNextAck).toBe(false);
    expect((await history(nc, 'naq', { queue: 'dedupe' })).map((e) => e.jobId)).toEqual(['d0', 'd1', 'd2', 'd3', 'd4']);
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

    // The 10 kept, then the report of the 15 dropped.
    await until(() => log.published === 11 && log.buffered === 0 && log.inFlight === 0, 20_000);
    const [report] = await history(nc, 'naq', { queue: '_system', types: ['events.dropped'] });
    expect(report).toMatchObject({ type: 'events.dropped', queue: '_system', data: { count: 15 } });
    const kept = await history(nc, 'naq', { queue: 'tiny' });
    expect(kept.map((e) => e.jobId)).toEqual(Array.from({ length: 10 }, (_, i) => `e${i + 15}`));
  });

  it('has nothing to read before the stream exists; a live tail says the stream is missing', async () => {
    const server = await startServer();
    const nc = await connectTo(server);
    connections.push(nc);
    expect(await history(nc, 'naq', {})).toEqual([]);
    expect((await stats(nc, 'naq', { since: 0 })).total).toBe(0);
    await expect(subscribe(nc, 'naq', {})).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('the events service actor', () => {
  /** The actor under a minimal parent (it reports SERVICE_READY to its parent). */
  function startEventsActor(config: NaqConfig, nc: NatsConnection) {
    const context = new NaqContext(nc, config, pino({ level: 'silent' }));
    const host = setup({ actors: { events: eventsLogic(config, pino({ level: 'silent' })) } }).createMachine({
      invoke: { id: 'events', systemId: 'events', src: 'events', input: { name: 'events', connection: new NatsHandle(nc, context) } },
    });
    const root = createActor(host).start();
    const events = root.system.get('events') as AnyActorRef;
    const request = <T>(r: Record<string, unknown> & { type: EventsRequest['type'] }) =>
      ask<T>(events, (replyTo) => ({ ...r, replyTo }), { timeoutMs: 6000 });
    return { root, events, request, context };
  }

  it('ensures the stream, answers history / stats / subscribe / flush, and flushes when stopped', async () => {
    const server = await startServer();
    // A long interval: only flush requests and the stop send anything.
    const config = resolveConfig({ nats: { url: server.url }, events: { flushMs: 60_000 } });
    const nc = await connectTo(server);
    connections.push(nc);
    const { root, events, request, context } = startEventsActor(config, nc);
    await until(() => JSON.stringify(events.getSnapshot().value) === '"ready"', 10_000);
    expect((await (await jetstreamManager(nc)).streams.info('NAQ_EVENTS')).config.subjects).toEqual(['naq.events.>']);

    const log = context.events;
    const tail = await request<EventSubscription>({ type: 'events.subscribe', filter: { queue: 'svc' } });
    const tailed = take(tail, 2);
    log.emit({ type: 'job.completed', queue: 'svc', jobId: 'one', data: { durationMs: 7 } });
    log.emit({ type: 'job.failed', queue: 'svc', jobId: 'two', data: { durationMs: 9 } });
    const flushed = await request<EventLogCounters>({ type: 'events.flush' });
    expect(flushed).toMatchObject({ enabled: true, published: 2, buffered: 0 });
    expect((await withTimeout(tailed)).map((e) => e.jobId)).toEqual(['one', 'two']);
    tail.stop();

    const found = await request<StoredEvent[]>({ type: 'events.history', filter: { jobId: 'two' } });
    expect(found.map((e) => e.type)).toEqual(['job.failed']);
    const s = await request<EventStats>({ type: 'events.stats', filter: { since: Date.now() - 60_000 } });
    expect(s).toMatchObject({ total: 2, failureRatio: 0.5, durationMs: { p50: 7, p95: 9, count: 2 } });
    await expect(request({ type: 'events.history', filter: { types: ['job.nope'] } })).rejects.toThrow(/unknown event type/);

    log.emit({ type: 'worker.stopped', queue: 'svc', workerId: 'last-words' });
    events.send({ type: 'STOP' });
    await until(() => events.getSnapshot().status === 'done', 10_000);
    root.stop();
    expect((await history(nc, 'naq', { types: ['worker.stopped'] })).map((e) => e.workerId)).toEqual(['last-words']);
  });
});

describe('the publisher at shutdown', () => {
  it('settled() waits for the acks of what was published; with the link down it does not wait', async () => {
    const server = await startServer();
    const { nc } = await eventsOn(server);
    const publisher = new NaqContext(nc, resolveConfig({ nats: { url: server.url } }), pino({ level: 'silent' })).publisher;
    const acks = Array.from({ length: 200 }, (_, i) => publisher.publish('naq.events.settled', `{"n":${i}}`));
    expect(publisher.pending).toBe(200);
    await publisher.settled(10_000);
    expect(publisher.pending).toBe(0);
    expect((await Promise.all(acks)).every((a) => a.seq > 0)).toBe(true);

    let down!: () => void;
    const disconnected = new Promise<void>((r) => (down = r));
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'disconnect') return down();
    })();
    await server.kill('SIGKILL');
    await disconnected;
    await until(async () => {
      // The publisher hears the same status a moment later: a publish then waits unanswered.
      const lost = publisher.publish('naq.events.settled', '{}').catch(() => undefined);
      const started = Date.now();
      await publisher.settled(5000);
      void lost;
      return Date.now() - started < 1000;
    }, 5000);
    expect(publisher.pending).toBeGreaterThan(0);
    publisher.close();
  });
});
