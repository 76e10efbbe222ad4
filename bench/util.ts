/**
 * Shared plumbing for the benchmark: the private nats-server, wall-clock timing that holds
 * across processes, child processes that speak a tiny IPC protocol, and the result table.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { JetStreamManager } from '@nats-io/jetstream';
import { killThrowawayNatsServers, startThrowawayNatsServer } from '../test/support/throwaway-server.js';
import type { NatsServerProcess } from '../src/nats-server/process.js';

export type Category = 'enqueue' | 'drain' | 'end-to-end';
export type System = 'raw' | 'naq' | 'bullmq';

export interface Row {
  line: Category;
  system: System;
  variant: string;
  jobs: number;
  seconds: number;
  jobsPerSec: number;
  /** Peak RSS of the process that did the consuming, when measured. */
  peakRssBytes?: number;
  /** CPU time (user + system) of the consuming process per job, in µs, when measured. */
  cpuUsPerJob?: number;
  /** Of cpuUsPerJob, the main thread's (the rest: V8's helper threads), when measured. */
  mainThreadCpuUsPerJob?: number;
  /** The same after the first fifth of the jobs (the JIT warmed up). */
  steadyCpuUsPerJob?: number;
  /** CPU time (user + system) nats-server used per job over the same span, when measured. */
  serverCpuUsPerJob?: number;
  note?: string;
}

export function row(line: Category, system: System, variant: string, jobs: number, ms: number, extra: Partial<Row> = {}): Row {
  const seconds = ms / 1000;
  return { line, system, variant, jobs, seconds, jobsPerSec: seconds > 0 ? jobs / seconds : 0, ...extra };
}

/**
 * Milliseconds on the system clock with sub-millisecond resolution. Children report the
 * moment they saw their first and last job with it, and the parent compares those with its
 * own readings, so it must be one clock for every process on the machine — which
 * `performance.now()` alone is not (its origin is per process).
 */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** User + system CPU (µs) in a /proc stat file (a process's or one thread's); undefined when it cannot be read. */
function statCpuUs(path: string): number | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    // utime and stime are fields 14 and 15; the name before them, in parentheses, may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10_000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time (user + system, µs) process `pid` has used so far, all its threads, from
 * /proc/<pid>/stat; undefined where there is no /proc. Its unit is the clock tick (USER_HZ,
 * 10 ms on Linux), fine enough for spans of seconds.
 */
export function processCpuUs(pid: number): number | undefined {
  return statCpuUs(`/proc/${pid}/stat`);
}

/**
 * CPU time (µs) this process's main thread has used so far: where its JavaScript runs and its
 * socket I/O is done. The rest of `process.cpuUsage()` is V8's helper threads (the optimizing
 * compiler, the parallel scavenger, concurrent marking) and libuv's. Undefined where there is
 * no /proc; in ticks, as processCpuUs.
 */
export function mainThreadCpuUs(): number | undefined {
  return statCpuUs(`/proc/self/task/${process.pid}/stat`);
}

/** Per job, from two readings of processCpuUs; undefined when either is missing. */
export function perJob(from: number | undefined, to: number | undefined, jobs: number): number | undefined {
  return from === undefined || to === undefined || jobs <= 0 ? undefined : (to - from) / jobs;
}

/**
 * A drain's CPU figures as a child reported them, per job: its own (whole, main thread, after
 * the first fifth) and the server's between its first and last job; each only when measured.
 */
