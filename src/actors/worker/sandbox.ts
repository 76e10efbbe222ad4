/**
 * Sandboxed processors (`worker.sandbox`, `--sandbox`): the handlers of a handlers module run
 * in worker threads, so a CPU-bound handler cannot starve the main thread, whose event loop
 * goes on keeping the job alive (`working()`, liveness.ts), recording outcomes and running
 * the middleware around each sandboxed call.
 *
 * A pool of at most `threads` threads, started as jobs need them, each running one job at a
 * time (sandbox-thread.ts). A thread that dies — a throw outside the handler's promise,
 * `process.exit` — fails the attempt it was running, like a handler error, and the next job
 * gets a new thread. A timeout, a cancel or a drain aborts the job's `ctx.signal`: the thread
 * is terminated (a busy loop never yields, so nothing short of that stops it) and replaced.
 * The job path is unchanged: a sandboxed handler is a function that asks the pool.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { InvalidArgumentError, NaqError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Handlers, JobContext } from './handler.js';
import { readHandlersModule } from './handlers-module.js';
import { withMiddleware } from './middleware.js';
import { describeThrown, rebuildError, type FromThread, type ToThread } from './sandbox-messages.js';
import type { SandboxThreadData } from './sandbox-thread.js';

/** The thread running the job died before the handler settled. */
export class SandboxCrashError extends NaqError {
  constructor(message: string, cause?: unknown) {
    super('SANDBOX_CRASHED', message, cause === undefined ? undefined : { cause });
  }
}

/** The pool was closed (the worker stopped) before the job finished. */
export class SandboxClosedError extends NaqError {
  constructor() {
    super('SANDBOX_CLOSED', 'the sandbox pool was closed before the job finished');
  }
}

export interface SandboxPoolOptions {
  /** The handlers module (a path). */
  module: string;
  /** Threads at most, each running one job: the worker's concurrency times its queues. */
  threads: number;
  /** Where a thread's death is reported. */
  logger?: Logger;
}

export interface SandboxStats {
  /** Threads alive now, and of them running a job. */
  threads: number;
  busy: number;
  /** Jobs waiting for a thread. */
  waiting: number;
  /** Threads being terminated (an aborted job's): they count against the bound until they exit. */
  stopping: number;
  /** Threads started, died on their own, and terminated by an abort, since the pool was made. */
  started: number;
  crashed: number;
  terminated: number;
}

interface Run {
  readonly id: number;
  readonly name: string;
  readonly data: unknown;
  readonly ctx: JobContext;
  readonly signal: AbortSignal;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
  readonly onAbort: () => void;
  thread: Thread | undefined;
  settled: boolean;
}

interface Thread {
  readonly worker: Worker;
  run: Run | undefined;
  /** Dropped from the pool: dead, or being terminated. */
  gone: boolean;
}

let entry: URL | undefined;

/**
 * The thread's entry: the compiled sandbox-thread.js beside this file. Run from source (the
 * tests, tsx) there is only the .ts: a small module imports it through tsx.
 */
