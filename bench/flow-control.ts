/**
 * The flow-control section of the bench (issue 12): each line runs one scenario against the
 * private server with worker processes of its own (bench/flow-worker-process.ts) and prints
 * its figure beside the target. Nothing is asserted here; the tests assert behaviour.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { CreateNaqLike, NaqLike } from './naq-contract.js';
import { BenchChild, resetJetStream, sleep, wallNow } from './util.js';

const QUEUE = 'flow';

export interface FlowLine {
  label: string;
  figure: string;
  target: string;
  pass: boolean;
}

interface Env {
  createNaq: CreateNaqLike;
  jsm: JetStreamManager;
  url: string;
  script: string;
  log: (line: string) => void;
}

type Start = [tag: string, at: number, carried: number, id: string];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const ms = (v: number) => `${v.toFixed(1)} ms`;

/** Collects the children's starts until `done` says enough, or `timeoutMs` passes. */
async function collect(children: BenchChild[], done: (starts: Start[]) => boolean, timeoutMs: number): Promise<Start[]> {
  const all: Start[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!done(all) && Date.now() < deadline) {
    await sleep(100);
    for (const c of children) {
      c.send({ type: 'report' });
      all.push(...(await c.next('starts')).starts);
    }
  }
  return all;
}

async function withWorkers<T>(env: Env, n: number, concurrency: number, run: (producer: NaqLike, children: BenchChild[]) => Promise<T>): Promise<T> {
  await resetJetStream(env.jsm);
  const producer = env.createNaq({ nats: { url: env.url }, log: { level: 'warn' } });
  await producer.start({ timeoutMs: 10_000 });
  const children = Array.from({ length: n }, () => new BenchChild(env.script, { url: env.url, queue: QUEUE, concurrency }));
  try {
    await Promise.all(children.map((c) => c.next('ready')));
    // The first worker up leads the firing of delayed jobs; give the election a moment.
    await sleep(500);
    return await run(producer, children);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await producer.stop();
  }
}

/** Light load: 100 delayed jobs, one every 30 ms, each due 300 ms after its enqueue; start − due. */
async function delayedLight(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 10, async (producer, children) => {
    const jobs = 100;
    for (let i = 0; i < jobs; i++) {
      const due = Date.now() + 300;
      await producer.enqueueAt!(due, 'job', { tag: 'd', t: due }, { queue: QUEUE });
      await sleep(30);
    }
    const starts = await collect(children, (s) => s.length >= jobs, 30_000);
    const late = starts.map(([, at, due]) => at - due).sort((a, b) => a - b);
    const p99 = percentile(late, 99);
    return {
      label: `delayed job, start after its due time at light load (${late.length}/${jobs} jobs, workers only, no naq scheduler)`,
      figure: `p50 ${ms(percentile(late, 50))}, p99 ${ms(p99)}, max ${ms(late.at(-1) ?? NaN)}`,
      target: 'p99 <= 10 ms',
      pass: late.length === jobs && p99 <= 10,
    };
  });
}

/** 10,000 delayed jobs due within the same second: how late the last one starts, and runs per job. */
async function delayedBurst(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 100, async (producer, children) => {
    const jobs = 10_000;
    const t0 = Date.now();
    const dueFrom = t0 + 10_000;
    for (let i = 0; i < jobs; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, jobs - i) }, (_, j) => {
          const due = dueFrom + Math.floor(((i + j) * 1000) / jobs);
          return producer.enqueueAt!(due, 'job', { tag: 'b', t: due }, { queue: QUEUE });
        }),
      );
    }
    const enqueueMs = Date.now() - t0;
    const starts = await collect(children, (s) => s.length >= jobs && wallNow() > dueFrom + 3000, 60_000);
    const ids = new Set(starts.map((s) => s[3]));
    const late = starts.map(([, at, due]) => at - due).sort((a, b) => a - b);
    const worst = late.at(-1) ?? NaN;
    return {
      label: `${jobs} delayed jobs due within one second (enqueued in ${(enqueueMs / 1000).toFixed(1)} s): latest start after its due time`,
      figure: `p50 ${ms(percentile(late, 50))}, max ${ms(worst)}; ${ids.size} jobs started, ${starts.length - ids.size} twice`,
      target: `all within 2000 ms, each once`,
      pass: ids.size === jobs && starts.length === jobs && worst <= 2000 && enqueueMs < 10_000,
    };
  });
}

/**
 * Priorities: 10,000 level-10 jobs of 10 ms wait before a worker at concurrency 10; level-1
 * jobs enqueued one by one while it drains them: start − enqueue of each.
 */
