/**
 * The rate gate without a server: two gates (two workers) share a window in a fake bucket with
 * revision checks, so their grants race as on NATS. Starts are what the gates hand out.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Delivery } from '../../src/actors/worker/delivery.js';
import { RateGate, type Grant } from '../../src/actors/worker/rate-gate.js';
import { until } from '../support/harness.js';
import { busiestWindow } from '../support/windows.js';

const wrongLastSequence = () => new JetStreamApiError({ code: 400, err_code: 10071, description: 'wrong last sequence' });

/** One key, revision-checked like a KV bucket; each call takes a moment, as a round trip does. */
function fakeBucket() {
  let value: Uint8Array | null = null;
  let revision = 0;
  const trip = () => new Promise((r) => setTimeout(r, 1 + Math.random() * 3));
  const kv = {
    get: async () => {
      await trip();
      const v = value;
      return v === null ? null : { operation: 'PUT', revision, string: () => new TextDecoder().decode(v) };
    },
    update: async (_k: string, bytes: Uint8Array, rev: number) => {
      await trip();
      if (rev !== revision) throw wrongLastSequence();
      value = bytes;
      return ++revision;
    },
    create: async (_k: string, bytes: Uint8Array) => {
      await trip();
      if (value !== null) throw wrongLastSequence();
      value = bytes;
      return ++revision;
    },
  };
  return Object.assign(kv as unknown as KV, {
    /** The pairs stored now. */
    pairs: (): Array<[number, number]> => (value === null ? [] : (JSON.parse(new TextDecoder().decode(value)) as { w: Array<[number, number]> }).w),
    /** Another writer's window without any of our pairs in it. */
    replace: (pairs: Array<[number, number]>) => {
      value = new TextEncoder().encode(JSON.stringify({ v: 1, w: pairs }));
      revision++;
    },
  });
}

function delivery(calls: string[]): Delivery {
  return { data: new Uint8Array(), subject: 'naq.jobs.q.x', ack: () => {}, nak: () => void calls.push('nak'), working: () => void calls.push('working') };
}

/**
 * `lateMs`: how long after the gate hands a delivery out its job really starts (a record read).
 * `syncMs`: how long a job's start holds the thread before the gate can start the next one (a
 * handler's synchronous work).
 */
function gate(kv: KV, starts: number[], ackWaitMs = 30_000, lateMs = () => 0, syncMs = () => 0) {
  const begin = (grant?: Grant) => {
    const at = Date.now();
    starts.push(at);
    grant?.began(at);
  };
  return new RateGate({
    kv: async () => kv,
    key: 'q',
    ackWaitMs,
    now: Date.now,
    log: pino({ level: 'silent' }),
    start: (_msg, grant) => {
      const ms = lateMs();
      if (ms === 0) begin(grant);
      else setTimeout(() => begin(grant), ms);
      for (const end = Date.now() + syncMs(); Date.now() < end; );
    },
  });
}