function threadEntry(): URL {
  if (entry) return entry;
  const js = new URL('./sandbox-thread.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return (entry = js);
  const ts = new URL('./sandbox-thread.ts', import.meta.url).href;
  const boot = `const { tsImport } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}); await tsImport(${JSON.stringify(ts)}, ${JSON.stringify(ts)});`;
  return (entry = new URL(`data:text/javascript,${encodeURIComponent(boot)}`));
}

export class SandboxPool {
  readonly #module: string;
  readonly #size: number;
  readonly #log: Logger | undefined;
  readonly #threads = new Set<Thread>();
  readonly #idle: Thread[] = [];
  readonly #waiting: Run[] = [];
  #nextId = 0;
  #closed = false;
  #started = 0;
  #crashed = 0;
  #terminated = 0;
  #stopping = 0;

  constructor(options: SandboxPoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new InvalidArgumentError(`sandbox threads must be an integer >= 1, got ${String(options.threads)}`);
    this.#module = resolve(options.module);
    this.#size = options.threads;
    this.#log = options.logger;
  }

  /** Runs handler `name` of the module in a thread; settles with its outcome, or at once when `ctx.signal` aborts. */
  run(name: string, data: unknown, ctx: JobContext): Promise<unknown> {
    if (this.#closed) return Promise.reject(new SandboxClosedError());
    // Read on this path only: it makes the job's AbortController (running-job.ts).
    const signal = ctx.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<unknown>((resolve, reject) => {
      const run: Run = { id: ++this.#nextId, name, data, ctx, signal, resolve, reject, onAbort: () => this.#abort(run), thread: undefined, settled: false };
      signal.addEventListener('abort', run.onAbort, { once: true });
      const thread = this.#idle.pop() ?? this.#spawn();
      if (thread) this.#start(thread, run);
      else this.#waiting.push(run);
    });
  }

  stats(): SandboxStats {
    let busy = 0;
    for (const t of this.#threads) if (t.run) busy++;
    return { threads: this.#threads.size, busy, waiting: this.#waiting.length, stopping: this.#stopping, started: this.#started, crashed: this.#crashed, terminated: this.#terminated };
  }

  /** Terminates every thread; jobs still running or waiting fail with SandboxClosedError. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const run of this.#waiting.splice(0)) this.#settle(run, false, new SandboxClosedError());
    const threads = [...this.#threads];
    for (const thread of threads) {
      const run = thread.run;
      this.#drop(thread);
      if (run) this.#settle(run, false, new SandboxClosedError());
    }
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  #spawn(): Thread | undefined {
    // A thread being terminated still runs until it reaches JavaScript again (a native sync
    // call, a pbkdf2Sync, finishes first): it counts until it exits.
    if (this.#closed || this.#threads.size + this.#stopping >= this.#size) return undefined;
    const workerData: SandboxThreadData = { module: this.#module };
    const worker = new Worker(threadEntry(), { workerData });
    // A thread never keeps the process alive by itself: a running job is held by the worker.
    worker.unref();
    const thread: Thread = { worker, run: undefined, gone: false };
    this.#threads.add(thread);
    this.#started++;
    worker.on('message', (m: FromThread) => this.#message(thread, m));
    worker.on('messageerror', (error) => this.#discard(thread, error));
    worker.on('error', (error) => this.#died(thread, `threw outside the handler's promise: ${error.message}`, error));
    worker.on('exit', (code) => this.#died(thread, `exited (code ${code})`));
    return thread;
  }

  #start(thread: Thread, run: Run): void {
    thread.run = run;
    run.thread = thread;
    const { ctx } = run;
    const message: ToThread = {
      type: 'run',
      id: run.id,
      name: run.name,
      data: run.data,
      job: { jobId: ctx.jobId, name: ctx.name, queue: ctx.queue, attempt: ctx.attempt, maxAttempts: ctx.maxAttempts, ...(ctx.batch ? { batch: ctx.batch } : {}) },
    };
    try {
      thread.worker.postMessage(message);
    } catch (error) {
      this.#failRun(thread, error);
    }
  }

  #message(thread: Thread, m: FromThread): void {
    const run = thread.run;
    // The late word of a job that was already settled (aborted) is not this run's.
    if (!run || m.id !== run.id) return;
    switch (m.type) {
      case 'done':
        this.#settle(run, true, m.value);
        this.#release(thread);
        return;
      case 'fail':
        this.#settle(run, false, rebuildError(m.error));
        this.#release(thread);
        return;
      case 'progress':
        try {
          run.ctx.progress(m.value);
        } catch {
          // Checked in the thread already, where the handler was told.
        }
        return;
      case 'children':
        Promise.all([run.ctx.childResults(), run.ctx.childFailures()]).then(
          ([results, failures]) => this.#answer(thread, run, { type: 'children', id: run.id, outcomes: { results, failures } }),
          (error: unknown) => this.#answer(thread, run, { type: 'children', id: run.id, error: describeThrown(error) }),
        );
        return;
      case 'log':
        try {
          (run.ctx.log[m.level] as (...args: unknown[]) => void)(...m.args);
        } catch {
          // A line is never worth a job.
        }
        return;
    }
  }

  /** An answer to a run that still runs on that thread (not one aborted meanwhile). */
  #answer(thread: Thread, run: Run, message: ToThread): void {
    if (thread.run !== run || run.settled) return;
    try {
      thread.worker.postMessage(message);
    } catch (error) {
      this.#discard(thread, error);
    }
  }

  /** The run's message could not be passed to the thread: that attempt fails, the thread is fine (the handler never started). */
  #failRun(thread: Thread, error: unknown): void {
    const run = thread.run;
    if (!run) return;
    this.#settle(run, false, error);
    this.#release(thread);
  }

  /** Timeout, cancel or drain: the job settles at once and its thread is terminated. */
  #abort(run: Run): void {
    const waiting = this.#waiting.indexOf(run);
    if (waiting >= 0) this.#waiting.splice(waiting, 1);
    const thread = run.thread;
    this.#settle(run, false, run.signal.reason);
    if (!thread || thread.run !== run) return;
    this.#terminate(thread);
  }

  /**
   * A message between the thread and its job was lost while the handler may still run: the
   * attempt fails, and the thread is terminated rather than given the next job beside it.
   */
  #discard(thread: Thread, error: unknown): void {
    const run = thread.run;
    if (run) this.#settle(run, false, error);
    this.#terminate(thread);
  }

  /** Out of the pool; a new thread takes its place once it has exited. */
  #terminate(thread: Thread): void {
    if (thread.gone) return;
    this.#terminated++;
    this.#stopping++;
    this.#drop(thread);
    void thread.worker
      .terminate()
      .catch(() => {})
      .finally(() => {
        this.#stopping--;
        this.#fill();
      });
  }

  /** A thread died on its own ('error', then 'exit'; or 'exit' alone, e.g. process.exit). */
  #died(thread: Thread, why: string, error?: Error): void {
    if (thread.gone) return;
    const run = thread.run;
    this.#drop(thread);
    if (this.#closed) return;
    this.#crashed++;
    // An error thrown later by an earlier job's leftover code (a timer) lands on the job running now.
    if (run) this.#settle(run, false, new SandboxCrashError(`the sandbox thread running this job ${why} (it may come from code an earlier job on that thread left running, such as a timer)`, error));
    this.#log?.warn(
      { err: error, jobId: run?.ctx.jobId, module: this.#module },
      `a sandbox thread ${why}; ${run ? 'the attempt it was running failed; ' : ''}the next job gets a new thread`,
    );
  }

  /** Out of the pool; waiting jobs get a new thread in its place. */
  #drop(thread: Thread): void {
    if (thread.gone) return;
    thread.gone = true;
    thread.run = undefined;
    this.#threads.delete(thread);
    const idle = this.#idle.indexOf(thread);
    if (idle >= 0) this.#idle.splice(idle, 1);
    this.#fill();
  }

  /** Waiting jobs get new threads, as far as the bound allows. */
  #fill(): void {
    let next: Thread | undefined;
    while (this.#waiting.length > 0 && (next = this.#spawn())) this.#start(next, this.#waiting.shift()!);
  }

  /** The thread's job settled: the next waiting job, or idle. */
  #release(thread: Thread): void {
    thread.run = undefined;
    if (thread.gone) return;
    const next = this.#waiting.shift();
    if (next) this.#start(thread, next);
    else this.#idle.push(thread);
  }

  #settle(run: Run, ok: boolean, outcome: unknown): void {
    if (run.settled) return;
    run.settled = true;
    run.thread = undefined;
    run.signal.removeEventListener('abort', run.onAbort);
    if (ok) run.resolve(outcome);
    else run.reject(outcome);
  }
}

/** A handlers module whose handlers run in a SandboxPool; `pool.close()` when the worker stopped. */
export interface SandboxedHandlers {
  handlers: Handlers;
  pool: SandboxPool;
}

/**
 * loadHandlers (handlers-module.ts), sandboxed: each handler is a call to the pool, with the
 * module's `middleware` around it in the main thread. The module is imported here too — for
 * its handlers' names and its middleware — and once in every thread.
 */
export async function loadSandboxedHandlers(file: string, options: { threads: number; logger?: Logger }): Promise<SandboxedHandlers> {
  const mod = await readHandlersModule(file);
  const pool = new SandboxPool({ module: mod.path, threads: options.threads, ...(options.logger ? { logger: options.logger } : {}) });
  const handlers: Handlers = {};
  for (const name of Object.keys(mod.handlers)) handlers[name] = (data, ctx) => pool.run(name, data, ctx);
  return { handlers: mod.middleware.length ? withMiddleware(handlers, mod.middleware) : handlers, pool };
}