async function priorityJump(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 10, async (producer, children) => {
    const backlog = 10_000;
    const probes = 20;
    for (let i = 0; i < backlog; i += 5000) {
      await producer.enqueueBulk!(Array.from({ length: Math.min(5000, backlog - i) }, () => ({ name: 'job', data: { ms: 10 }, opts: { queue: QUEUE, priority: 10 } })));
    }
    await sleep(500);
    for (let i = 0; i < probes; i++) {
      await producer.enqueue!('job', { tag: 'p', t: wallNow() }, { queue: QUEUE, priority: 1 });
      await sleep(100);
    }
    const starts = await collect(children, (s) => s.length >= probes, 30_000);
    const waits = starts.map(([, at, t]) => at - t).sort((a, b) => a - b);
    const stats = await producer.queueStats!(QUEUE);
    const worst = waits.at(-1) ?? NaN;
    return {
      label: `priority 1 behind ${backlog} waiting level-10 jobs of 10 ms, 1 worker at concurrency 10 (${waits.length}/${probes} probes; ${stats.pending} level-10 jobs still waiting after)`,
      figure: `start after enqueue p50 ${ms(percentile(waits, 50))}, max ${ms(worst)}`,
      target: 'every one within 50 ms',
      pass: waits.length === probes && worst <= 50 && stats.pending > 0,
    };
  });
}

/**
 * Fairness: tenant A enqueues 10,000 jobs of 10 ms, then tenant B enqueues 10; one worker at
 * concurrency 10. How long after its enqueue each of B's jobs finishes (start + 10 ms).
 */
async function groupsFair(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 10, async (producer, children) => {
    const heavy = 10_000;
    for (let i = 0; i < heavy; i += 5000) {
      await producer.enqueueBulk!(Array.from({ length: Math.min(5000, heavy - i) }, () => ({ name: 'job', data: { ms: 10 }, opts: { queue: QUEUE, group: 'tenant-a' } })));
    }
    const t = wallNow();
    await producer.enqueueBulk!(Array.from({ length: 10 }, () => ({ name: 'job', data: { tag: 'b', t, ms: 10 }, opts: { queue: QUEUE, group: 'tenant-b' } })));
    const starts = await collect(children, (s) => s.length >= 10, 30_000);
    const done = starts.map(([, at, from]) => at + 10 - from).sort((a, b) => a - b);
    const stats = await producer.queueStats!(QUEUE);
    const worst = done.at(-1) ?? NaN;
    return {
      label: `groups: tenant B's 10 jobs enqueued behind tenant A's ${heavy} (10 ms each), 1 worker at concurrency 10 (${done.length}/10; ${stats.pending} of A's still waiting after)`,
      figure: `finished after enqueue: first ${ms(done[0] ?? NaN)}, last ${ms(worst)}`,
      target: 'all within 1000 ms',
      pass: done.length === 10 && worst <= 1000,
    };
  });
}

/**
 * Turns at scale: 10,000 distinct groups with two no-op jobs each (every first job enqueued
 * before any second), one worker at concurrency 10: every group's first job should start
 * before any group's second; and the pace against the same 20,000 jobs without groups.
 */
async function groupsAtScale(env: Env): Promise<FlowLine> {
  const groups = 10_000;
  const pace = async (grouped: boolean) =>
    withWorkers(env, 1, 10, async (producer, children) => {
      const t0 = Date.now();
      for (const round of [1, 2]) {
        for (let i = 0; i < groups; i += 5000) {
          await producer.enqueueBulk!(
            Array.from({ length: 5000 }, (_, j) => ({ name: 'job', data: { tag: `${round}`, t: i + j }, opts: { queue: QUEUE, ...(grouped ? { group: `g${i + j}` } : {}) } })),
          );
        }
      }
      const starts = await collect(children, (s) => s.length >= 2 * groups, 120_000);
      const seconds = (Date.now() - t0) / 1000;
      const ordered = [...starts].sort((a, b) => a[1] - b[1]);
      const lastFirst = ordered.findLastIndex(([tag]) => tag === '1');
      const firstSecond = ordered.findIndex(([tag]) => tag === '2');
      return { jobs: starts.length, seconds, turns: firstSecond < 0 || lastFirst < firstSecond, rate: starts.length / seconds };
    });
  const plain = await pace(false);
  const grouped = await pace(true);
  return {
    label: `groups: ${groups} distinct groups x 2 no-op jobs (enqueue and run), 1 worker at concurrency 10, against the same jobs without groups`,
    figure: `${grouped.jobs} jobs in ${grouped.seconds.toFixed(1)} s = ${Math.round(grouped.rate)} jobs/s (without groups ${Math.round(plain.rate)} jobs/s, ${(grouped.rate / plain.rate).toFixed(2)}x); every first job before any second: ${grouped.turns ? 'yes' : 'no'}`,
    target: 'every first job before any second; memory bound by jobs.groupLookahead, not by groups',
    pass: grouped.jobs === 2 * groups && grouped.turns,
  };
}