describe('the rate gate', () => {
  it('two workers sharing a window of 3 per 200 ms: never more than 3 starts in any 200 ms, and all 12 start', async () => {
    const kv = fakeBucket();
    const starts: number[] = [];
    const [a, b] = [gate(kv, starts), gate(kv, starts)];
    for (const g of [a, b]) g.follow({ max: 3, durationMs: 200 }, 0);
    for (let i = 0; i < 6; i++) for (const g of [a, b]) g.admit(delivery([]));
    await until(() => starts.length >= 12, 5000);
    expect(starts).toHaveLength(12);
    expect(busiestWindow(starts, 200)).toBeLessThanOrEqual(3);
    // 12 at 3 per window: three windows after the first grant.
    expect(Math.max(...starts) - Math.min(...starts)).toBeGreaterThanOrEqual(600);
  });

  it('jobs that start well after their grant (up to 60 ms late, in a window of 5 per 300 ms): the window still holds no more than 5 starts', async () => {
    const kv = fakeBucket();
    const starts: number[] = [];
    const late = () => Math.floor(Math.random() * 60);
    const [a, b] = [gate(kv, starts, 30_000, late), gate(kv, starts, 30_000, late)];
    for (const g of [a, b]) g.follow({ max: 5, durationMs: 300 }, 0);
    for (let i = 0; i < 10; i++) for (const g of [a, b]) g.admit(delivery([]));
    await until(() => starts.length >= 20, 10_000);
    expect(starts).toHaveLength(20);
    expect(busiestWindow(starts, 300)).toBeLessThanOrEqual(5);
  });

  it("a handler's synchronous work holds the thread past half the window (5 per 300 ms): the rest of its grant waits for another, and no window holds more than 5", async () => {
    // Without the bound, the rest of the grant would start when the other worker already sees
    // the grant leave the window (about one round in two, so three rounds).
    for (let round = 0; round < 3; round++) {
      const kv = fakeBucket();
      const starts: number[] = [];
      let calls = 0;
      const a = gate(kv, starts, 30_000, () => 0, () => (calls++ === 0 ? 350 : 0));
      const b = gate(kv, starts);
      for (const g of [a, b]) g.follow({ max: 5, durationMs: 300 }, 0);
      for (const g of [a, b]) for (let i = 0; i < 5; i++) g.admit(delivery([]));
      await until(() => starts.length >= 10, 10_000);
      expect(starts).toHaveLength(10);
      expect(busiestWindow(starts, 300)).toBeLessThanOrEqual(5);
      for (const g of [a, b]) g.stop();
    }
  });

  it('a late start whose pair is no longer in the window (another writer dropped it) is added again at its start', async () => {
    const kv = fakeBucket();
    const starts: number[] = [];
    const g = gate(kv, starts, 30_000, () => 120);
    g.follow({ max: 3, durationMs: 1000 }, 0);
    g.admit(delivery([]));
    await until(() => kv.pairs().length > 0);
    const stamp = kv.pairs()[0]![0];
    kv.replace([]);
    await until(() => starts.length >= 1 && kv.pairs().length > 0);
    expect(kv.pairs()).toHaveLength(1);
    expect(kv.pairs()[0]![1]).toBe(1);
    expect(kv.pairs()[0]![0]).toBeGreaterThanOrEqual(starts[0]!);
    expect(kv.pairs()[0]![0]).toBeGreaterThan(stamp);
  });

  it('a hold stops every start until it ends; clearing the limit lets the rest through at once', async () => {
    const starts: number[] = [];
    const g = gate(fakeBucket(), starts);
    const holdEnd = Date.now() + 300;
    g.follow(null, holdEnd);
    expect(g.active).toBe(true);
    g.admit(delivery([]));
    g.admit(delivery([]));
    await new Promise((r) => setTimeout(r, 150));
    expect(starts).toEqual([]);
    await new Promise((r) => setTimeout(r, 400));
    expect(starts).toHaveLength(2);
    expect(Math.min(...starts)).toBeGreaterThanOrEqual(holdEnd);
    expect(g.active).toBe(false);

    g.follow({ max: 1, durationMs: 60_000 }, 0);
    for (let i = 0; i < 3; i++) g.admit(delivery([]));
    await new Promise((r) => setTimeout(r, 200));
    expect(starts).toHaveLength(3);
    g.follow(null, 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(starts).toHaveLength(5);
  });

  it("its own hold is not shortened by an older settings entry the watch brings after it", async () => {
    const starts: number[] = [];
    const g = gate(fakeBucket(), starts);
    const holdEnd = Date.now() + 300;
    g.holdLocally(holdEnd);
    g.follow(null, 0);
    g.admit(delivery([]));
    await new Promise((r) => setTimeout(r, 500));
    expect(starts).toHaveLength(1);
    expect(starts[0]!).toBeGreaterThanOrEqual(holdEnd);
  });

  it('keeps waiting deliveries alive, and gives them back when pulling stops', async () => {
    const calls: string[] = [];
    const starts: number[] = [];
    const g = gate(fakeBucket(), starts, 750);
    g.follow({ max: 1, durationMs: 60_000 }, 0);
    g.admit(delivery(calls));
    g.admit(delivery(calls));
    await new Promise((r) => setTimeout(r, 700));
    expect(starts).toHaveLength(1);
    // One waits for the next window: kept alive every ackWait / 3.
    expect(calls.filter((c) => c === 'working').length).toBeGreaterThanOrEqual(2);
    let released = 0;
    g.giveBack(() => released++);
    expect(calls.at(-1)).toBe('nak');
    expect(released).toBe(1);
    expect(g.waiting).toBe(0);
    g.stop();
  });
});
