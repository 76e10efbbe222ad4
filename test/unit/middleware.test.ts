/**
 * Middleware (issue 13): applied in order around every handler, the first outermost; what it
 * returns is the result, what it throws fails the attempt; added later, it applies to later
 * calls; a handlers module's `middleware` export runs around its handlers and is no handler.
 */
import { describe, expect, it } from 'vitest';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { loadHandlers } from '../../src/actors/worker/handlers-module.js';
import { withMiddleware, type Middleware } from '../../src/actors/worker/middleware.js';
import { fixture } from '../support/paths.js';

const ctx = { jobId: 'j1', name: 'work', queue: 'q', attempt: 2, maxAttempts: 3 } as unknown as JobContext;

describe('middleware', () => {
  it('runs in order around the handler: the first outermost, each sees the job and the result of the rest', async () => {
    const seen: string[] = [];
    const list: Middleware[] = [
      async (job, _c, next) => {
        seen.push(`a before ${job.name} #${job.attempt} ${JSON.stringify(job.data)}`);
        const r = await next();
        seen.push('a after');
        return { a: r };
      },
      async (_job, c, next) => {
        seen.push(`b before ${c.jobId}`);
        return next();
      },
    ];
    const handlers = withMiddleware({ work: async (d: { n: number }) => (seen.push('handler'), d.n * 2) }, list);
    expect(await handlers.work!({ n: 21 }, ctx)).toEqual({ a: 42 });
    expect(seen).toEqual(['a before work #2 {"n":21}', 'b before j1', 'handler', 'a after']);
  });

  it('an error thrown by a middleware (or by the handler through it) rejects the call; next() twice is refused', async () => {
    const refuse: Middleware = async (job) => {
      throw new Error(`not allowed: ${job.name}`);
    };
    await expect(withMiddleware({ work: async () => 1 }, [refuse]).work!(null, ctx)).rejects.toThrow('not allowed: work');
    const twice: Middleware = async (_j, _c, next) => {
      await next();
      return next();
    };
    let runs = 0;
    await expect(withMiddleware({ work: async () => ++runs }, [twice]).work!(null, ctx)).rejects.toThrow('middleware 1 called next() twice');
    expect(runs).toBe(1);
  });

  it('without middleware the handler is called as it is; one added later applies to later calls', async () => {
    const list: Middleware[] = [];
    const handlers = withMiddleware({ work: (d: number) => d + 1 }, list);
    expect(handlers.work!(1, ctx)).toBe(2);
    list.push(async (_j, _c, next) => `got ${await next()}`);
    expect(await handlers.work!(1, ctx)).toBe('got 2');
  });

  it("a handlers module's middleware export runs around its handlers, and is not a handler", async () => {
    const handlers = await loadHandlers(fixture('middleware-handlers.mjs'));
    expect(Object.keys(handlers)).toEqual(['hello']);
    expect(await handlers.hello!({ who: 'you' }, { ...ctx, name: 'hello' } as JobContext)).toEqual({ outer: 'hello', inner: { wrapped: 'hello you' } });
  });
});
