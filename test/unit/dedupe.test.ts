import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { checkDedupe, decodeDedupeRecord, dedupeEntryKey, dedupeKeyProblem, isOpenWindow, needsRefresh, OpenWindows, type DedupeRecord } from '../../src/model/dedupe.js';
import { buildOneShot, buildSchedule, isClaimed } from '../../src/model/schedule.js';

const DAY = 86_400_000;
const refused = (fn: () => unknown, message: RegExp) => {
  expect(fn).toThrow(InvalidArgumentError);
  expect(fn).toThrow(message);
};

describe('the dedupe option', () => {
  it('is checked field by field, each problem naming its field', () => {
    expect(checkDedupe({ key: 'user.42', ttlMs: 1000 }, DAY)).toEqual({ key: 'user.42', ttlMs: 1000, mode: 'throttle' });
    expect(checkDedupe({ key: 'a/b=c_d-e', ttlMs: DAY, mode: 'debounce' }, DAY)).toEqual({ key: 'a/b=c_d-e', ttlMs: DAY, mode: 'debounce' });
    refused(() => checkDedupe('k', DAY), /^invalid dedupe: expected \{ key, ttlMs, mode\? \}/);
    refused(() => checkDedupe(null, DAY), /^invalid dedupe:/);
    refused(() => checkDedupe({ ttlMs: 1000 }, DAY), /^invalid dedupe\.key undefined: expected a non-empty string/);
    refused(() => checkDedupe({ key: 'a:b', ttlMs: 1000 }, DAY), /^invalid dedupe\.key "a:b": use letters, digits/);
    refused(() => checkDedupe({ key: 'a', ttlMs: 1.5 }, DAY), /^invalid dedupe\.ttlMs: expected an integer number of milliseconds, got 1\.5/);
    refused(() => checkDedupe({ key: 'a', ttlMs: '1000' }, DAY), /^invalid dedupe\.ttlMs: expected an integer/);
    refused(() => checkDedupe({ key: 'a', ttlMs: DAY + 1 }, DAY), /^invalid dedupe\.ttlMs: 86400001 ms is over jobs\.dedupeMaxTtlMs \(86400000 ms\)/);
    refused(() => checkDedupe({ key: 'a', ttlMs: 1000, mode: 'Throttle' }, DAY), /^invalid dedupe\.mode "Throttle": expected "throttle" or "debounce"/);
  });

  it('is not a schedule option', () => {
    refused(() => buildSchedule('s', { every: 1000 }, 'x', null, { dedupe: { key: 'a', ttlMs: 1000 } } as never), /a schedule takes no dedupe option/);
  });

  it('refuses debounce with dependencies or a caller\'s delay; throttle goes with both', () => {
    refused(() => checkDedupe({ key: 'a', ttlMs: 1000, mode: 'debounce' }, DAY, { dependsOn: true }), /dedupe\.mode "debounce" cannot be combined with dependsOn/);
    refused(() => checkDedupe({ key: 'a', ttlMs: 1000, mode: 'debounce' }, DAY, { delayed: true }), /cannot be combined with enqueueAt \/ enqueueIn/);
    expect(checkDedupe({ key: 'a', ttlMs: 1000 }, DAY, { dependsOn: true, delayed: true }).mode).toBe('throttle');
  });

  it('keys: the KV alphabet, no empty part, at most 256 characters; each mode has its own entries', () => {
    for (const key of ['a', 'a.b', 'A-Z_0/9=', 'x'.repeat(256)]) expect(dedupeKeyProblem(key), key).toBeNull();
    for (const key of ['', '.a', 'a.', 'a..b', 'a b', 'a*', 'a>', 'é', 'x'.repeat(257)]) expect(dedupeKeyProblem(key), key).not.toBeNull();
    expect(dedupeEntryKey({ key: 'user.42', mode: 'throttle' })).toBe('throttle.user.42');
    expect(dedupeEntryKey({ key: 'user.42', mode: 'debounce' })).toBe('debounce.user.42');
  });
});