/** The busiest window of `ms` among sorted start times. */
function busiest(sorted: number[], ms: number): number {
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! <= sorted[i]! - ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

/** A backlog on a queue limited to 50 starts a second, drained by 3 worker processes. */
async function rateLimited(env: Env): Promise<FlowLine> {
  return withWorkers(env, 3, 20, async (producer, children) => {
    const limit = { max: 50, durationMs: 1000 };
    const jobs = 500;
    await producer.setQueueLimit!(QUEUE, limit);
    await sleep(300);
    await producer.enqueueBulk!(Array.from({ length: jobs }, () => ({ name: 'job', data: { tag: 'r' }, opts: { queue: QUEUE } })));
    const starts = await collect(children, (s) => s.length >= jobs, 60_000);
    const at = starts.map(([, t]) => t).sort((a, b) => a - b);
    const most = busiest(at, limit.durationMs);
    // The first window's starts come at once; the pace is what follows them.
    const rate = ((at.length - limit.max) / (at.at(-1)! - at[0]!)) * 1000;
    const ratio = rate / limit.max;
    return {
      label: `queue limited to ${limit.max}/s, ${jobs}-job backlog, 3 worker processes`,
      figure: `busiest one-second window ${most} starts; pace ${rate.toFixed(1)} starts/s = ${(ratio * 100).toFixed(1)} % of the limit`,
      target: `<= ${limit.max} per window, >= 95 %`,
      pass: at.length === jobs && most <= limit.max && ratio >= 0.95,
    };
  });
}

const us = (v: number) => `${Math.round(v)} µs`;
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);

/** Awaits each call in turn; returns its wall time per call, µs. */
async function timed<T>(n: number, call: (i: number) => Promise<T>): Promise<{ results: T[]; us: number[] }> {
  const results: T[] = [];
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    results.push(await call(i));
    times.push((performance.now() - t) * 1000);
  }
  return { results, us: times };
}

/**
 * 1,000 enqueues of 10 keys in throttle mode (one producer, each call awaited), against 1,000
 * plain enqueues in the same run; then one enqueue per key from a second producer, which has
 * seen none of the windows (a drop that reads the bucket). Jobs run: one per key.
 */
async function throttled(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 10, async (producer, children) => {
    const calls = 1000;
    const keys = 10;
    const plain = await timed(calls, () => producer.enqueue!('job', { tag: 'p' }, { queue: QUEUE }));
    const dedupe = (i: number) => ({ queue: QUEUE, dedupe: { key: `bench.${i % keys}`, ttlMs: 600_000 } });
    const throttle = await timed(calls, (i) => producer.enqueue!('job', { tag: 't', t: i }, dedupe(i)));
    const other = env.createNaq({ nats: { url: env.url }, log: { level: 'warn' } });
    await other.start({ timeoutMs: 10_000 });
    const read = await timed(keys, (i) => other.enqueue!('job', { tag: 't', t: -1 }, dedupe(i))).finally(() => other.stop());
    const ids = new Set(throttle.results);
    const agreed = read.results.every((id, i) => id === throttle.results[i]);
    // Every job is in the stream by now; once all ran, a moment more for any that should not.
    let allAt = 0;
    const starts = await collect(
      children,
      (s) => {
        if (!allAt && s.filter((x) => x[0] === 'p').length >= calls && s.filter((x) => x[0] === 't').length >= keys) allAt = Date.now();
        return allAt > 0 && Date.now() > allAt + 500;
      },
      30_000,
    );
    const runs = starts.filter((x) => x[0] === 't');
    return {
      label: `${calls} enqueues of ${keys} keys in throttle mode (each awaited, one producer), against ${calls} plain enqueues`,
      figure:
        `jobs run ${runs.length} (${new Set(runs.map((r) => r[3])).size} ids); per call: plain ${us(mean(plain.us))}, throttle ${us(mean(throttle.us))} ` +
        `(opening a window ${us(mean(throttle.us.slice(0, keys)))}, dropped from memory ${us(mean(throttle.us.slice(keys)))}, ` +
        `dropped by another producer after reading the bucket ${us(mean(read.us))})`,
      target: `jobs run = ${keys}`,
      pass: runs.length === keys && ids.size === keys && agreed,
    };
  });
}

