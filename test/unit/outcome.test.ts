/**
 * The boundary for what leaves a handler, without a server: what JSON can carry, error
 * descriptions that never throw, records and dead letters that always fit, long timers.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { durationProblem, MAX_DURATION_MS, MAX_TIMER_MS, setLongTimeout, validateDuration } from '../../src/core/duration.js';
import { errorInfo, MAX_ERROR_MESSAGE_CHARS } from '../../src/core/errors.js';
import type { JobMessage, JobRecord } from '../../src/model/job.js';
import { buildJob, decodeJob, recordFromMessage, retryDelay } from '../../src/model/job.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { resultProblem, snapshotProgress } from '../../src/actors/worker/outcome.js';
import { completedFirstAttemptBytes, encodeDeadLetter, encodeRecord } from '../../src/model/record-codec.js';
import { jsonProblem } from '../../src/model/wire-value.js';

describe('jsonProblem: what JSON cannot carry faithfully, with its path', () => {
  it('accepts plain data and the documented conversions', () => {
    expect(jsonProblem({ a: [1, 'x', true, null, { b: -0 }], c: undefined }, 'data')).toBeNull();
    expect(jsonProblem(new Date(0), 'data')).toBeNull();
    expect(jsonProblem(Buffer.from('hi'), 'data')).toBeNull();
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    expect(jsonProblem({ p: new Point(1, 2) }, 'data')).toBeNull();
    const shared = { s: 1 };
    expect(jsonProblem({ a: shared, b: shared }, 'data')).toBeNull();
  });

  it.each([
    [{ m: new Map() }, 'data.m is a Map'],
    [{ s: new Set() }, 'data.s is a Set'],
    [[1, 2n], 'data[1] is a BigInt'],
    [{ f() {} }, 'data.f is a function'],
    [{ y: Symbol('s') }, 'data.y is a symbol'],
    [{ n: Infinity }, 'data.n is Infinity'],
    [{ 'odd key': NaN }, 'data["odd key"] is NaN'],
    [[undefined], 'data[0] is undefined in an array'],
    [{ r: /x/ }, 'data.r is a RegExp'],
    [{ u: new Uint8Array(2) }, 'data.u is a typed array'],
    [{ e: new Error('x') }, 'data.e is an Error'],
    [{ p: Promise.resolve() }, 'data.p is a Promise'],
  ])('refuses %o', (value, expected) => {
    expect(jsonProblem(value, 'data')).toContain(expected);
  });

  it('names a cycle, a toJSON that throws, a getter that throws and a hostile Proxy', () => {
    const loop: Record<string, unknown> = {};
    loop.inner = { back: loop };
    expect(jsonProblem(loop, 'result')).toBe('result.inner.back is a circular reference');
    expect(
      jsonProblem(
        {
          toJSON() {
            throw new Error('nope');
          },
        },
        'x',
      ),
    ).toBe('x.toJSON() threw: nope');
    expect(
      jsonProblem(
        {
          get g() {
            throw new Error('getter');
          },
        },
        'x',
      ),
    ).toBe('reading x.g threw: getter');
    const proxy = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error('trap');
        },
      },
    );
    expect(jsonProblem(proxy, 'x')).toMatch(/could not be read: trap|threw: trap/);
  });

  it('refuses nesting deep enough to overflow JSON.stringify, without overflowing itself', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(jsonProblem(deep, 'data')).toMatch(/nested more than 512 levels deep/);
  });
});

describe('errorInfo: any thrown value, described without throwing', () => {
  it('describes values that JSON.stringify would throw on', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(errorInfo(loop).message).toBe('{"a":1,"self":"[circular]"}');
    expect(errorInfo({ n: 5n }).message).toBe('{"n":"5n"}');
    expect(errorInfo(7n).message).toBe('7n');
    expect(errorInfo(undefined).message).toBe('undefined');
    expect(errorInfo(Symbol('s')).message).toBe('Symbol(s)');
    expect(errorInfo(() => 1).message).toBe('[function anonymous]');
  });

  it('keeps codes and causes, cuts long messages, and survives a hostile error', () => {
    const err = Object.assign(new Error('top', { cause: new Error('below', { cause: 'root' }) }), { code: 'E_TOP' });
    expect(errorInfo(err)).toEqual({ name: 'Error', code: 'E_TOP', message: 'top', cause: { name: 'Error', message: 'below', cause: { name: 'Error', message: 'root' } } });
    const long = errorInfo(new Error('x'.repeat(100_000)));
    expect(long.message.length).toBeLessThan(MAX_ERROR_MESSAGE_CHARS + 100);
    const hostile = new Proxy(new Error('x'), {
      get() {
        throw new Error('trap');
      },
    });
    expect(() => errorInfo(hostile)).not.toThrow();
    let chain: Error = new Error('0');
    for (let i = 1; i < 50; i++) chain = new Error(String(i), { cause: chain });
    let depth = 0;
    for (let c = errorInfo(chain).cause; c; c = c.cause) depth++;
    expect(depth).toBe(3);
  });
});

describe('results and progress', () => {
  it('types what a handler may return', () => {
    expect(resultProblem(undefined)).toBeNull();
    expect(resultProblem({ ok: [1, 2] })).toBeNull();
    expect(resultProblem(1n)).toMatchObject({ code: 'RESULT_NOT_SERIALIZABLE' });
    expect(resultProblem(NaN)).toMatchObject({ code: 'RESULT_NOT_SERIALIZABLE', message: expect.stringContaining('result is NaN') });
  });

  it('snapshots progress, so a later change cannot break the write', () => {
    const p: Record<string, unknown> = { done: 1 };
    const snap = snapshotProgress(p);
    p.self = p;
    expect(snap).toEqual({ done: 1 });
    expect(() => snapshotProgress(p)).toThrow(expect.objectContaining({ code: 'PROGRESS_NOT_SERIALIZABLE' }));
    expect(() => snapshotProgress('x'.repeat(70_000))).toThrow(expect.objectContaining({ code: 'PROGRESS_TOO_LARGE' }));
    expect(snapshotProgress(undefined)).toBeNull();
    expect(() => snapshotProgress(NaN)).toThrow(/NaN/);
  });
});

describe('records and dead letters always fit one message', () => {
  const base: JobRecord = { v: 1, id: 'j', name: 'n', queue: 'q', status: 'failed', maxAttempts: 200, attempts: [], enqueuedAt: 1 };
  const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes)) as JobRecord;

  it('leaves a record that fits as it is', () => {
    expect(decode(encodeRecord({ ...base, result: { a: 1 } }, 1000))).toEqual({ ...base, result: { a: 1 } });
  });

  it('cuts what matters least first, and says what it cut', () => {
    const bigError = { name: 'Error', message: 'e'.repeat(4000), cause: { name: 'Error', message: 'c'.repeat(4000) } };
    const attempts = Array.from({ length: 200 }, (_, i) => ({ n: i + 1, startedAt: i, finishedAt: i, error: bigError }));
    const record: JobRecord = { ...base, attempts, error: bigError, progress: 'p'.repeat(50_000) };
    const limit = 32 * 1024;
    const bytes = encodeRecord(record, limit);
    expect(bytes.length).toBeLessThanOrEqual(limit);
    const out = decode(bytes);
    expect(out.trimmed).toEqual(['progress', 'error details', 'attempts']);
    expect(out.attempts.map((a) => a.n)).toEqual([1, 192, 193, 194, 195, 196, 197, 198, 199, 200]);
    expect(out.error!.cause).toBeUndefined();
    expect(out.status).toBe('failed');
  });

  it('keeps the bones of a record whose very name is huge', () => {
    const bytes = encodeRecord({ ...base, name: 'n'.repeat(100_000) }, 4096);
    expect(bytes.length).toBeLessThanOrEqual(4096);
    expect(decode(bytes)).toMatchObject({ id: 'j', status: 'failed', trimmed: expect.arrayContaining(['everything else']) });
  });

  it('keeps a dead letter whose job is too large with its data marked as cut', () => {
    const job = { v: 1 as const, id: 'big', name: 'n', queue: 'q', data: { blob: 'b'.repeat(100_000) }, attempts: 1, ts: 1 };
    const dead = { v: 1 as const, reason: 'failed', error: { name: 'Error', message: 'failed' }, queue: 'q', subject: 'naq.jobs.q.big', jobId: 'big', job, ts: 2 };
    const bytes = encodeDeadLetter(dead, 50_000);
    expect(bytes.length).toBeLessThanOrEqual(50_000);
    const out = JSON.parse(new TextDecoder().decode(bytes));
    expect(out.job).toMatchObject({ id: 'big', name: 'n', data: null });
    expect(out.dataTruncated.bytes).toBe(JSON.stringify(job.data).length);
    expect(out.dataTruncated.preview.startsWith('{"blob":"bbb')).toBe(true);
    expect(JSON.parse(new TextDecoder().decode(encodeDeadLetter(dead, 200_000)))).toEqual(dead);
  });
});

describe('the completed record of a first attempt, written as bytes', () => {
  const job: JobMessage = { v: 1, id: 'j1', name: 'rés"ize\n', queue: 'q', data: null, attempts: 3, backoff: { type: 'fixed', delay: 10 }, ts: 1000 };

  /** What the record object path writes for the same outcome. */
  function viaObject(j: JobMessage, result: unknown, progress: unknown): unknown {
    const r = recordFromMessage(j, 'completed');
    r.startedAt = 1010;
    r.finishedAt = 1020;
    r.result = result === undefined ? null : result;
    r.attempts.push({ n: 1, startedAt: 1010, finishedAt: 1020, workerId: 'w-"1' });
    if (progress !== undefined) r.progress = progress;
    if (j.resultTtlMs) r.expiresAt = 1020 + j.resultTtlMs;
    return JSON.parse(JSON.stringify(r));
  }

  it.each([
    ['a plain result', job, { ok: [1, 'two'] }, undefined],
    ['no result', job, undefined, undefined],
    ['a string result, progress, a TTL and dependencies', { ...job, resultTtlMs: 500, dependsOn: ['a', 'b'] }, 'done', { pct: 50 }],
    ['a result whose toJSON gives undefined', job, { toJSON: () => undefined }, null],
    ['a Date result', job, new Date(0), undefined],
    ['escapes, non-ASCII text, a lone surrogate and every optional field', { ...job, id: 'a\\b', queue: 'q\u0001é', priority: 2, group: 'tenant "😀"', parent: 'p1', resultTtlMs: 60_000 }, 'x\ud800y', 7],
    ['a result larger than the writer\'s scratch (64 KiB), and numbers of every size', { ...job, attempts: 100_000_000, ts: 1_796_248_152_230 }, { blob: 'é'.repeat(70_000), n: [0, 9, 10, 99, 100, 99_999_999, 100_000_000, 1e16 + 2, 2 ** 53 - 1, 1.5, -3] }, undefined],
  ])('equals the record object path: %s', (_name, j, result, progress) => {
    const bytes = completedFirstAttemptBytes(j, 1, 'w-"1', 1010, 1020, result, progress);
    // Well-formed UTF-8 (a fatal decoder throws otherwise), and the same record.
    expect(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))).toEqual(viaObject(j, result, progress));
  });

  it('times that are not whole milliseconds, and a small record after a large one, are written as they are', () => {
    completedFirstAttemptBytes(job, 1, 'w', 1, 2, 'z'.repeat(200_000), undefined);
    const bytes = completedFirstAttemptBytes({ ...job, ts: 999.25 }, 2, 'w', 1010.5, 1_796_248_152_231, 'ok', undefined);
    expect(JSON.parse(new TextDecoder().decode(bytes))).toMatchObject({
      enqueuedAt: 999.25,
      startedAt: 1010.5,
      finishedAt: 1_796_248_152_231,
      attempts: [{ n: 2, startedAt: 1010.5, finishedAt: 1_796_248_152_231, workerId: 'w' }],
      result: 'ok',
    });
  });

  it('writes the logs a handler kept, and how many it dropped', () => {
    const lines = [{ ts: 1, level: 'info' as const, msg: 'héllo "there"', attempt: 1 }];
    const bytes = completedFirstAttemptBytes(job, 1, 'w', 1, 2, null, undefined, { lines, dropped: 3 });
    expect(JSON.parse(new TextDecoder().decode(bytes))).toMatchObject({ logs: lines, logsDropped: 3 });
  });

  it('throws what encoding the result throws', () => {
    const result = {
      get x() {
        throw new Error('getter');
      },
    };
    expect(() => completedFirstAttemptBytes(job, 1, 'w', 1, 2, result, undefined)).toThrow('getter');
  });
});

