/** What a worker remembers between deliveries (job-path.ts relies on it to ack, not run, a copy of a finished job). */
import { describe, expect, it } from 'vitest';
import { DeliveryMemory, RECENT_JOBS } from '../../src/actors/worker/delivery-memory.js';

/** Ids shaped like naq's (nuid: 22 characters, a shared prefix and a counter). */
const id = (i: number) => `K7QXWZ3M9RTBA2${String(i).padStart(8, '0')}`;

describe('DeliveryMemory', () => {
  it('a job finished here is known for its enqueue time only: a later enqueue of the same id is not', () => {
    const m = new DeliveryMemory();
    expect(m.finished(id(1), 100)).toBe(false);
    m.remember(id(1), 100);
    expect(m.finished(id(1), 100)).toBe(true);
    expect(m.finished(id(1), 101)).toBe(false);
    expect(m.finished(id(2), 100)).toBe(false);
  });

  it(`remembers at least the last ${RECENT_JOBS} jobs across a generation swap, and forgets what is older than twice that`, () => {
    const m = new DeliveryMemory();
    const n = RECENT_JOBS * 3 + 17;
    for (let i = 0; i < n; i++) m.remember(id(i), i);
    for (let i = n - RECENT_JOBS; i < n; i++) expect(m.finished(id(i), i)).toBe(true);
    for (let i = 0; i < n - 2 * RECENT_JOBS; i++) expect(m.finished(id(i), i)).toBe(false);
  });

  it(`remembers every job while fewer than ${RECENT_JOBS} finished, and the last ${RECENT_JOBS} after that, through the first swaps`, () => {
    const m = new DeliveryMemory();
    const n = RECENT_JOBS * 2 + 300;
    for (let i = 0; i < n; i++) {
      m.remember(id(i), i);
      // Checked every 397 jobs, and on both sides of the first two generation swaps (the first comes early).
      if (i % 397 !== 0 && i !== 255 && i !== 256 && i !== RECENT_JOBS + 255 && i !== RECENT_JOBS + 256) continue;
      const kept = Math.min(i + 1, RECENT_JOBS);
      for (let k = i + 1 - kept; k <= i; k++) expect(m.finished(id(k), k)).toBe(true);
    }
  });

  it('answers exactly however the ids hash: of 200,000 ids never finished here none is taken for one that was', () => {
    const m = new DeliveryMemory();
    for (let i = 0; i < RECENT_JOBS; i++) m.remember(id(i), 7);
    let wrong = 0;
    // Many of these share a filter bit with a remembered id: the maps decide those.
    for (let i = RECENT_JOBS; i < RECENT_JOBS + 200_000; i++) if (m.finished(id(i), 7)) wrong++;
    expect(wrong).toBe(0);
    for (let i = 0; i < RECENT_JOBS; i++) expect(m.finished(id(i), 7)).toBe(true);
  });

  it('a cancel notice covers the enqueues up to it, for ten minutes', () => {
    const m = new DeliveryMemory();
    m.cancel('a', 1000);
    expect(m.cancelledBefore('a', 999)).toBe(true);
    expect(m.cancelledBefore('a', 1001)).toBe(false);
    m.cancel('b', 1000 + 10 * 60_000 + 1);
    expect(m.cancelledBefore('a', 999)).toBe(false);
  });
});
