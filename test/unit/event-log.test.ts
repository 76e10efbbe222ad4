import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EventsUsageError, formatEvent, parseSince, parseTypes } from '../../src/cli/events.js';
import { decodeBatch, encodeBatch, type NaqEvent } from '../../src/model/event.js';
import { eventMatcher, percentile, StatsAccumulator } from '../../src/actors/events/queries.js';
import { DISABLED_EVENT_LOG, EventBuffer, type EventBufferSettings, type EventPublish } from '../../src/actors/events/buffer.js';

const decoder = new TextDecoder();

interface Call {
  subject: string;
  msgId: string;
  body: { v: number; events: NaqEvent[] };
  resolve(): void;
  reject(error: Error): void;
}

/** A publish that records every call and settles only when the test says so. */
function manualPublish() {
  const calls: Call[] = [];
  const publish: EventPublish = (subject, data, { msgId }) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ subject, msgId, body: { v: JSON.parse(decoder.decode(data)).v, events: decodeBatch(data) }, resolve: () => resolve(), reject });
    });
  return { calls, publish };
}

/** A publish that acks at once (on the next microtask). */
function ackingPublish() {
  const calls: Array<Omit<Call, 'resolve' | 'reject'>> = [];
  const publish: EventPublish = async (subject, data, { msgId }) => {
    calls.push({ subject, msgId, body: { v: JSON.parse(decoder.decode(data)).v, events: decodeBatch(data) } });
  };
  return { calls, publish };
}

function logCapture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { lines, log };
}

const silent = pino({ level: 'silent' });
const settings = (s: Partial<EventBufferSettings> = {}): EventBufferSettings => ({ maxBatch: 100, flushMs: 10_000, maxBuffered: 10_000, ...s });
const job = (i: number, queue = 'q') => ({ type: 'job.enqueued' as const, queue, jobId: `j${i}` });
const ids = (events: NaqEvent[]) => events.map((e) => e.jobId);
const tick = () => new Promise((r) => setImmediate(r));

afterEach(() => {
  vi.useRealTimers();
});

