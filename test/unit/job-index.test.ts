/** The job index's wire pieces (docs/wire-format.md, section 11): name tokens, batch bodies, cursors. */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { AsyncPublisher } from '../../src/actors/nats/publisher.js';
import { JobStorage } from '../../src/actors/nats/storage.js';
import { resolveConfig } from '../../src/config/load.js';
import { decodeCursor, encodeCursor, encodeIndexBatch, filterKey, indexSubject, nameToken, parseIndexBatch } from '../../src/model/job-index.js';
import { layout } from '../../src/model/layout.js';

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
    expect(JSON.parse(text(encodeIndexBatch(ids, times, 1, 3)))).toEqual([['é', 0], ['line\nbreak', 1.5]]);
    expect(text(encodeIndexBatch(ids, times, 2, 2))).toBe('[]');
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

describe("a worker's index entries (JobStorage.indexFinal)", () => {
  const storageWith = (sent: Array<{ subject: string; ids: string[] }>) =>
    new JobStorage({
      nc: { request: () => Promise.reject(new Error('no server in this test')) },
      config: resolveConfig({}),
      layout: layout('naq'),
      log: pino({ level: 'silent' }),
      retry: { timeoutMs: 1, initialDelayMs: 1, maxDelayMs: 1 },
      jsm: () => Promise.reject(new Error('no server in this test')),
      kvm: () => {
        throw new Error('no server in this test');
      },
      publisher: {
        publish: (subject: string, body: Uint8Array) => {
          sent.push({ subject, ids: parseIndexBatch(subject, body).map((e) => e.id) });
          return Promise.resolve({ stream: 'NAQ_INDEX', seq: sent.length, duplicate: false });
        },
      } as unknown as AsyncPublisher,
      maxPayload: () => undefined,
    });

  it('wait for the flush however many there are, then go out in order, at most 1,000 a message, one subject per state and name', () => {
    const sent: Array<{ subject: string; ids: string[] }> = [];
    const storage = storageWith(sent);
    const ids = Array.from({ length: 2_500 }, (_, i) => `job-${i}`);
    for (const id of ids) storage.indexFinal({ id, queue: 'q', name: 'work', state: 'completed', enqueuedAt: 1 });
    storage.indexFinal({ id: 'bad', queue: 'q', name: 'work', state: 'failed', enqueuedAt: 2 });
    expect(sent).toEqual([]);
    storage.flushIndex();
    expect(sent.map((m) => [m.subject, m.ids.length])).toEqual([
      ['naq.index.q.completed.work', 1_000],
      ['naq.index.q.completed.work', 1_000],
      ['naq.index.q.completed.work', 500],
      ['naq.index.q.failed.work', 1],
    ]);
    expect(sent.slice(0, 3).flatMap((m) => m.ids)).toEqual(ids);
    storage.flushIndex();
    expect(sent).toHaveLength(4);
  });
});