describe('durations', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('names what is wrong with a duration', () => {
    expect(durationProblem(1)).toBeNull();
    expect(durationProblem(0, 0)).toBeNull();
    expect(durationProblem(0)).toBe('expected at least 1 ms, got 0');
    expect(durationProblem(1.5)).toBe('expected an integer number of milliseconds, got 1.5');
    expect(durationProblem('5')).toBe('expected an integer number of milliseconds, got "5"');
    expect(durationProblem(MAX_DURATION_MS + 1)).toMatch(/expected at most 315360000000 ms \(10 years\)/);
    expect(() => validateDuration('timeoutMs', -5)).toThrow('invalid timeoutMs: expected at least 1 ms, got -5');
  });

  it('chains timers past Node’s 2^31−1 ms limit instead of firing at once', () => {
    vi.useFakeTimers();
    const fired: number[] = [];
    const start = Date.now();
    setLongTimeout(() => fired.push(Date.now() - start), MAX_TIMER_MS + 5000);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(5000);
    expect(fired).toEqual([MAX_TIMER_MS + 5000]);
    const cleared = setLongTimeout(() => fired.push(-1), 3 * MAX_TIMER_MS);
    vi.advanceTimersByTime(MAX_TIMER_MS + 10);
    cleared.clear();
    vi.advanceTimersByTime(3 * MAX_TIMER_MS);
    expect(fired).toHaveLength(1);
  });

  it('caps an exponential backoff that would grow past what a server can hold', () => {
    expect(retryDelay({ type: 'exponential', delay: 1000 }, 200)).toBe(MAX_DURATION_MS);
  });
});