/**
 * 1,000 enqueues of 10 keys in debounce mode (ttl 500 ms, each call awaited): each moves its
 * key's delayed job, which runs once, after the last of them, with its data.
 */
async function debounced(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 10, async (producer, children) => {
    const calls = 1000;
    const keys = 10;
    const ttlMs = 500;
    const plain = await timed(calls, () => producer.enqueue!('job', { tag: 'p' }, { queue: QUEUE }));
    const debounce = await timed(calls, (i) => producer.enqueue!('job', { tag: 'd', t: i }, { queue: QUEUE, dedupe: { key: `bench.${i % keys}`, ttlMs, mode: 'debounce' } }));
    const doneAt = Date.now();
    const starts = await collect(children, (s) => s.filter((x) => x[0] === 'd').length >= keys && Date.now() > doneAt + ttlMs + 1000, 30_000);
    const runs = starts.filter((x) => x[0] === 'd');
    // Each key's job ran with the data of its last enqueue: calls - keys .. calls - 1.
    const last = runs.every((r) => r[2] >= calls - keys && debounce.results[r[2]] === r[3]);
    return {
      label: `${calls} enqueues of ${keys} keys in debounce mode (ttl ${ttlMs} ms, each awaited), against ${calls} plain enqueues`,
      figure: `jobs run ${runs.length} (${new Set(runs.map((r) => r[3])).size} ids, ${last ? 'each with its key\'s last data' : 'NOT all with the last data'}); per call: plain ${us(mean(plain.us))}, debounce ${us(mean(debounce.us))} (starting a job ${us(mean(debounce.us.slice(0, keys)))}, moving it ${us(mean(debounce.us.slice(keys)))})`,
      target: `jobs run = ${keys}, each with its key's last data`,
      pass: runs.length === keys && new Set(debounce.results).size === keys && last,
    };
  });
}

/**
 * A flow of 10,000 no-op children on one worker (concurrency 20): the parent's start after the
 * last child's (a child's outcome, its notice and the tracker's release come between them).
 */
async function flowOfTenThousand(env: Env): Promise<FlowLine> {
  return withWorkers(env, 1, 20, async (producer, children) => {
    const size = 10_000;
    const t0 = Date.now();
    await producer.enqueueFlow!({ name: 'job', data: { tag: 'p' }, queue: QUEUE, children: Array.from({ length: size }, () => ({ name: 'job', data: { tag: 'c' }, queue: QUEUE })) });
    const enqueueMs = Date.now() - t0;
    const starts = await collect(children, (s) => s.some((x) => x[0] === 'p'), 120_000);
    const last = Math.max(...starts.filter((x) => x[0] === 'c').map((x) => x[1]));
    const parent = starts.find((x) => x[0] === 'p');
    const ran = starts.filter((x) => x[0] === 'c').length;
    const gap = parent ? parent[1] - last : NaN;
    return {
      label: `a flow of ${size} no-op children (${ran} ran), 1 worker at concurrency 20: the parent's start after the last child's start (flow enqueued in ${enqueueMs} ms, parent started ${parent ? Math.round(parent[1] - t0) : NaN} ms after the call)`,
      figure: ms(gap),
      target: '<= 1000 ms',
      pass: parent !== undefined && ran === size && gap <= 1000,
    };
  });
}

export async function runFlowControl(createNaq: CreateNaqLike, jsm: JetStreamManager, url: string, script: string, log: (line: string) => void): Promise<FlowLine[]> {
  const env: Env = { createNaq, jsm, url, script, log };
  const lines: FlowLine[] = [];
  for (const [name, scenario] of [
    ['delayed jobs at light load', delayedLight],
    ['10,000 delayed jobs due together', delayedBurst],
    ['a rate-limited queue', rateLimited],
    ['priorities', priorityJump],
    ['groups: fairness', groupsFair],
    ['groups: 10,000 groups', groupsAtScale],
    ['throttle windows', throttled],
    ['debounce windows', debounced],
    ['a flow of 10,000 children', flowOfTenThousand],
  ] as const) {
    log(`flow control: ${name}...`);
    try {
      lines.push(await scenario(env));
    } catch (error) {
      lines.push({ label: name, figure: `failed: ${error instanceof Error ? error.message : String(error)}`, target: '-', pass: false });
    }
  }
  await resetJetStream(jsm);
  return lines;
}

export function flowLines(lines: FlowLine[]): string[] {
  return ['flow control:', ...lines.map((l) => `  ${l.label}: ${l.figure} (target ${l.target}: ${l.pass ? 'PASS' : 'MISS'})`)];
}