describe('EventBuffer', () => {
  it('sends a queue’s batch as soon as it holds maxBatch events, as one versioned message', async () => {
    const { calls, publish } = ackingPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBatch: 3 }), silent);
    for (let i = 0; i < 7; i++) buffer.emit(job(i));
    expect(calls).toHaveLength(2);
    expect(calls.map((c) => c.subject)).toEqual(['naq.events.q', 'naq.events.q']);
    expect(calls.map((c) => ids(c.body.events))).toEqual([
      ['j0', 'j1', 'j2'],
      ['j3', 'j4', 'j5'],
    ]);
    const [first] = calls[0]!.body.events;
    expect(calls[0]!.body.v).toBe(3);
    expect(first).toMatchObject({ v: 1, type: 'job.enqueued', queue: 'q', jobId: 'j0' });
    expect(typeof first!.ts).toBe('number');
    expect(buffer.buffered).toBe(1);
    await buffer.flush();
    expect(calls.map((c) => ids(c.body.events))).toEqual([['j0', 'j1', 'j2'], ['j3', 'j4', 'j5'], ['j6']]);
    expect(buffer.published).toBe(7);
    expect(buffer.buffered).toBe(0);
    buffer.stop();
  });

  it('sends everything every flushMs, one message per queue, with one timer', async () => {
    vi.useFakeTimers();
    const { calls, publish } = ackingPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ flushMs: 50 }), silent);
    buffer.emit(job(1, 'a'));
    buffer.emit(job(2, 'b'));
    buffer.emit(job(3, 'a'));
    buffer.emit({ type: 'leader.elected', queue: '_system', data: { id: 'x' } });
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(49);
    expect(calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    const bySubject = Object.fromEntries(calls.map((c) => [c.subject, c.body.events.map((e) => e.jobId ?? e.type)]));
    expect(bySubject).toEqual({ 'naq.events.a': ['j1', 'j3'], 'naq.events.b': ['j2'], 'naq.events._system': ['leader.elected'] });
    // Nothing buffered: no timer left running.
    expect(vi.getTimerCount()).toBe(0);
    expect(buffer.published).toBe(4);
    buffer.stop();
  });

  it('pipelines: several batches are outstanding at once', () => {
    const { calls, publish } = manualPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBatch: 2 }), silent);
    for (let i = 0; i < 6; i++) buffer.emit(job(i));
    expect(calls).toHaveLength(3);
    expect(buffer.inFlight).toBe(6);
    expect(new Set(calls.map((c) => c.msgId)).size).toBe(3);
    buffer.stop();
  });

  it('puts failed batches back, oldest first, and retries them with their message ids', async () => {
    vi.useFakeTimers();
    const { calls, publish } = manualPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBatch: 2, flushMs: 20 }), silent);
    for (let i = 0; i < 4; i++) buffer.emit(job(i));
    buffer.emit(job(4));
    const [a, b] = calls;
    // Rejected out of order: the retry still sends the older batch first.
    b!.reject(new Error('server away'));
    a!.reject(new Error('server away'));
    await vi.advanceTimersByTimeAsync(0);
    expect(buffer.buffered).toBe(5);
    expect(buffer.inFlight).toBe(0);
    await vi.advanceTimersByTimeAsync(1000);
    const retried = calls.slice(2);
    expect(retried.map((c) => ids(c.body.events))).toEqual([['j0', 'j1'], ['j2', 'j3'], ['j4']]);
    expect(retried.slice(0, 2).map((c) => c.msgId)).toEqual([a!.msgId, b!.msgId]);
    for (const c of retried) c.resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(buffer.published).toBe(5);
    expect(buffer.buffered).toBe(0);
    buffer.stop();
  });

  it('while offline holds events, drops the oldest beyond maxBuffered, and reports the count once publishing works', async () => {
    vi.useFakeTimers();
    const { calls, publish } = ackingPublish();
    const { lines, log } = logCapture();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBatch: 100, flushMs: 10, maxBuffered: 5 }), log);
    buffer.setOnline(false);
    for (let i = 0; i < 12; i++) buffer.emit(job(i));
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toHaveLength(0);
    expect(buffer.buffered).toBe(5);
    expect(buffer.dropped).toBe(7);
    expect(lines.filter((l) => /buffer full/.test(String(l.msg)))).toHaveLength(1);

    buffer.setOnline(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(ids(calls[0]!.body.events)).toEqual(['j7', 'j8', 'j9', 'j10', 'j11']);
    await vi.advanceTimersByTimeAsync(10);
    const report = calls.find((c) => c.subject === 'naq.events._system')!;
    expect(report.body.events).toHaveLength(1);
    expect(report.body.events[0]).toMatchObject({ type: 'events.dropped', queue: '_system', data: { count: 7 } });
    expect(typeof report.body.events[0]!.data!.since).toBe('number');
    expect(buffer.published).toBe(6);
    buffer.stop();
  });

  it('drops the oldest across queues', async () => {
    const { calls, publish } = ackingPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBuffered: 3 }), silent);
    buffer.setOnline(false);
    buffer.emit({ ...job(1, 'a'), ts: 1 });
    buffer.emit({ ...job(2, 'b'), ts: 2 });
    buffer.emit({ ...job(3, 'a'), ts: 3 });
    buffer.emit({ ...job(4, 'b'), ts: 4 });
    buffer.emit({ ...job(5, 'b'), ts: 5 });
    expect(buffer.dropped).toBe(2);
    expect(buffer.buffered).toBe(3);
    await buffer.flush();
    const sent = calls.filter((c) => c.subject !== 'naq.events._system').flatMap((c) => ids(c.body.events));
    expect(sent.sort()).toEqual(['j3', 'j4', 'j5']);
    buffer.stop();
  });

  it('flush() sends what is buffered and resolves only once it is acknowledged', async () => {
    const { calls, publish } = manualPublish();
    const buffer = new EventBuffer(publish, 'naq', settings(), silent);
    buffer.emit(job(1));
    buffer.emit(job(2, 'other'));
    let done = false;
    const flushed = buffer.flush().then(() => (done = true));
    expect(calls).toHaveLength(2);
    await tick();
    expect(done).toBe(false);
    calls[0]!.resolve();
    await tick();
    expect(done).toBe(false);
    calls[1]!.resolve();
    await flushed;
    expect(buffer.published).toBe(2);
    buffer.stop();
  });

  it('flush() gives up when publishing fails and keeps the events', async () => {
    const publish: EventPublish = () => Promise.reject(new Error('no server'));
    const buffer = new EventBuffer(publish, 'naq', settings(), silent);
    buffer.emit(job(1));
    await buffer.flush();
    expect(buffer.buffered).toBe(1);
    expect(buffer.published).toBe(0);
    buffer.stop();
  });

  it('splits a batch that would be too big for one message', async () => {
    const { calls, publish } = ackingPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBytes: 1000 }), silent);
    for (let i = 0; i < 20; i++) buffer.emit({ ...job(i), data: { pad: 'x'.repeat(100) } });
    buffer.emit({ ...job(99), data: { huge: 'y'.repeat(5000) } });
    await buffer.flush();
    expect(calls.length).toBeGreaterThan(2);
    const sent = calls.flatMap((c) => c.body.events);
    expect(ids(sent)).toEqual([...Array.from({ length: 20 }, (_, i) => `j${i}`), 'j99']);
    expect(sent.at(-1)!.data).toMatchObject({ truncated: true });
    for (const c of calls) expect(encodeBatch(c.body.events as NaqEvent[]).length).toBeLessThanOrEqual(1000);
    buffer.stop();
  });

  it('ignores events after stop and events for invalid queue names', () => {
    const { calls, publish } = ackingPublish();
    const buffer = new EventBuffer(publish, 'naq', settings({ maxBatch: 1 }), silent);
    buffer.emit(job(1, 'bad.queue'));
    buffer.stop();
    buffer.emit(job(2));
    expect(calls).toHaveLength(0);
    expect(buffer.buffered).toBe(0);
  });

  it('is a no-op with events.enabled: false', async () => {
    const log = DISABLED_EVENT_LOG;
    log.emit(job(1));
    await log.flush();
    expect(log).toMatchObject({ enabled: false, buffered: 0, published: 0 });
  });
});

