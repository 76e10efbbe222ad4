/**
 * Issue 9's hostile user, against a real nats-server: handlers whose outcomes cannot be
 * stored, oversized dead letters, long durations, dependency cycles, data JSON would change.
 * Each case used to crash the worker, redeliver forever, fire at once or wait forever.
 */
import { Kvm } from '@nats-io/kv';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { JobFailedError } from '../../src/actors/jobs/reads.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { buildJob } from '../../src/model/job.js';
import type { Naq } from '../../src/naq.js';
import { connectTo, startServer, stopAllServers, until } from '../support/harness.js';
import { deadLetters, producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

function circular(): Record<string, unknown> {
  const o: Record<string, unknown> = { name: 'loop' };
  o.self = o;
  return o;
}

/** The error a job ended with; fails the test if it completed. */
async function failure(naq: Naq<any>, id: string): Promise<JobFailedError> {
  const error = await naq.waitFor(id, { timeoutMs: 10_000 }).then(
    (value) => new Error(`job ${id} completed with ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(JobFailedError);
  return error as JobFailedError;
}

describe('no job can kill a worker', () => {
  it('records what a handler throws, whatever it is, and keeps serving', async () => {
    const server = await startServer();
    const throws: Record<string, () => unknown> = {
      circular: () => circular(),
      bigint: () => ({ amount: 10n }),
      nothing: () => undefined,
      hostile: () =>
        new Proxy(
          {},
          {
            get() {
              throw new Error('no reading me');
            },
            getPrototypeOf() {
              throw new Error('no prototype either');
            },
          },
        ),
      caused: () => new Error('outer', { cause: new Error('middle', { cause: { code: 42n } }) }),
      huge: () => new Error('x'.repeat(3 * 1024 * 1024)),
    };
    const w = await worker(server, {
      thrower: async (d: { kind: string }) => {
        throw throws[d.kind]!();
      },
      ok: async () => 'still serving',
    });
    const ids = await Promise.all(Object.keys(throws).map((kind) => w.enqueue('thrower', { kind })));
    const errors = await Promise.all(ids.map((id) => failure(w, id)));
    const byKind = Object.fromEntries(Object.keys(throws).map((kind, i) => [kind, errors[i]!.error!]));
    expect(byKind.circular!.message).toContain('[circular]');
    expect(byKind.bigint!.message).toContain('10n');
    expect(byKind.nothing!.message).toBe('undefined');
    expect(byKind.hostile!.message).toBeTypeOf('string');
    expect(byKind.caused).toMatchObject({ message: 'outer', cause: { message: 'middle', cause: { message: '{"code":"42n"}' } } });
    expect(byKind.huge!.message.length).toBeLessThan(5000);
    expect(byKind.huge!.message).toMatch(/more characters cut/);
    expect(await deadLetters(server)).toHaveLength(ids.length);
    await expect(w.waitFor(await w.enqueue('ok', null), { timeoutMs: 5000 })).resolves.toBe('still serving');
  });

  it('refuses a progress value that cannot be stored at the call, and the worker goes on', async () => {
    const server = await startServer();
    const seen: string[] = [];
    const w = await worker(server, {
      progress: async (d: { kind: string }, ctx) => {
        const value = d.kind === 'bigint' ? 10n : d.kind === 'circular' ? circular() : d.kind === 'huge' ? 'p'.repeat(2 * 1024 * 1024) : { ok: 1 };
        try {
          ctx.progress(value);
        } catch (error) {
          seen.push((error as { code: string }).code);
          throw error;
        }
        await new Promise((r) => setTimeout(r, 300));
        return 'done';
      },
    });
    const bad = await Promise.all(['bigint', 'circular', 'huge'].map((kind) => w.enqueue('progress', { kind })));
    const codes = (await Promise.all(bad.map((id) => failure(w, id)))).map((e) => e.error!.code);
    expect(codes).toEqual(['PROGRESS_NOT_SERIALIZABLE', 'PROGRESS_NOT_SERIALIZABLE', 'PROGRESS_TOO_LARGE']);
    expect(seen.sort()).toEqual(['PROGRESS_NOT_SERIALIZABLE', 'PROGRESS_NOT_SERIALIZABLE', 'PROGRESS_TOO_LARGE']);
    const good = await w.enqueue('progress', { kind: 'fine' });
    await expect(w.waitFor(good, { timeoutMs: 5000 })).resolves.toBe('done');
    expect(await w.getJob(good)).toMatchObject({ status: 'completed', progress: { ok: 1 } });
  });

  it('dead-letters a failing or unknown-handler job of exactly jobs.maxPayloadBytes, its data marked as cut', async () => {
    const server = await startServer();
    const w = await worker(server, {
      fails: async () => {
        throw new Error('no');
      },
    });
    // Generated ids (22 characters) send no Nats-Msg-Id header, so the whole limit is the job.
    const exactly = (name: string) => {
      const { bytes } = buildJob(name, '', {}, 'i'.repeat(22), { attempts: 1, backoff: { type: 'exponential', delay: 1000 }, maxPayloadBytes: 1_048_576 });
      return 'd'.repeat(1_048_576 - bytes.length);
    };
    const fails = await w.enqueue('fails', exactly('fails'));
    const unknown = await (w as Naq<any>).enqueue('nobody-handles-this', exactly('nobody-handles-this'));
    expect((await failure(w, fails)).error!.message).toBe('no');
    expect((await failure(w, unknown)).error!.code).toBe('UNKNOWN_HANDLER');
    const dead = await deadLetters(server);
    expect(dead.map((d) => d.jobId).sort()).toEqual([fails, unknown].sort());
    for (const d of dead) {
      expect(d.job.data).toBeNull();
      expect(d.dataTruncated.bytes).toBeGreaterThan(1_000_000);
      expect(d.dataTruncated.preview).toMatch(/^"ddd/);
    }
    // Its data is gone: a retry would run it without, so it is refused with the reason.
    await expect(w.retryDead(fails)).rejects.toThrow(/did not fit in its dead letter/);
  });
});

describe('every outcome ends recorded', () => {
  it('fails a result that cannot be stored with a typed error, follows the retry policy and dead-letters it', async () => {
    const server = await startServer();
    const runs: Record<string, number> = {};
    const results: Record<string, () => unknown> = {
      bigint: () => 10n,
      circular: () => circular(),
      map: () => new Map([['a', 1]]),
      huge: () => ({ blob: 'r'.repeat(2 * 1024 * 1024) }),
      nested: () => ({ list: [1, { fn: () => 1 }] }),
    };
    const w = await worker(server, {
      returns: async (d: { kind: string }) => {
        runs[d.kind] = (runs[d.kind] ?? 0) + 1;
        return results[d.kind]!();
      },
    });
    const kinds = Object.keys(results);
    const ids = await Promise.all(kinds.map((kind) => w.enqueue('returns', { kind }, { attempts: 2, backoff: { type: 'fixed', delay: 50 } })));
    const errors = await Promise.all(ids.map((id) => failure(w, id)));
    const byKind = Object.fromEntries(kinds.map((kind, i) => [kind, errors[i]!.error!]));
    expect(byKind.bigint).toMatchObject({ code: 'RESULT_NOT_SERIALIZABLE', message: expect.stringContaining('result is a BigInt') });
    expect(byKind.circular).toMatchObject({ code: 'RESULT_NOT_SERIALIZABLE', message: expect.stringContaining('result.self is a circular reference') });
    expect(byKind.map).toMatchObject({ code: 'RESULT_NOT_SERIALIZABLE', message: expect.stringContaining('result is a Map') });
    expect(byKind.nested).toMatchObject({ code: 'RESULT_NOT_SERIALIZABLE', message: expect.stringContaining('result.list[1].fn is a function') });
    expect(byKind.huge).toMatchObject({ code: 'RESULT_TOO_LARGE' });
    // Each ran its two attempts, no more: nothing is redelivered forever.
    expect(runs).toEqual(Object.fromEntries(kinds.map((k) => [k, 2])));
    for (const id of ids) expect(await w.getJob(id)).toMatchObject({ status: 'failed', attempts: [{ n: 1 }, { n: 2 }] });
    expect((await deadLetters(server)).length).toBe(kinds.length);
  });
});

describe('a retry keeps the history', () => {
  it('when the retry reports progress before it ends (its active record once replaced the earlier attempts)', async () => {
    const server = await startServer();
    const w = await worker(server, {
      steps: async (_d: null, ctx) => {
        ctx.progress({ attempt: ctx.attempt });
        await new Promise((r) => setTimeout(r, 50));
        throw new Error(`attempt ${ctx.attempt} failed`);
      },
    });
    const id = await w.enqueue('steps', null, { attempts: 3, backoff: { type: 'fixed', delay: 20 } });
    await failure(w, id);
    const record = (await w.getJob(id))!;
    expect(record.attempts.map((a) => [a.n, a.error?.message])).toEqual([
      [1, 'attempt 1 failed'],
      [2, 'attempt 2 failed'],
      [3, 'attempt 3 failed'],
    ]);
  });
});

describe('long durations', () => {
  it('a timeout above 2^31−1 ms does not fire at once, and waitFor waits that long too', async () => {
    const server = await startServer();
    const w = await worker(server, { slow: async () => new Promise((r) => setTimeout(() => r('finished'), 300)) });
    const id = await w.enqueue('slow', null, { timeoutMs: 3_000_000_000 });
    await expect(w.waitFor(id, { timeoutMs: 3_000_000_000 })).resolves.toBe('finished');
    await expect(w.enqueue('slow', null, { timeoutMs: 1e15 })).rejects.toThrow(/invalid timeoutMs: expected at most 315360000000 ms/);
    await expect(w.waitFor(id, { timeoutMs: -5 })).rejects.toThrow(/invalid timeoutMs: expected at least 1 ms, got -5/);
    await expect(w.enqueueIn(-1, 'slow', null)).rejects.toThrow(/invalid delayMs/);
  });
});

describe('dependencies that can never resolve', () => {
  it('refuses a job that depends on itself, or closes a cycle, naming the ids', async () => {
    const server = await startServer();
    const p = await producer(server);
    await expect(p.enqueue('x', null, { jobId: 'self', dependsOn: ['self'] })).rejects.toThrow(/job self depends on itself/);
    await p.enqueue('x', null, { jobId: 'a', dependsOn: ['b'] });
    await p.enqueue('x', null, { jobId: 'c', dependsOn: ['a'] });
    const err = await p.enqueue('x', null, { jobId: 'b', dependsOn: ['c'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe('job b would wait for itself: dependency cycle b → c → a → b');
    await expect(p.getJob('b')).resolves.toBeNull();
    // Within one bulk, too, and nothing of the bulk is sent.
    await expect(
      p.enqueueBulk([
        { name: 'x', data: null, opts: { jobId: 'p', dependsOn: ['q'] } },
        { name: 'x', data: null, opts: { jobId: 'q', dependsOn: ['p'] } },
      ]),
    ).rejects.toThrow(/dependency cycle p → q → p/);
    await expect(p.getJob('p')).resolves.toBeNull();
  });

  it('fails a cycle that two racing enqueues closed, naming it', async () => {
    const server = await startServer();
    const p = await producer(server);
    // Written straight to the waiting bucket, as two enqueues that both passed the check would.
    const nc = await connectTo(server);
    const waiting = await new Kvm(nc).open('naq_waiting');
    for (const [id, dep] of [
      ['r1', 'r2'],
      ['r2', 'r1'],
    ] as const) {
      await waiting.put(id, JSON.stringify({ v: 1, id, name: 'x', queue: 'default', data: null, attempts: 1, ts: Date.now(), dependsOn: [dep] }));
    }
    const status = async (id: string) => (await p.getJob(id).catch(() => null))?.status;
    await until(async () => (await status('r1')) === 'failed' && (await status('r2')) === 'failed', 10_000);
    const messages = [(await p.getJob('r1'))!.error!.message, (await p.getJob('r2'))!.error!.message];
    expect(messages.some((m) => /dependency cycle (r1 → r2 → r1|r2 → r1 → r2)/.test(m))).toBe(true);
  });
});

describe('data JSON would change', () => {
  it('is refused at enqueue, naming its path', async () => {
    const server = await startServer();
    const p = await producer(server);
    await expect(p.enqueue('x', { tags: new Map([['a', 1]]) })).rejects.toThrow('job data cannot be sent as JSON: data.tags is a Map');
    await expect(p.enqueue('x', { n: NaN })).rejects.toThrow('data.n is NaN');
    await expect(p.enqueue('x', [1, undefined])).rejects.toThrow('data[1] is undefined in an array');
    await expect(p.enqueue('x', { big: 1n })).rejects.toThrow('data.big is a BigInt');
    await expect(p.schedule('s', { every: 1000 }, 'x', { s: new Set([1]) })).rejects.toThrow('data.s is a Set');
    // The documented conversions: a Date travels as its ISO string, undefined properties are left out.
    const id = await p.enqueue('x', { at: new Date(0), gone: undefined });
    expect(await p.getJob(id)).toMatchObject({ status: 'pending' });
  });
});
