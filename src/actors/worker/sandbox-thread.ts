/**
 * The entry of one sandbox thread (the pool in sandbox.ts starts it): imports the handlers
 * module, then runs the jobs the pool sends, one at a time, with a `ctx` whose progress and
 * log lines are messages to the main thread, and posts back the result or what was thrown.
 * Whatever kills the thread (an uncaught throw, `process.exit`) is for the pool to notice: it
 * fails the attempt that was running, and the next job gets a new thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { format } from 'node:util';
import { NaqError } from '../../core/errors.js';
import { readHandlersModule, type HandlersModule } from './handlers-module.js';
import { RateLimitedError, type JobContext } from './handler.js';
import type { JobLogger } from './job-logs.js';
import { ResultNotSerializableError, snapshotProgress } from './outcome.js';
import { describeThrown, rebuildError, type FromThread, type JobMeta, type LogLevel, type ToThread } from './sandbox-messages.js';
import type { BatchSummary, ChildOutcomes } from '../../model/flow.js';
import type { ErrorInfo } from '../../core/errors.js';

/** What the pool gives a thread when it starts it. */
export interface SandboxThreadData {
  /** The handlers module's absolute path. */
  module: string;
}

const LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

const port = parentPort;
if (!port) throw new Error('sandbox-thread.js runs in a worker thread that the sandbox pool starts');
const { module } = workerData as SandboxThreadData;
// Started at once and awaited by every run: a module that fails to load here fails each job
// with the reason, rather than killing threads the pool would keep replacing.
const loaded: Promise<HandlersModule> = readHandlersModule(module);
loaded.catch(() => {});
const post = (message: FromThread): void => port.postMessage(message);

/** Flow parents waiting for their children's outcomes from the main thread, by run id. */
const childRequests = new Map<number, { resolve(o: ChildOutcomes): void; reject(e: Error): void }>();

port.on('message', (msg: ToThread) => {
  if (msg.type === 'run') void run(msg);
  else if (msg.type === 'children') {
    const request = childRequests.get(msg.id);
    childRequests.delete(msg.id);
    if (msg.outcomes) request?.resolve(msg.outcomes);
    else request?.reject(rebuildError(msg.error ?? { name: 'Error', message: 'no answer' }));
  }
});

async function run(msg: Extract<ToThread, { type: 'run' }>): Promise<void> {
  const { id } = msg;
  try {
    const { handlers } = await loaded;
    const handler = Object.hasOwn(handlers, msg.name) ? handlers[msg.name] : undefined;
    if (!handler) throw new NaqError('UNKNOWN_HANDLER', `no handler named ${msg.name} in ${module}, as the sandbox thread imported it`);
    const value: unknown = await handler(msg.data, new ThreadContext(id, msg.job));
    try {
      post({ type: 'done', id, value });
    } catch (error) {
      // A function, a symbol, a class instance with private state: structured clone refuses it.
      const refused = new ResultNotSerializableError(`it cannot leave the sandbox thread: ${(error as Error).message}`);
      post({ type: 'fail', id, error: describeThrown(refused) });
    }
  } catch (thrown) {
    post({ type: 'fail', id, error: describeThrown(thrown) });
  }
}

/** A log line for the main thread's job logger; what cannot be cloned goes as text. */
function postLog(id: number, level: LogLevel, args: unknown[]): void {
  try {
    post({ type: 'log', id, level, args });
    return;
  } catch {
    // An argument structured clone refuses (a function inside an object, a proxy).
  }
  try {
    post({ type: 'log', id, level, args: args.map(cloneable) });
  } catch {
    post({ type: 'log', id, level, args: ['[a log line that could not be read]'] });
  }
}

function cloneable(value: unknown): unknown {
  if (typeof value === 'function' || typeof value === 'symbol') return String(value);
  if (value === null || typeof value !== 'object' || value instanceof Error) return value;
  try {
    return JSON.parse(JSON.stringify(value)) as unknown;
  } catch {
    return format('%o', value);
  }
}

/**
 * A handler's `ctx` in a thread: the job's fields; progress and log lines posted to the main
 * thread, where the job's own ctx records them; `rateLimit` as in-process (the error crosses).
 */
class ThreadContext implements JobContext {
  readonly jobId: string;
  readonly name: string;
  readonly queue: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly batch: BatchSummary | undefined;
  readonly #id: number;
  #log: JobLogger | undefined;
  #signal: AbortSignal | undefined;
  #children: Promise<ChildOutcomes> | undefined;

  constructor(id: number, job: JobMeta) {
    this.#id = id;
    this.batch = job.batch;
    this.jobId = job.jobId;
    this.name = job.name;
    this.queue = job.queue;
    this.attempt = job.attempt;
    this.maxAttempts = job.maxAttempts;
  }

  /**
   * A timeout, a cancel or a drain terminates the thread (sandbox.ts): nothing after the abort
   * runs here, so this signal never fires. One per job, so listeners a handler leaves on it go
   * with the job.
   */
  get signal(): AbortSignal {
    return (this.#signal ??= new AbortController().signal);
  }

  progress(value: unknown): void {
    // Checked here too, so the handler learns at the call that a value cannot be stored.
    post({ type: 'progress', id: this.#id, value: snapshotProgress(value) });
  }

  rateLimit(ms: number): never {
    throw new RateLimitedError(ms);
  }

  async childResults<T = unknown>(): Promise<Record<string, T>> {
    return (await this.#askChildren()).results as Record<string, T>;
  }

  async childFailures(): Promise<Record<string, ErrorInfo>> {
    return (await this.#askChildren()).failures;
  }

  /** Read by the main thread (it has the connection), once per job. */
  #askChildren(): Promise<ChildOutcomes> {
    if (this.#children) return this.#children;
    const asked = new Promise<ChildOutcomes>((resolve, reject) => {
      childRequests.set(this.#id, { resolve, reject });
      post({ type: 'children', id: this.#id });
    });
    this.#children = asked;
    // A read that failed is not kept: the handler may ask again.
    asked.catch(() => {
      if (this.#children === asked) this.#children = undefined;
    });
    return asked;
  }

  /** The level methods and the call form only: the pino logger itself is the main thread's. */
  get log(): JobLogger {
    if (!this.#log) {
      const id = this.#id;
      const log = (...args: unknown[]) => postLog(id, 'info', args);
      for (const level of LEVELS) Object.defineProperty(log, level, { value: (...args: unknown[]) => postLog(id, level, args) });
      this.#log = log as unknown as JobLogger;
    }
    return this.#log;
  }
}