export function childDrainCpu(first: Extract<ChildMessage, { type: 'first' }>, done: Extract<ChildMessage, { type: 'done' }>, jobs: number): Partial<Row> {
  const server = perJob(first.serverCpuUs, done.serverCpuUs, jobs);
  return {
    ...(done.cpuUs !== undefined ? { cpuUsPerJob: done.cpuUs / jobs } : {}),
    ...(done.mainThreadCpuUs !== undefined ? { mainThreadCpuUsPerJob: done.mainThreadCpuUs / jobs } : {}),
    ...(done.steadyCpuUs !== undefined && done.steadyJobs ? { steadyCpuUsPerJob: done.steadyCpuUs / done.steadyJobs } : {}),
    ...(server !== undefined ? { serverCpuUsPerJob: server } : {}),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// The server

export interface BenchServer {
  url: string;
  server: NatsServerProcess;
  version: string;
  cleanup(): Promise<void>;
}


/**
 * Our own nats-server on a free port with a throwaway store: never the system one on 4222,
 * whose state (and other users) would make the figures meaningless.
 */
export async function startBenchServer(): Promise<BenchServer> {
  const throwaway = await startThrowawayNatsServer({ prefix: 'naq-bench-' });
  const { server } = throwaway;
  const version = /Version:\s+(\S+)/.exec(server.recentLog().join('\n'))?.[1] ?? 'unknown';
  const started = server;
  return {
    url: started.url,
    server: started,
    version,
    cleanup: () => throwaway.cleanup(),
  };
}

/**
 * Deletes every stream on the (private) server — KV buckets are streams too — so the next
 * phase starts from nothing: no backlog, no consumer state, no results left behind.
 */
export async function resetJetStream(jsm: JetStreamManager): Promise<void> {
  const names: string[] = [];
  for await (const name of jsm.streams.names()) names.push(name);
  for (const name of names) await jsm.streams.delete(name);
}

// ---------------------------------------------------------------------------------------
// Child processes

/** What a bench child says over IPC. Times are `wallNow()` readings in the child. */
export type ChildMessage =
  | { type: 'ready' }
  | { type: 'first'; t: number; serverCpuUs?: number }
  | { type: 'progress'; count: number }
  | {
      type: 'done';
      t: number;
      count: number;
      /** CPU µs (user + system) from the first job to the last. */
      cpuUs?: number;
      /** Of that, the main thread's (where there is /proc). */
      mainThreadCpuUs?: number;
      /** The same from the job after the first fifth to the last (JIT warm-up left out), and how many jobs that is. */
      steadyCpuUs?: number;
      steadyJobs?: number;
      serverCpuUs?: number;
    }
  | { type: 'latency'; count: number; p50: number; p99: number; max: number }
  /** The flow-control child's starts: [tag, start time, the time the job carried, job id]. */
  | { type: 'starts'; count: number; starts: Array<[string, number, number, string]> }
  | { type: 'stopped'; peakRss: number; vmHwm: number | null }
  | { type: 'unavailable'; reason: string }
  | { type: 'error'; message: string };

const children = new Set<ChildProcess>();

/**
 * Worker children run with the V8 flags the naq command uses (bin/naq.js), so their memory and
 * their CPU are what a deployed worker's are.
 */
export const WORKER_EXEC_ARGV = ['--max-semi-space-size=8'];

/** The middle value (the mean of the two middle ones for an even count): a line's figure over its rounds. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * A forked bench child. Messages are queued so that one arriving before anyone waits for it
 * (a fast 'first') is not lost; `progress` only feeds the stall detector.
 */
export class BenchChild {
  readonly proc: ChildProcess;
  readonly #queue: ChildMessage[] = [];
  #wake: (() => void) | undefined;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #lastProgressAt = Date.now();
  progress = 0;

  /**
   * `serverCpuUs`, when given, is read as each 'first' and 'done' arrives and set on it
   * (its `serverCpuUs`): read when a caller gets to it, it would count what ran meanwhile.
   */
  constructor(script: string, config: unknown, serverCpuUs?: () => number | undefined) {
    this.proc = fork(script, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: WORKER_EXEC_ARGV });
    children.add(this.proc);
    this.proc.on('message', (msg: ChildMessage) => {
      this.#lastProgressAt = Date.now();
      if (msg.type === 'progress') {
        this.progress = msg.count;
      } else {
        if (serverCpuUs && (msg.type === 'first' || msg.type === 'done')) msg.serverCpuUs = serverCpuUs();
        this.#queue.push(msg);
      }
      this.#wake?.();
    });
    this.proc.once('exit', (code, signal) => {
      children.delete(this.proc);
      this.#exit = { code, signal };
      this.#wake?.();
    });
  }

  /**
   * The next message of `type`. Fails when the child reports an error, exits, or says
   * nothing at all (not even progress) for `stallMs`: a stuck consumer must not hang the
   * whole run.
   */
  async next<T extends ChildMessage['type']>(type: T, stallMs = 30_000, deadline = Number.POSITIVE_INFINITY): Promise<Extract<ChildMessage, { type: T }>> {
    this.#lastProgressAt = Date.now();
    for (;;) {
      const index = this.#queue.findIndex((m) => m.type === type || m.type === 'error' || m.type === 'unavailable');
      if (index >= 0) {
        const [msg] = this.#queue.splice(index, 1);
        if (msg?.type === type) return msg as Extract<ChildMessage, { type: T }>;
        if (msg?.type === 'unavailable') throw new UnavailableError(msg.reason);
        if (msg?.type === 'error') throw new Error(`child ${this.proc.pid}: ${msg.message}`);
      }
      if (this.#exit) throw new Error(`child ${this.proc.pid} exited (${this.#exit.signal ?? this.#exit.code}) while waiting for '${type}'`);
      if (Date.now() > deadline) throw new Error(`child ${this.proc.pid} sent no '${type}' in time`);
      if (Date.now() - this.#lastProgressAt > stallMs) {
        throw new Error(`child ${this.proc.pid} said nothing for ${stallMs} ms while waiting for '${type}' (progress ${this.progress})`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  send(message: unknown): void {
    if (this.proc.connected) this.proc.send(message as never);
  }

  /**
   * Asks the child to stop and returns its peak RSS; kills it if it does not comply. Never
   * throws: it runs in `finally` blocks, where an error would hide the one that matters.
   */
  async stop(timeoutMs = 15_000): Promise<{ peakRss: number; vmHwm: number | null } | undefined> {
    if (this.#exit) return undefined;
    this.send({ type: 'stop' });
    try {
      // A hard deadline: a child stuck in stop() still reports progress, so stall detection alone would wait forever.
      const stopped = await this.next('stopped', timeoutMs, Date.now() + timeoutMs);
      await this.#exited(5_000);
      return { peakRss: stopped.peakRss, vmHwm: stopped.vmHwm };
    } catch {
      return undefined;
    } finally {
      if (!this.#exit) this.proc.kill('SIGKILL');
    }
  }

  async #exited(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#exit && Date.now() < deadline) await sleep(20);
  }
}

/** The child found no usable API (the naq job API before it lands): skip, not fail. */
export class UnavailableError extends Error {}

/** Exit hooks: a bench that dies or is interrupted must not leave workers or a server behind. */
export function installCleanupHooks(): void {
  const killAll = (): void => {
    for (const child of children) child.kill('SIGKILL');
    killThrowawayNatsServers();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

// ---------------------------------------------------------------------------------------
// Inside a child

/** Peak resident set size so far, from the kernel's own high-water mark (Linux only). */
export function readVmHwm(pid: number | 'self' = 'self'): number | null {
  try {
    const match = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * The child side of the protocol: a job counter that reports the first job, progress once a
 * second and the moment the expected count is reached, plus RSS sampling. The sampled
 * maximum backs up VmHWM where /proc is not available.
 */
export function childReporter(expected: number, total = expected) {
  const send = (msg: ChildMessage): void => {
    process.send?.(msg);
  };
  let count = 0;
  let firstSent = false;
  let cpuAtFirst: NodeJS.CpuUsage | undefined;
  let mainAtFirst: number | undefined;
  let cpuAtFifth: NodeJS.CpuUsage | undefined;
  // `total`: the jobs of the run, when the caller reports 'done' itself (expected is then infinite).
  const fifth = Number.isFinite(total) ? Math.floor(total / 5) : 0;
  const cpuSince = (at: NodeJS.CpuUsage | undefined): number => {
    const used = process.cpuUsage(at);
    return used.user + used.system;
  };
  const cpuSinceFirst = (): number => cpuSince(cpuAtFirst);
  /** The CPU since the first job, and the main thread's part of it where it can be read. */
  const used = (): { cpuUs: number; mainThreadCpuUs?: number } => {
    const main = mainAtFirst === undefined ? undefined : mainThreadCpuUs();
    return { cpuUs: cpuSinceFirst(), ...(main !== undefined ? { mainThreadCpuUs: main - mainAtFirst! } : {}) };
  };
  /** CPU from the first fifth of the expected jobs on, and the jobs it covers (none before then). */
  const steady = (done: number): { steadyCpuUs?: number; steadyJobs?: number } =>
    cpuAtFifth && done > fifth ? { steadyCpuUs: cpuSince(cpuAtFifth), steadyJobs: done - fifth } : {};
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 50);
  const ticker = setInterval(() => send({ type: 'progress', count }), 1000);
  const first = (t = wallNow()): void => {
    if (!firstSent) {
      firstSent = true;
      cpuAtFirst = process.cpuUsage();
      mainAtFirst = mainThreadCpuUs();
      send({ type: 'first', t });
    }
  };
  return {
    send,
    /** Call once per finished job. */
    count(): void {
      count++;
      if (!firstSent) first();
      if (count === fifth) cpuAtFifth = process.cpuUsage();
      if (count === expected) send({ type: 'done', t: wallNow(), count, ...used(), ...steady(count) });
    },
    /** Call when the first job arrives, if that is earlier than its completion. */
    first,
    get processed(): number {
      return count;
    },
    /** CPU µs (user + system) this process used since its first job. */
    cpuSinceFirst,
    /** The same, with the main thread's part, for a 'done' the caller sends itself. */
    used,
    /** CPU after the first fifth of `total` jobs, for a 'done' the caller sends itself. */
    steady,
    finish(): { peakRss: number; vmHwm: number | null } {
      clearInterval(sampler);
      clearInterval(ticker);
      return { peakRss: Math.max(peakRss, process.memoryUsage.rss()), vmHwm: readVmHwm() };
    },
  };
}

/** Resolves on the parent's `{ type: 'stop' }` (or the parent going away). */
export function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    process.on('message', (msg: { type?: string }) => {
      if (msg?.type === 'stop') resolve();
    });
    process.on('disconnect', () => resolve());
  });
}

/** Exits once the IPC channel has had a moment to deliver the last message (send is asynchronous). */
export async function exitSoon(code: number): Promise<never> {
  await sleep(100);
  process.exit(code);
}

export function childConfig<T>(): T {
  const arg = process.argv[2];
  if (!arg) throw new Error('a bench child needs its config as a JSON argument');
  return JSON.parse(arg) as T;
}

// ---------------------------------------------------------------------------------------
// Redis probe and formatting

/** Whether something answers PING like Redis, without a client library's reconnect noise. */
export function redisAnswers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => finish(data.toString().startsWith('+PONG')));
    socket.once('error', () => finish(false));
  });
}

export function fmtRate(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtBytes(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** A plain text table: numbers right-aligned, everything else left-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map(
    (_, i) => rows.some((r) => /\d/.test(r[i] ?? '')) && rows.every((r) => /^[\d.,x-]*$/.test(r[i] ?? '')),
  );
  const line = (cells: string[]): string =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join(' | ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}