describe('buildJob: the message an enqueue sends', () => {
  const defaults = { attempts: 1, backoff: { type: 'exponential' as const, delay: 1000 }, maxPayloadBytes: 1_048_576 };
  const sent = (opts: Parameters<typeof buildJob>[2], d = defaults) => {
    const { message, bytes } = buildJob('work', { n: 1 }, opts, 'j1', d);
    const text = new TextDecoder().decode(bytes);
    expect(decodeJob(bytes)).toEqual(message);
    return { message, text };
  };

  it('leaves the backoff out of a job of one attempt (it never retries), and keeps it for a job that may retry', () => {
    expect(sent({}).text).not.toContain('backoff');
    expect(sent({ backoff: { type: 'fixed', delay: 50 } }).text).not.toContain('backoff');
    expect(sent({ attempts: 3 }).message.backoff).toEqual({ type: 'exponential', delay: 1000 });
    expect(sent({ attempts: 2, backoff: { type: 'fixed', delay: 50 } }).message.backoff).toEqual({ type: 'fixed', delay: 50 });
    expect(sent({}, { ...defaults, attempts: 4 }).message).toMatchObject({ attempts: 4, backoff: { type: 'exponential', delay: 1000 } });
  });

  it('still refuses a bad backoff on a job of one attempt', () => {
    expect(() => buildJob('work', null, { backoff: { type: 'fixed', delay: -1 } }, 'j1', defaults)).toThrow(InvalidArgumentError);
  });

  it('a message without a backoff retries at once', () => {
    expect(retryDelay(undefined, 2)).toBe(0);
  });
});
