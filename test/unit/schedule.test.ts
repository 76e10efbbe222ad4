import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { buildSchedule, nextRun, runJobId } from '../../src/model/schedule.js';

const T0 = Date.parse('2026-06-01T10:00:00.000Z');

describe('schedules', () => {
  it('every: runs sit on a grid anchored at creation', () => {
    const s = buildSchedule('s', { every: 1000 }, 'job', null, {}, T0);
    expect(s.nextRunAt).toBe(T0 + 1000);
    expect(nextRun(s, T0 + 1000)).toBe(T0 + 2000);
    // After 10.5 s of downtime: the next run is the next grid point after now, not a burst.
    expect(nextRun(s, T0 + 10_500)).toBe(T0 + 11_000);
  });

  it('every: startAt anchors the grid and is the first run', () => {
    const s = buildSchedule('s', { every: 60_000 }, 'job', null, { startAt: T0 + 5000 }, T0);
    expect(s.nextRunAt).toBe(T0 + 5000);
    expect(nextRun(s, T0 + 5000)).toBe(T0 + 65_000);
  });

  it('cron: honours the time zone', () => {
    // 09:00 in Paris is 07:00 UTC in June (CEST).
    const s = buildSchedule('s', { cron: '0 9 * * *', tz: 'Europe/Paris' }, 'job', null, {}, T0);
    expect(new Date(s.nextRunAt!).toISOString()).toBe('2026-06-02T07:00:00.000Z');
    const utc = buildSchedule('u', { cron: '0 9 * * *' , tz: 'UTC' }, 'job', null, {}, T0);
    expect(new Date(utc.nextRunAt!).toISOString()).toBe('2026-06-02T09:00:00.000Z');
  });

  it('stops at endAt and after repeat runs', () => {
    const s = buildSchedule('s', { every: 1000 }, 'job', null, { endAt: T0 + 2500 }, T0);
    expect(nextRun(s, T0 + 1000)).toBe(T0 + 2000);
    expect(nextRun(s, T0 + 2000)).toBeNull();
    const r = buildSchedule('r', { every: 1000 }, 'job', null, { repeat: 2 }, T0);
    expect(nextRun({ ...r, runs: 1 }, T0 + 1000)).toBe(T0 + 2000);
    expect(nextRun({ ...r, runs: 2 }, T0 + 2000)).toBeNull();
  });

  it('names the field of a bad schedule', () => {
    expect(() => buildSchedule('s', { cron: 'every day' }, 'job', null)).toThrow(/invalid cron "every day"/);
    expect(() => buildSchedule('s', { cron: '* * * * *', tz: 'Nowhere/Land' }, 'job', null)).toThrow(/invalid tz "Nowhere\/Land"/);
    expect(() => buildSchedule('s', { every: 1.5 }, 'job', null)).toThrow(/invalid every/);
    expect(() => buildSchedule('s', { every: 1000 }, 'job', null, { repeat: 0 })).toThrow(/invalid repeat/);
    expect(() => buildSchedule('s', { every: 1000 }, 'job', null, { startAt: T0 + 10, endAt: T0 })).toThrow(/endAt is before startAt/);
    expect(() => buildSchedule('bad id', { every: 1000 }, 'job', null)).toThrow(InvalidArgumentError);
  });

  it('maps each run to one job id', () => {
    const s = buildSchedule('nightly', { every: 1000 }, 'job', null, {}, T0);
    expect(runJobId(s, T0 + 1000)).toBe(`nightly-${T0 + 1000}`);
  });
});