describe('event queries, pure parts', () => {
  it('decodes batches and skips what it cannot read', () => {
    const events: NaqEvent[] = [{ v: 1, type: 'job.started', ts: 5, queue: 'q', jobId: 'a' }];
    expect(decodeBatch(encodeBatch(events))).toEqual(events);
    expect(decodeBatch(new TextEncoder().encode('nope'))).toEqual([]);
    expect(decodeBatch(new TextEncoder().encode(JSON.stringify({ v: 4, events })))).toEqual([]);
    // Format 3 without its tables of types and times: nothing to read the rows against.
    expect(decodeBatch(new TextEncoder().encode(JSON.stringify({ v: 3, queue: 'q', workers: [], events: [[0, 0, 'a']] })))).toEqual([]);
    // Format 1 (every field on every event), as naq wrote it before format 2: still read.
    expect(decodeBatch(new TextEncoder().encode(JSON.stringify({ v: 1, events: [{ type: 'x' }, ...events] })))).toEqual(events);
    // Format 2 (one object per event, the queue and worker ids once), as naq wrote it before format 3: still read.
    const format2 = { v: 2, queue: 'q', workers: ['w-1'], events: [{ type: 'job.started', ts: 5, jobId: 'a', w: 0, data: { attempt: 1 } }, { type: 'x' }, { type: 'queue.paused', ts: 6, queue: 'r' }] };
    expect(decodeBatch(new TextEncoder().encode(JSON.stringify(format2)))).toEqual([
      { v: 1, type: 'job.started', ts: 5, queue: 'q', jobId: 'a', workerId: 'w-1', data: { attempt: 1 } },
      { v: 1, type: 'queue.paused', ts: 6, queue: 'r' },
    ]);
  });

  it('writes the queue, each worker id and each type once per batch, and reads them back onto every event', () => {
    const events: NaqEvent[] = [
      { v: 1, type: 'job.started', ts: 5, queue: 'q', jobId: 'a', workerId: 'w-1', data: { attempt: 1 } },
      { v: 1, type: 'job.completed', ts: 6, queue: 'q', jobId: 'a', workerId: 'w-1', data: { attempt: 1, durationMs: 1 } },
      { v: 1, type: 'job.enqueued', ts: 7, queue: 'q', jobId: 'b' },
      { v: 1, type: 'worker.paused', ts: 8, queue: 'q', workerId: 'w-"2' },
      { v: 1, type: 'events.dropped', ts: 9, queue: '_system', data: { count: 3 } },
    ];
    const bytes = encodeBatch(events);
    const text = new TextDecoder().decode(bytes);
    expect(JSON.parse(text)).toMatchObject({ v: 3, queue: 'q', workers: ['w-1', 'w-"2'], t: 5 });
    expect(text.match(/w-1/g)).toHaveLength(1);
    expect(text.match(/job\.started/g)).toHaveLength(1);
    expect(decodeBatch(bytes)).toEqual(events);
    // An event without a job, a worker or data, and one of another queue, come back as they were.
    const sparse: NaqEvent[] = [
      { v: 1, type: 'queue.paused', ts: 1795690000000, queue: 'q' },
      { v: 1, type: 'queue.resumed', ts: 1795690000001, queue: 'other', data: { by: 'x' } },
      { v: 1, type: 'job.removed', ts: 1795689999999, queue: 'q', jobId: 'c', data: { was: 'pending' } },
    ];
    expect(decodeBatch(encodeBatch(sparse))).toEqual(sparse);
    // A first event whose time JSON cannot carry is lost alone, not with the batch.
    const bad: NaqEvent = { v: 1, type: 'job.started', ts: Number.NaN, queue: 'q', jobId: 'x' };
    expect(decodeBatch(encodeBatch([bad, ...sparse]))).toEqual(sparse);
  });

  it("makes a worker's batch half of format 2's and a third of format 1's", () => {
    const events: NaqEvent[] = Array.from({ length: 100 }, (_, i) => ({
      v: 1,
      type: i % 2 ? 'job.completed' : 'job.started',
      ts: 1795690000000 + i,
      queue: 'default',
      jobId: `8mZKQ3gG0p1bE1qv2f${1000 + i}`,
      workerId: 'worker-host-12345-default',
      data: i % 2 ? { attempt: 1, durationMs: 3 } : { attempt: 1 },
    }));
    const format2 = { v: 2, queue: 'default', workers: ['worker-host-12345-default'], events: events.map(({ type, ts, jobId, data }) => ({ type, ts, jobId, w: 0, data })) };
    expect(encodeBatch(events).length).toBeLessThan(JSON.stringify(format2).length * 0.55);
    expect(encodeBatch(events).length).toBeLessThan(JSON.stringify({ v: 1, events }).length * 0.36);
  });

  it('matches by queue, job, types and time', () => {
    const e: NaqEvent = { v: 1, type: 'job.failed', ts: 100, queue: 'q', jobId: 'a' };
    expect(eventMatcher({})(e)).toBe(true);
    expect(eventMatcher({ queue: 'q', jobId: 'a', types: ['job.failed', 'job.completed'], since: 100 })(e)).toBe(true);
    expect(eventMatcher({ queue: 'r' })(e)).toBe(false);
    expect(eventMatcher({ jobId: 'b' })(e)).toBe(false);
    expect(eventMatcher({ types: ['job.completed'] })(e)).toBe(false);
    expect(eventMatcher({ since: 101 })(e)).toBe(false);
  });

  it('computes counts, rate, failure ratio and nearest-rank percentiles', () => {
    const acc = new StatsAccumulator(0, 10_000);
    const add = (type: NaqEvent['type'], queue: string, ts: number, durationMs?: number) =>
      acc.add({ v: 1, type, queue, ts, ...(durationMs === undefined ? {} : { data: { durationMs } }) });
    for (let i = 1; i <= 18; i++) add('job.completed', 'a', i, i * 10);
    add('job.failed', 'b', 50, 1000);
    add('job.failed', 'b', 60, 2000);
    add('job.retrying', 'b', 40);
    add('job.completed', 'a', 20_000, 1); // outside the window
    const s = acc.result();
    expect(s.total).toBe(21);
    expect(s.byType).toEqual({ 'job.completed': 18, 'job.failed': 2, 'job.retrying': 1 });
    expect(s.byQueue).toEqual({ a: 18, b: 3 });
    expect(s.failureRatio).toBeCloseTo(2 / 20);
    expect(s.ratePerSec).toBeCloseTo(2.1);
    expect(s.durationMs).toEqual({ p50: 100, p95: 1000, count: 20 });
    expect(new StatsAccumulator(0, 1000).result()).toMatchObject({ total: 0, failureRatio: 0, durationMs: { p50: null, p95: null, count: 0 } });
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([7], 95)).toBe(7);
  });
});

