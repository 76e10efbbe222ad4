/** The dashboard's pieces without a server: the throughput window and the actor tree. */
import { assign, createActor, createMachine, fromPromise, setup, stopChild, type AnyActorRef } from 'xstate';
import type { ServerResponse } from 'node:http';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { DashboardBackend } from '../../src/dashboard/backend.js';
import { LiveFeed } from '../../src/dashboard/live.js';
import type { QueueStats } from '../../src/model/job.js';
import { ActorTree } from '../../src/dashboard/actor-tree.js';
import { BUCKET_MS, Throughput } from '../../src/dashboard/throughput.js';

describe('Throughput', () => {
  it('counts completed and failed per minute and queue over the last 15 minutes, older ones dropped', () => {
    let now = 100 * BUCKET_MS + 30_000;
    const t = new Throughput(() => now);
    t.add({ type: 'job.completed', ts: now, queue: 'a' });
    t.add({ type: 'job.completed', ts: now - 1000, queue: 'a' });
    t.add({ type: 'job.failed', ts: now - BUCKET_MS, queue: 'a' });
    t.add({ type: 'job.started', ts: now, queue: 'a' });
    t.add({ type: 'job.completed', ts: now - 20 * BUCKET_MS, queue: 'a' });
    const s = t.series();
    expect(s.minutes).toHaveLength(15);
    expect(s.minutes.at(-1)).toBe(100 * BUCKET_MS);
    expect(s.queues.a!.completed.at(-1)).toBe(2);
    expect(s.queues.a!.failed.at(-2)).toBe(1);
    expect(s.queues.a!.completed.reduce((x, y) => x + y)).toBe(2);
    now += 15 * BUCKET_MS;
    expect(t.series().queues.a!.completed.every((c) => c === 0)).toBe(true);
  });
});

describe('ActorTree', () => {
  const flaky = createMachine({ id: 'service', initial: 'ready', states: { ready: { on: { BREAK: 'broken' } }, broken: { type: 'final' } } });
  const root = setup({ actors: { flaky, work: fromPromise(async () => 1) } }).createMachine({
    id: 'root',
    context: { ref: null as AnyActorRef | null },
    initial: 'running',
    entry: assign({ ref: ({ spawn }) => spawn('flaky', { id: 'svc', systemId: 'svc' }) }),
    // A promise actor without a system id is plumbing: it stays out of the tree.
    invoke: { src: 'work' },
    on: {
      RESTART: {
        actions: [
          stopChild('svc'),
          assign({ ref: ({ spawn }) => spawn('flaky', { id: 'svc', systemId: 'svc2' }) }),
        ],
      },
    },
    states: { running: {} },
  });

  it('shows actors with a system id under their parent, with their state and how often they were started again', async () => {
    const tree = new ActorTree();
    const actor = createActor(root, { id: 'root', systemId: 'root', inspect: tree.observer });
    actor.start();
    await Promise.resolve();
    let [top] = tree.snapshot();
    expect(top).toMatchObject({ id: 'root', state: 'running', restarts: 0 });
    expect(top!.children.map((c) => [c.id, c.state, c.restarts])).toEqual([['svc', 'ready', 0]]);
    actor.send({ type: 'RESTART' });
    await Promise.resolve();
    [top] = tree.snapshot();
    expect(top!.children.map((c) => [c.id, c.state, c.restarts])).toEqual([['svc', 'ready', 1]]);
    actor.stop();
  });
});

describe('LiveFeed ticks', () => {
  it('does not start reading the counts again while the last read is still running (a long backlog makes it slow)', async () => {
    vi.useFakeTimers();
    try {
      let running = 0;
      let most = 0;
      let calls = 0;
      const finish: Array<() => void> = [];
      const backend = {
        listQueues: () => {
          calls++;
          running++;
          most = Math.max(most, running);
          return new Promise<QueueStats[]>((resolve) =>
            finish.push(() => {
              running--;
              resolve([]);
            }),
          );
        },
      } as unknown as DashboardBackend;
      const feed = new LiveFeed(backend, pino({ level: 'silent' }));
      const written: string[] = [];
      const res = { writeHead: () => res, write: (chunk: string) => written.push(chunk), on: () => res, end: () => undefined } as unknown as ServerResponse;
      feed.attach(res);
      // Five ticks' time while the first read hangs: still one read.
      await vi.advanceTimersByTimeAsync(5000);
      expect(calls).toBe(1);
      // It finishes at 5 s, after 4 s: the next read comes 12 s later, not before.
      finish.shift()!();
      await vi.advanceTimersByTimeAsync(11_000);
      expect(calls).toBe(1);
      await vi.advanceTimersByTimeAsync(1000);
      // Then reads go on, and the browser got the first counts.
      expect(calls).toBe(2);
      expect(most).toBe(1);
      expect(written.some((w) => w.startsWith('event: tick'))).toBe(true);
      finish.shift()!();
      feed.stop();
    } finally {
      vi.useRealTimers();
    }
  });
  it('a slow read of the counts is followed by three times its length without one: reading takes at most about a quarter of the time', async () => {
    vi.useFakeTimers();
    try {
      const reads: number[] = [];
      const backend = {
        // Every read takes 2 s, as it does against a long enough backlog.
        listQueues: () => {
          reads.push(Date.now());
          return new Promise<QueueStats[]>((resolve) => setTimeout(() => resolve([]), 2000));
        },
      } as unknown as DashboardBackend;
      const feed = new LiveFeed(backend, pino({ level: 'silent' }));
      const res = { writeHead: () => res, write: () => true, on: () => res, end: () => undefined } as unknown as ServerResponse;
      const t0 = Date.now();
      feed.attach(res);
      await vi.advanceTimersByTimeAsync(30_000);
      feed.stop();
      const gaps = reads.slice(1).map((t, i) => t - reads[i]!);
      // Read at 1 s, done at 3 s, nothing before 9 s: a read every 8 s.
      expect(reads[0]! - t0).toBe(1000);
      expect(gaps.length).toBeGreaterThanOrEqual(2);
      for (const gap of gaps) expect(gap).toBe(8000);
    } finally {
      vi.useRealTimers();
    }
  });
});