describe('dedupe records', () => {
  const record: DedupeRecord = { v: 1, jobId: 'j', queue: 'q', until: 2000, ts: 1000 };

  it('are read back, and one that breaks the format holds no window', () => {
    expect(decodeDedupeRecord(JSON.stringify(record))).toEqual(record);
    for (const bad of ['nope', '[]', 'null', JSON.stringify({ ...record, v: 2 }), JSON.stringify({ ...record, jobId: 1 }), JSON.stringify({ ...record, until: '2000' })]) {
      expect(decodeDedupeRecord(bad), bad).toBeNull();
    }
  });

  it('a throttle window is open until `until`, not at it', () => {
    expect(isOpenWindow(record, 1999)).toBe(true);
    expect(isOpenWindow(record, 2000)).toBe(false);
    expect(isOpenWindow(null, 0)).toBe(false);
    expect(isOpenWindow({ ...record, until: undefined }, 0)).toBe(false);
  });

  it('a debounce entry is written again before a new due time could outlive it in the bucket', () => {
    // Written at 1000, kept for DAY: due times up to half a day later need no write.
    expect(needsRefresh(record, 1000 + DAY / 2, DAY)).toBe(false);
    expect(needsRefresh(record, 1001 + DAY / 2, DAY)).toBe(true);
  });

  it('a debounced job claimed by the leader (fired, not yet deleted) is told apart', () => {
    const job = { ...buildOneShot('j', 5000, 'x', null, {}, 0), debounceKey: 'k' };
    expect(isClaimed(job)).toBe(false);
    expect(isClaimed({ ...job, status: 'completed', nextRunAt: null, lastRunAt: 5000 })).toBe(true);
    const { debounceKey: _k, ...plain } = job;
    expect(isClaimed({ ...plain, status: 'completed', nextRunAt: null, lastRunAt: 5000 })).toBe(false);
  });
});

describe('OpenWindows', () => {
  it('answers for a window only while it is open', () => {
    const windows = new OpenWindows();
    windows.remember('throttle.a', { v: 1, jobId: 'j', queue: 'q', until: 2000, ts: 1000 }, 1000);
    expect(windows.get('throttle.a', 1999)?.jobId).toBe('j');
    expect(windows.get('throttle.a', 2000)).toBeUndefined();
    expect(windows.size).toBe(0);
    // An ended window, or a record without one, is not remembered.
    windows.remember('throttle.b', { v: 1, jobId: 'j', queue: 'q', until: 2000, ts: 1000 }, 2000);
    windows.remember('debounce.c', { v: 1, jobId: 'j', queue: 'q', ts: 1000 }, 1000);
    expect(windows.size).toBe(0);
  });

  it('keeps at most 10,000: the ended ones go first, then the oldest', () => {
    const windows = new OpenWindows();
    for (let i = 0; i < 10_000; i++) windows.remember(`k${i}`, { v: 1, jobId: `j${i}`, queue: 'q', until: i < 10 ? 1500 : 9000, ts: 0 }, 1000);
    expect(windows.size).toBe(10_000);
    windows.remember('new', { v: 1, jobId: 'n', queue: 'q', until: 9000, ts: 0 }, 2000);
    // The ten that had ended went.
    expect(windows.size).toBe(9991);
    for (let i = 0; i < 9; i++) windows.remember(`more${i}`, { v: 1, jobId: 'm', queue: 'q', until: 9000, ts: 0 }, 2000);
    expect(windows.size).toBe(10_000);
    windows.remember('last', { v: 1, jobId: 'l', queue: 'q', until: 9000, ts: 0 }, 2000);
    expect(windows.size).toBe(10_000);
    expect(windows.get('k10', 2000)).toBeUndefined();
    expect(windows.get('k11', 2000)?.jobId).toBe('j11');
    expect(windows.get('last', 2000)?.jobId).toBe('l');
  });
});
