/**
 * The lane puller (priorities, issue 12) without a server: the most urgent job held is taken
 * first; a less urgent lane is pulled only while no more urgent one holds a job; expired and
 * lost pulls are asked again; held jobs are kept alive and given back on stop.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Msg } from '@nats-io/transport-node';
import { LanePuller, type LanePullerOptions } from '../../src/actors/worker/lanes.js';

const decoder = new TextDecoder();

interface Pull {
  lane: number;
  batch: number;
}

function fakeNats() {
  let callback: ((err: Error | null, msg: Msg) => void) | null = null;
  let inbox = '';
  const pulls: Pull[] = [];
  const answers: Array<{ reply: string; payload: string }> = [];
  let drained = false;
  const nc = {
    subscribe(subject: string, opts: { callback: (err: Error | null, msg: Msg) => void }) {
      inbox = subject.slice(0, -2);
      callback = opts.callback;
      return { drain: async () => void (drained = true), unsubscribe: () => {} };
    },
    publish(_subject: string, data: Uint8Array, opts: { reply: string }) {
      const req = JSON.parse(decoder.decode(data)) as { batch: number };
      pulls.push({ lane: Number(opts.reply.slice(inbox.length + 1)), batch: req.batch });
    },
  };
  let seq = 0;
  return {
    nc: nc as unknown as LanePullerOptions['nc'],
    pulls,
    answers,
    drained: () => drained,
    /** A job delivered on a lane's subject token. */
    job(token: string, pending = 0, id = `j${++seq}`) {
      const reply = `$JS.ACK.NAQ_JOBS.naq-${token}.1.${++seq}.${seq}.0.${pending}`;
      const msg = {
        subject: `naq.jobs.${token}.${id}`,
        reply,
        data: new Uint8Array(),
        respond: (payload: Uint8Array) => void answers.push({ reply, payload: decoder.decode(payload) }),
      };
      callback!(null, msg as unknown as Msg);
      return id;
    },
    /** A status on a lane's inbox; `unfilled`: the Nats-Pending-Messages of a 408 (jobs of that request that will not come). */
    status(lane: number, code: number, description = '', unfilled?: number) {
      const get = (key: string) => (key === 'Nats-Pending-Messages' && unfilled !== undefined ? String(unfilled) : '');
      callback!(null, { subject: `${inbox}.${lane}`, data: new Uint8Array(), headers: { code, description, get } } as unknown as Msg);
    },
  };
}

const tokens = ['q~1', 'q~2', 'q~3', 'q~4', 'q', 'q~6', 'q~7', 'q~8', 'q~9', 'q~10'];

/** A started puller; `answered`: every lane's first pull expired empty (the server had nothing). */
function puller(nats: ReturnType<typeof fakeNats>, extra: Partial<LanePullerOptions> = {}, answered = true) {
  const events = { ready: 0, missing: [] as Error[], errors: [] as Error[] };
  const p = new LanePuller({
    nc: nats.nc,
    apiPrefix: '$JS.API',
    stream: 'NAQ_JOBS',
    subjectPrefix: 'naq.jobs.',
    lanes: tokens.map((token) => ({ token, consumer: `naq-${token}` })),
    cap: 4,
    ackWaitMs: 3000,
    expiresMs: 5000,
    now: () => Date.now(),
    onReady: () => void events.ready++,
    onMissing: (e) => void events.missing.push(e),
    onError: (e) => void events.errors.push(e),
    ...extra,
  });
  p.start();
  if (answered) tokens.forEach((_, lane) => nats.status(lane, 408, 'Request Timeout'));
  return { p, events };
}

