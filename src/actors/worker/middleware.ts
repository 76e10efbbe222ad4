/**
 * Middleware around every handler (`naq.use(fn)`, a handlers module's `middleware` export):
 * for tracing, metrics, log context or authorization. Applied in order, the first outermost;
 * what one throws fails the attempt as a handler error would.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import type { Handler, Handlers, JobContext } from './handler.js';

/** What a middleware sees of the job (the rest is on `ctx`). */
export interface MiddlewareJob {
  id: string;
  name: string;
  queue: string;
  data: unknown;
  attempt: number;
}

/** Calls the next middleware, or the handler; resolves with its result. Call it at most once. */
export type Next = () => Promise<unknown>;

export type Middleware = (job: MiddlewareJob, ctx: JobContext, next: Next) => Promise<unknown> | unknown;

/** A middleware that is not a function, named by where it came from. */
export function checkMiddleware(value: unknown, where: string): Middleware {
  if (typeof value !== 'function') throw new InvalidArgumentError(`${where}: a middleware must be a function (job, ctx, next), got ${typeof value}`);
  return value as Middleware;
}

/**
 * The handlers, each run through `middleware` — read at each call, so middleware added later
 * (`naq.use`) applies to the jobs that start after it. Without any, a handler is called as is.
 */
export function withMiddleware(handlers: Handlers, middleware: readonly Middleware[]): Handlers {
  const wrapped: Handlers = {};
  for (const [name, handler] of Object.entries(handlers)) {
    wrapped[name] = (data, ctx) => (middleware.length === 0 ? handler(data, ctx) : run(middleware, handler, data, ctx));
  }
  return wrapped;
}

function run(middleware: readonly Middleware[], handler: Handler, data: unknown, ctx: JobContext): Promise<unknown> {
  const job: MiddlewareJob = { id: ctx.jobId, name: ctx.name, queue: ctx.queue, data, attempt: ctx.attempt };
  const chain = [...middleware];
  const step = async (i: number): Promise<unknown> => {
    if (i === chain.length) return handler(data, ctx);
    let called = false;
    return chain[i]!(job, ctx, () => {
      if (called) return Promise.reject(new Error(`middleware ${i + 1} called next() twice`));
      called = true;
      return step(i + 1);
    });
  };
  return step(0);
}
