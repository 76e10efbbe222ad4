/** The job index's wire pieces (docs/wire-format.md, section 11): name tokens, batch bodies, cursors. */
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, encodeIndexBatch, filterKey, indexSubject, nameToken, parseIndexBatch } from '../../src/model/job-index.js';

describe('the job index', () => {
  it('a plain name is its own token; any other is = and base64url, and both come back', () => {
    expect(nameToken('resize_2-x')).toBe('resize_2-x');
    expect(nameToken('mail.send')).toBe('=bWFpbC5zZW5k');
    for (const name of ['mail.send', 'a b', 'é*>', 'x'.repeat(65)]) {
      const subject = indexSubject('naq', { queue: 'q', state: 'failed', name });
      expect(subject).not.toMatch(/[\s*>]/);
      expect(parseIndexBatch(subject, '[["a",1]]')).toEqual([{ id: 'a', queue: 'q', state: 'failed', name, enqueuedAt: 1 }]);
    }
    expect(indexSubject('naq', {})).toBe('naq.index.*.*.*');
  });

  it('a batch body is a JSON array of [id, enqueuedAt], in order; anything else reads as no entries', () => {
    const body = encodeIndexBatch(['a', 'b"c'], [1, 2]);
    const text = (bytes: Uint8Array) => new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    expect(JSON.parse(text(body))).toEqual([['a', 1], ['b"c', 2]]);
    // Ids are job ids (ASCII); times are enqueue times, fractional only if a client wrote one so.
    const ids = ['x'.repeat(200), 'é', 'line\nbreak'];
    const times = [1_796_255_489_142, 0, 1.5];
    expect(JSON.parse(text(encodeIndexBatch(ids, times)))).toEqual(ids.map((id, i) => [id, times[i]]));
    expect(parseIndexBatch('naq.index.q.completed.work', body).map((e) => e.id)).toEqual(['a', 'b"c']);
    expect(text(encodeIndexBatch([], []))).toBe('[]');
    expect(parseIndexBatch('naq.index.q.completed.work', 'not json')).toEqual([]);
    expect(parseIndexBatch('naq.index.q.running.work', '[["a",1]]')).toEqual([]);
    expect(parseIndexBatch('naq.index.q.completed.work', '[["a","1"],[2,3],["b",4]]').map((e) => e.id)).toEqual(['b']);
  });

  it('a cursor belongs to the listing it came from', () => {
    const key = filterKey({ queue: 'q', state: 'completed' });
    const cursor = encodeCursor({ filter: key, positions: { index: [10, 3], jobs: null } });
    expect(decodeCursor(cursor, key)).toEqual({ index: [10, 3], jobs: null });
    expect(() => decodeCursor(cursor, filterKey({ queue: 'q', state: 'failed' }))).toThrow('another queue, state or name');
    expect(() => decodeCursor('%%%', key)).toThrow('invalid cursor');
  });
});