const idOf = (job: { subject: string } | null) => job?.subject.split('.').at(-1);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('lane puller', () => {
  it('asks every lane once at the start, for its cap', () => {
    const nats = fakeNats();
    puller(nats, {}, false);
    expect(nats.pulls).toEqual(tokens.map((_, lane) => ({ lane, batch: 4 })));
  });

  it('strict: while the server says more urgent jobs wait and a pull is open for them, a less urgent one is not given (for a moment)', () => {
    const nats = fakeNats();
    const { p, events } = puller(nats);
    const late = nats.job('q~10');
    const first = nats.job('q~1', 1);
    expect(idOf(p.take())).toBe(first);
    // One more level-1 job waits on the server and lane 1 has a pull open: level 10 waits.
    expect(p.take()).toBeNull();
    const second = nats.job('q~1', 0);
    expect(idOf(p.take())).toBe(second);
    expect(idOf(p.take())).toBe(late);
    // Told of a backlog that never comes (another worker took it): the wait ends.
    const late2 = nats.job('q~10');
    nats.job('q~2', 5);
    p.take();
    expect(p.take()).toBeNull();
    const ready = events.ready;
    vi.advanceTimersByTime(30);
    expect(events.ready).toBe(ready + 1);
    expect(idOf(p.take())).toBe(late2);
  });

  it("a wait the urgent lane answered is over: the next wait for it gets its own moment, not the rest of the first one's", () => {
    const nats = fakeNats();
    const { p } = puller(nats);
    const late = nats.job('q~10');
    const urgent = nats.job('q~1', 3);
    expect(idOf(p.take())).toBe(urgent);
    expect(p.take()).toBeNull();
    vi.advanceTimersByTime(20);
    const next = nats.job('q~1', 2);
    expect(idOf(p.take())).toBe(next);
    expect(p.take()).toBeNull();
    // 30 ms after the first wait began, 10 ms into the second: level 10 still waits.
    vi.advanceTimersByTime(10);
    expect(p.take()).toBeNull();
    vi.advanceTimersByTime(20);
    expect(idOf(p.take())).toBe(late);
  });

  it('a lane that ran dry with a pull open, and nothing less urgent held: no wait, the next delivery is taken at once', () => {
    const nats = fakeNats();
    const { p, events } = puller(nats);
    const timers = vi.getTimerCount();
    const first = nats.job('q', 8);
    expect(idOf(p.take())).toBe(first);
    expect(p.take()).toBeNull();
    expect(vi.getTimerCount()).toBe(timers);
    const ready = events.ready;
    const second = nats.job('q', 7);
    expect(events.ready).toBe(ready + 1);
    expect(idOf(p.take())).toBe(second);
  });

  it('at the start, waits a moment for lanes that have not answered yet', () => {
    const nats = fakeNats();
    const { p } = puller(nats, {}, false);
    const late = nats.job('q~10');
    expect(p.take()).toBeNull();
    vi.advanceTimersByTime(30);
    expect(idOf(p.take())).toBe(late);
  });

  it('gives the most urgent job held first, in order within a lane', () => {
    const nats = fakeNats();
    const { p, events } = puller(nats);
    const late = nats.job('q~10');
    const mid1 = nats.job('q');
    const urgent = nats.job('q~1');
    const mid2 = nats.job('q');
    expect(events.ready).toBe(4);
    expect(p.held).toBe(4);
    expect([p.take(), p.take(), p.take(), p.take()].map(idOf)).toEqual([urgent, mid1, mid2, late]);
    expect(p.take()).toBeNull();
    expect(p.held).toBe(0);
  });

  it('pulls a less urgent lane only while no more urgent one holds a job', () => {
    const nats = fakeNats();
    const { p } = puller(nats);
    nats.job('q~2');
    nats.pulls.length = 0;
    // Lane 10's pull expires while lane 2 holds a job: it is not asked again yet.
    nats.status(9, 408, 'Request Timeout');
    expect(nats.pulls).toEqual([]);
    // Lane 1 (more urgent than lane 2) is asked again at once.
    nats.status(0, 408, 'Request Timeout');
    expect(nats.pulls).toEqual([{ lane: 0, batch: 4 }]);
    // Lane 2 empties: lane 10 may pull now.
    p.take();
    expect(nats.pulls).toContainEqual({ lane: 9, batch: 4 });
  });

  it('asks a lane for more once what it holds and has asked for is 3/4 of its cap or less; an expired request gives back only its unfilled part', () => {
    const nats = fakeNats();
    const { p } = puller(nats);
    nats.pulls.length = 0;
    for (let i = 0; i < 4; i++) nats.job('q');
    // All four asked for came: holding 4 of 4, nothing is asked.
    expect(nats.pulls).toEqual([]);
    p.take();
    expect(nats.pulls).toEqual([{ lane: 4, batch: 1 }]);
    p.take();
    p.take();
    // Each take left held + asked at 3: one more each time, three requests open.
    expect(nats.pulls).toEqual([{ lane: 4, batch: 1 }, { lane: 4, batch: 1 }, { lane: 4, batch: 1 }]);
    // One expires with its 1 job unfilled: 2 are still to come, 1 is held, so 1 more is asked (not 3).
    nats.status(4, 408, 'Request Timeout', 1);
    expect(nats.pulls.at(-1)).toEqual({ lane: 4, batch: 1 });
    expect(nats.pulls).toHaveLength(4);
  });

  it('asks again after a pull that was never answered (its consumer leader moved, or its consumer is gone), and says so once per check', () => {
    const nats = fakeNats();
    let lost = 0;
    puller(nats, { onLost: () => void lost++ });
    nats.pulls.length = 0;
    vi.advanceTimersByTime(5000);
    expect(nats.pulls).toEqual([]);
    expect(lost).toBe(0);
    // Expiry plus a second, at the next check (each second).
    vi.advanceTimersByTime(2100);
    expect(nats.pulls).toHaveLength(10);
    expect(lost).toBe(1);
  });

  it('keeps held jobs alive while they wait, and gives them back on stop', () => {
    const nats = fakeNats();
    const { p } = puller(nats);
    nats.job('q~3');
    nats.job('q~3');
    vi.advanceTimersByTime(1100);
    expect(nats.answers.map((a) => a.payload)).toEqual(['+WPI', '+WPI']);
    p.take()!.ack();
    p.stop();
    expect(nats.answers.map((a) => a.payload)).toEqual(['+WPI', '+WPI', '+ACK', '-NAK']);
    expect(nats.drained()).toBe(true);
    // One the server sent before it saw the stop goes back too.
    nats.job('q');
    expect(nats.answers.at(-1)!.payload).toBe('-NAK');
    expect(p.held).toBe(0);
  });

  it('answers a job once: a NAK after its ack is not sent; a delayed NAK carries nanoseconds', () => {
    const nats = fakeNats();
    const { p } = puller(nats);
    nats.job('q');
    nats.job('q');
    const a = p.take()!;
    a.ack();
    a.nak();
    p.take()!.nak(1500);
    expect(nats.answers.map((x) => x.payload)).toEqual(['+ACK', '-NAK {"delay":1500000000}']);
  });

  it('reports a deleted consumer, and asks again shortly after a refusal that passes', () => {
    const nats = fakeNats();
    const { events } = puller(nats);
    nats.pulls.length = 0;
    nats.status(2, 409, 'Exceeded MaxWaiting');
    expect(nats.pulls).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(nats.pulls).toContainEqual({ lane: 2, batch: 4 });
    nats.status(4, 409, 'Consumer Deleted');
    expect(events.missing.map((e) => e.message)).toEqual(['consumer deleted: naq-q']);
  });

  it('with defer, sends each pull when the worker writes its turn, and none once pulling stopped', () => {
    const nats = fakeNats();
    const deferred: Array<() => void> = [];
    const { p } = puller(nats, { defer: (send) => void deferred.push(send) }, false);
    // Reserved at once (not asked twice), sent only with the turn's writes.
    expect(nats.pulls).toEqual([]);
    expect(deferred).toHaveLength(tokens.length);
    for (const send of deferred.splice(0)) send();
    expect(nats.pulls).toEqual(tokens.map((_, lane) => ({ lane, batch: 4 })));
    tokens.forEach((_, lane) => nats.status(lane, 408, 'Request Timeout'));
    // Each expired request asks again; stopped before the turn's writes, none goes out:
    // its jobs would reach an inbox nobody listens to any more.
    expect(deferred).toHaveLength(tokens.length);
    p.stop();
    for (const send of deferred.splice(0)) send();
    expect(nats.pulls).toHaveLength(tokens.length);
  });
});