describe('events CLI parsing', () => {
  const now = Date.parse('2030-01-01T12:00:00Z');

  it('reads --since as a duration back from now or as an ISO date', () => {
    expect(parseSince('30s', now)).toBe(now - 30_000);
    expect(parseSince('10m', now)).toBe(now - 600_000);
    expect(parseSince('1h', now)).toBe(now - 3_600_000);
    expect(parseSince('2d', now)).toBe(now - 2 * 86_400_000);
    expect(parseSince('2029-12-31T00:00:00Z', now)).toBe(Date.parse('2029-12-31T00:00:00Z'));
    expect(parseSince('2029-12-31', now)).toBe(Date.parse('2029-12-31'));
  });

  it('rejects a bad --since or --type, naming the flag', () => {
    for (const bad of ['', 'ten minutes', '10x', '-5m', '1']) expect(() => parseSince(bad, now)).toThrow(/--since/);
    expect(() => parseSince('soon', now)).toThrow(EventsUsageError);
    expect(() => parseTypes(['job.completed,job.nope'])).toThrow(/--type.*job\.nope/);
    expect(parseTypes(['job.completed,job.failed', 'worker.started'])).toEqual(['job.completed', 'job.failed', 'worker.started']);
    expect(parseTypes(undefined)).toBeUndefined();
  });

  it('prints one line per event', () => {
    const line = formatEvent({ v: 1, type: 'job.completed', ts: now, queue: 'q', jobId: 'j1', data: { durationMs: 5 } });
    expect(line).toBe('2030-01-01T12:00:00.000Z  job.completed     q  j1  {"durationMs":5}');
  });
});
