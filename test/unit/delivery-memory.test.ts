/** What a worker remembers between deliveries (job-path.ts relies on it to ack, not run, a copy of a finished job). */
import { describe, expect, it } from 'vitest';
import { BUCKET_MASK, DeliveryMemory, hashOf, RECENT_JOBS } from '../../src/actors/worker/delivery-memory.js';

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

  it(`remembers exactly the last ${RECENT_JOBS} jobs, however many came before them`, () => {
    const m = new DeliveryMemory();
    const n = RECENT_JOBS * 3 + 17;
    for (let i = 0; i < n; i++) m.remember(id(i), i);
    for (let i = n - RECENT_JOBS; i < n; i++) expect(m.finished(id(i), i)).toBe(true);
    for (let i = 0; i < n - RECENT_JOBS; i++) expect(m.finished(id(i), i)).toBe(false);
  });

  it(`remembers every job while fewer than ${RECENT_JOBS} finished, and the last ${RECENT_JOBS} after that, through the ring's first two turns`, () => {
    const m = new DeliveryMemory();
    const n = RECENT_JOBS * 2 + 300;
    const wrong: string[] = [];
    for (let i = 0; i < n; i++) {
      m.remember(id(i), i);
      // Checked every 397 jobs, and on both sides of where the ring first overwrites a job.
      if (i % 397 !== 0 && i !== RECENT_JOBS - 1 && i !== RECENT_JOBS && i !== 2 * RECENT_JOBS) continue;
      const kept = Math.min(i + 1, RECENT_JOBS);
      for (let k = i + 1 - kept; k <= i; k++) if (!m.finished(id(k), k)) wrong.push(`after job ${i}: job ${k} forgotten`);
      if (i >= RECENT_JOBS && m.finished(id(i - RECENT_JOBS), i - RECENT_JOBS)) wrong.push(`after job ${i}: job ${i - RECENT_JOBS} still known`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  it('a job enqueued again under its id is known for both enqueues it finished', () => {
    const m = new DeliveryMemory();
    m.remember(id(1), 100);
    m.remember(id(1), 200);
    expect(m.finished(id(1), 100)).toBe(true);
    expect(m.finished(id(1), 200)).toBe(true);
    expect(m.finished(id(1), 150)).toBe(false);
  });

  it('ids of any length or alphabet are told apart exactly, including ones too long for the byte slab', () => {
    const m = new DeliveryMemory();
    const uuid = '3f2b8c1e-9d4a-4f6b-a2c3-1e5d7f9b0a24';
    const long = `order-${'x'.repeat(60)}-1`;
    const wide = 'job-\u0101-1';
    for (const [i, key] of [uuid, long, wide, ''].entries()) m.remember(key, i);
    expect([m.finished(uuid, 0), m.finished(long, 1), m.finished(wide, 2), m.finished('', 3)]).toEqual([true, true, true, true]);
    // Same length, one character apart (the slab's bytes and the kept strings are compared whole).
    expect(m.finished(uuid.replace(/4$/, '5'), 0)).toBe(false);
    expect(m.finished(long.replace(/1$/, '2'), 1)).toBe(false);
    expect(m.finished('job-\u0102-1', 2)).toBe(false);
    // A code unit above 255 is not confused with its low byte.
    expect(m.finished('job-\u0001-1', 2)).toBe(false);
  });

  it('answers exactly however the ids hash: of 200,000 ids never finished here none is taken for one that was', () => {
    const m = new DeliveryMemory();
    // Three turns of the ring: most buckets then hold links to slots since overwritten.
    for (let i = 0; i < 3 * RECENT_JOBS; i++) m.remember(id(i), 7);
    let wrong = 0;
    // Many of these share a hash bucket with a remembered id: the whole id decides those.
    for (let i = 3 * RECENT_JOBS; i < 3 * RECENT_JOBS + 200_000; i++) if (m.finished(id(i), 7)) wrong++;
    expect(wrong).toBe(0);
    for (let i = 2 * RECENT_JOBS; i < 3 * RECENT_JOBS; i++) expect(m.finished(id(i), 7)).toBe(true);
  });

  it('a slot taken over by a job of the same bucket ends the older chain instead of looping back into it', () => {
    // Five ids of one hash bucket, found by search.
    const target = hashOf(id(0)) & BUCKET_MASK;
    const same: string[] = [];
    for (let i = 1; same.length < 5; i++) if ((hashOf(id(i)) & BUCKET_MASK) === target) same.push(id(i));
    const [a, b, c, d, e] = same as [string, string, string, string, string];
    const m = new DeliveryMemory();
    m.remember(a, 1); // the ring's first slot
    m.remember(b, 1); // its second, linked to A
    // Fill the rest of the ring with ids of other buckets, then C takes A's slot and links to B.
    let filler = 0;
    for (let slot = 2; slot < RECENT_JOBS; slot++) {
      while (same.includes(id(filler)) || (hashOf(id(filler)) & BUCKET_MASK) === target) filler++;
      m.remember(id(filler++), 1);
    }
    m.remember(c, 1);
    // B's link now points at C's slot: followed, the walk would go C, B, C, … for ever.
    expect([m.finished(c, 1), m.finished(b, 1), m.finished(a, 1), m.finished(d, 1)]).toEqual([true, true, false, false]);
    m.remember(e, 1); // B's slot: B is forgotten, E links to C
    expect([m.finished(e, 1), m.finished(c, 1), m.finished(b, 1), m.finished(d, 1)]).toEqual([true, true, false, false]);
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
