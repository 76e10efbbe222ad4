/** The rate limit's rule, on data: strict over any window, and what a waiting worker is told. */
import { describe, expect, it } from 'vitest';
import { decodeWindow, EMPTY_WINDOW, moveGrant, take, type RateWindow } from '../../src/model/rate-window.js';
import { settingsOf } from '../../src/model/queue-settings.js';

const limit = { max: 5, durationMs: 1000 };

describe('the rate window', () => {
  it('grants up to max at once, then nothing until the oldest grant leaves the window', () => {
    const a = take(EMPTY_WINDOW, limit, 10_000, 3);
    expect(a).toMatchObject({ granted: 3 });
    const b = take(a.next!, limit, 10_400, 5);
    expect(b).toMatchObject({ granted: 2 });
    const c = take(b.next!, limit, 10_500, 1);
    // Full: the grant of 10,000 leaves the window at 11,000 and its slack (20 ms: 2 %).
    expect(c).toEqual({ granted: 0, next: null, waitMs: 521 });
    expect(take(b.next!, limit, 11_010, 4)).toMatchObject({ granted: 0 });
    const d = take(b.next!, limit, 11_021, 4);
    expect(d).toMatchObject({ granted: 3 });
    // What left the window is dropped from the state.
    expect(d.next!.w).toEqual([[10_400, 2], [11_021, 3]]);
  });

  it('never lets any window of durationMs hold more than max starts (random demand, checked at every start)', () => {
    let state: RateWindow = EMPTY_WINDOW;
    const starts: number[] = [];
    let now = 0;
    let seed = 7;
    const rnd = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    for (let i = 0; i < 5000; i++) {
      now += Math.floor(rnd() * 120);
      const t = take(state, limit, now, 1 + Math.floor(rnd() * 4));
      if (t.next) {
        state = t.next;
        for (let k = 0; k < t.granted; k++) starts.push(now);
      }
    }
    for (let i = 0; i < starts.length; i++) {
      const inWindow = starts.filter((s) => s > starts[i]! - limit.durationMs && s <= starts[i]!).length;
      expect(inWindow).toBeLessThanOrEqual(limit.max);
    }
    expect(starts.length).toBeGreaterThan(100);
  });

  it('moves a late grant to its real start, and adds one that is no longer there (the state given is left as it was)', () => {
    const state: RateWindow = { v: 1, w: [[1000, 2], [1010, 3]] };
    expect(moveGrant(state, [1010, 3], 1090)).toEqual({ v: 1, w: [[1000, 2], [1090, 3]] });
    expect(moveGrant(state, [900, 4], 1090)).toEqual({ v: 1, w: [[1000, 2], [1010, 3], [1090, 4]] });
    expect(state.w).toEqual([[1000, 2], [1010, 3]]);
  });

  it('reads a damaged state as empty, and keeps only well-formed grants', () => {
    expect(decodeWindow('not json')).toEqual(EMPTY_WINDOW);
    expect(decodeWindow('{"w":[[1,2],["x",1],[3,-1]]}').w).toEqual([[1, 2]]);
  });

  it('queue settings: a damaged limit or group limit reads as none, beside a good pause setting', () => {
    const entry = (v: unknown) => ({ operation: 'PUT', string: () => JSON.stringify(v) });
    expect(settingsOf(entry({ paused: true, limit: { max: 0, durationMs: 1000 } }))).toEqual({ paused: true, limit: null, holdUntil: 0, groups: null });
    expect(settingsOf(entry({ paused: false, limit: { max: 50, durationMs: 1000 }, holdUntil: 5 }))).toEqual({ paused: false, limit: { max: 50, durationMs: 1000 }, holdUntil: 5, groups: null });
    expect(settingsOf({ operation: 'DEL', string: () => '' })).toEqual({ paused: false, limit: null, holdUntil: 0, groups: null });
    expect(settingsOf(entry({ paused: false, groups: { concurrency: 2, rate: { max: 0, durationMs: 5 } } })).groups).toEqual({ concurrency: 2 });
    expect(settingsOf(entry({ paused: false, groups: { concurrency: 'x', rate: { max: 3, durationMs: 5 } } })).groups).toEqual({ rate: { max: 3, durationMs: 5 } });
    expect(settingsOf(entry({ paused: false, groups: { concurrency: 0 } })).groups).toBeNull();
  });
});
