/**
 * Listing jobs by queue, state and name with a cursor, and the bulk actions built on it
 * (issue 11): every state read where it lives, newest first, pages that neither repeat nor
 * miss a job, stale index entries hidden, retry and clean by filter.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobRow, ListFilter, Naq } from '../../src/index.js';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { producer, startNaq, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

/** Every row of a listing, page by page. */
async function allPages(naq: Naq, filter: ListFilter): Promise<{ rows: JobRow[]; pages: number }> {
  const rows: JobRow[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await naq.listJobs({ ...filter, ...(cursor ? { cursor } : {}) });
    expect(page.jobs.length).toBeLessThanOrEqual(filter.limit ?? 50);
    rows.push(...page.jobs);
    cursor = page.cursor ?? undefined;
    pages++;
  } while (cursor);
  return { rows, pages };
}

describe('listJobs', () => {
  it('every state, from where it lives, newest first, paged without repeats or gaps', async () => {
    const server = await startServer();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const w = await worker(
      server,
      {
        ok: async (n: number) => n,
        bad: async () => {
          throw new Error('broken on purpose');
        },
        again: async () => {
          throw new Error('try later');
        },
        slow: async () => gate,
      },
      { concurrency: 4 },
    );
    const ok: string[] = [];
    for (let i = 0; i < 23; i++) ok.push(await w.enqueue('ok', i));
    await Promise.all(ok.map((id) => w.waitFor(id, { timeoutMs: 5000 })));
    const bad = await w.enqueue('bad', null);
    await expect(w.waitFor(bad, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'JOB_FAILED' });
    const slow = await w.enqueue('slow', null);
    const again = await w.enqueue('again', null, { attempts: 3, backoff: { type: 'fixed', delay: 3_600_000 } });
    await until(async () => (await w.getJob(again))?.status === 'retrying');
    await until(async () => (await w.queueStats('default')).inFlight === 2);
    const unserved = await w.enqueue('ok', 1, { queue: 'elsewhere' });
    const later = await w.enqueueIn(3_600_000, 'ok', 2);
    const parked = await w.enqueue('ok', 3, { dependsOn: ['never'] });
    const cancelled = await w.enqueue('ok', 4, { queue: 'elsewhere' });
    await w.cancel(cancelled);

    const ids = async (f: ListFilter) => (await w.listJobs(f)).jobs.map((j) => j.id);
    // Finished jobs reach the index in batches, up to 20 ms after their records.
    await until(async () => (await ids({ state: 'cancelled' })).length === 1);
    // Newest first: the last completed job comes first.
    expect(await ids({ queue: 'default', state: 'completed' })).toEqual([...ok].reverse());
    expect(await ids({ state: 'failed' })).toEqual([bad]);
    expect(await ids({ state: 'dead' })).toEqual([bad]);
    expect(await ids({ state: 'active' })).toEqual([slow]);
    expect(await ids({ state: 'retrying' })).toEqual([again]);
    expect(await ids({ state: 'pending' })).toEqual([unserved]);
    expect(await ids({ state: 'delayed' })).toEqual([later]);
    expect(await ids({ state: 'waiting' })).toEqual([parked]);
    expect(await ids({ state: 'cancelled' })).toEqual([cancelled]);
    expect(await ids({ queue: 'elsewhere', state: 'pending' })).toEqual([unserved]);
    expect(await ids({ queue: 'elsewhere', state: 'completed' })).toEqual([]);
    expect(await ids({ name: 'bad' })).toEqual([bad]);

    const [failedRow] = (await w.listJobs({ state: 'dead' })).jobs;
    expect(failedRow).toMatchObject({ id: bad, name: 'bad', queue: 'default', state: 'dead', attempts: 1, maxAttempts: 1, error: expect.stringContaining('broken on purpose') });
    const [delayedRow] = (await w.listJobs({ state: 'delayed' })).jobs;
    expect(delayedRow!.runAt).toBeGreaterThan(Date.now() + 3_000_000);

    // Pages of 5 through everything: each job once, newest first within each source.
    const { rows, pages } = await allPages(w, { limit: 5 });
    expect(pages).toBeGreaterThanOrEqual(6);
    const seen = rows.map((r) => r.id);
    expect(new Set(seen).size).toBe(seen.length);
    expect(new Set(seen)).toEqual(new Set([...ok, bad, slow, again, unserved, later, parked, cancelled]));
    const completedOrder = rows.filter((r) => r.state === 'completed').map((r) => r.id);
    expect(completedOrder).toEqual([...ok].reverse());
    expect(rows.find((r) => r.id === slow)!.state).toBe('active');

    // A cursor is for the listing it came from.
    const first = await w.listJobs({ state: 'completed', limit: 2 });
    await expect(w.listJobs({ state: 'failed', cursor: first.cursor! })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(w.listJobs({ state: 'finished' as never })).rejects.toMatchObject({ message: expect.stringContaining('invalid state "finished"') });
    await expect(w.listJobs({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    release();
  });

  it('a job id that ran again is listed in its current state only; names with any characters filter exactly', async () => {
    const server = await startServer();
    let fail = true;
    const w = await worker(server, {
      'mail.send now': async () => {
        if (fail) throw new Error('smtp down');
        return 'sent';
      },
      other: async () => 1,
    });
    await expect(w.waitFor(await w.enqueue('mail.send now', null, { jobId: 'j-1' }), { timeoutMs: 5000 })).rejects.toThrow('smtp down');
    fail = false;
    await w.waitFor(await w.enqueue('mail.send now', null, { jobId: 'j-1' }), { timeoutMs: 5000 });
    await w.waitFor(await w.enqueue('other', null), { timeoutMs: 5000 });
    await until(async () => (await w.listJobs({ state: 'completed' })).jobs.length === 2);
    expect((await w.listJobs({ state: 'failed' })).jobs).toEqual([]);
    expect((await w.listJobs({ state: 'dead' })).jobs).toEqual([]);
    expect((await w.listJobs({ state: 'completed', name: 'mail.send now' })).jobs.map((j) => [j.id, j.name])).toEqual([['j-1', 'mail.send now']]);
    expect((await w.listJobs({ state: 'completed' })).jobs).toHaveLength(2);
  });
});

describe('bulk actions', () => {
  it('retryJobs re-runs the dead jobs that match, once; cleanJobs removes records and dead letters by age', async () => {
    const server = await startServer();
    let healthy = false;
    const w = await worker(server, {
      flaky: async () => {
        if (!healthy) throw new Error('down');
        return 'up';
      },
      steady: async () => {
        throw new Error('always');
      },
      ok: async () => 'fine',
    });
    const flaky = await Promise.all([1, 2, 3].map(() => w.enqueue('flaky', null)));
    const steady = await w.enqueue('steady', null);
    for (const id of [...flaky, steady]) await expect(w.waitFor(id, { timeoutMs: 5000 })).rejects.toThrow();
    healthy = true;

    const ops = await producer(server);
    await expect(ops.retryJobs({ queue: 'default', state: 'dead', name: 'flaky' })).resolves.toMatchObject({ retried: 3, skippedCount: 0 });
    for (const id of flaky) await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe('up');
    // The retried ones left the dead list; a second retry finds only the other name's.
    expect((await ops.listJobs({ state: 'dead' })).jobs.map((j) => j.id)).toEqual([steady]);
    await expect(ops.retryJobs({ queue: 'default', state: 'dead', name: 'flaky' })).resolves.toMatchObject({ retried: 0 });
    await expect(ops.retryJobs({ queue: 'default', state: 'completed' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });

    // Clean: nothing is older than an hour; everything is older than 0 ms.
    await expect(ops.cleanJobs({ queue: 'default', state: 'completed', olderThanMs: 3_600_000 })).resolves.toEqual({ removed: 0 });
    const done = await w.enqueue('ok', null);
    await w.waitFor(done, { timeoutMs: 5000 });
    await until(async () => (await ops.listJobs({ state: 'completed' })).jobs.length === 4);
    await expect(ops.cleanJobs({ queue: 'default', state: 'completed', olderThanMs: 0, name: 'flaky' })).resolves.toEqual({ removed: 3 });
    for (const id of flaky) expect(await ops.getJob(id)).toBeNull();
    expect((await ops.listJobs({ state: 'completed' })).jobs.map((j) => j.id)).toEqual([done]);
    await expect(ops.cleanJobs({ queue: 'default', state: 'dead', olderThanMs: 0 })).resolves.toMatchObject({ removed: 4 });
    expect((await ops.listJobs({ state: 'dead' })).jobs).toEqual([]);
    expect(await ops.getJob(done)).toMatchObject({ status: 'completed' });
  });

  it('listing answers with the job index switched off: finished jobs are then not listed', async () => {
    const server = await startServer();
    const w = await startNaq(server, { roles: ['worker'], jobs: { index: false }, worker: { queues: ['default'] } }, { ok: async () => 1 });
    await w.waitFor(await w.enqueue('ok', null), { timeoutMs: 5000 });
    expect((await w.listJobs({ state: 'completed' })).jobs).toEqual([]);
  });
  it('a worker stopped right after its last job: the last index batch is acknowledged before the link closes, and every job is listed', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const lines: Array<Record<string, any>> = [];
    const logger = pino({ level: 'warn' }, new Writable({ write(chunk, _enc, done) { for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l)); done(); } }));
    const n = 500;
    let ran = 0;
    let last!: () => void;
    const allRan = new Promise<void>((r) => (last = r));
    await ops.enqueueBulk(Array.from({ length: n }, (_, i) => ({ name: 'ok' as const, data: i })));
    // Without the event log: its last flush, awaited on stop, would wait out the index batch's ack too.
    const w = await startNaq(server, { roles: ['worker'], events: { enabled: false }, worker: { queues: ['default'], concurrency: 50 } }, { ok: async () => void (++ran === n && last()) }, logger);
    await allRan;
    await w.stop();
    expect(lines.filter((l) => /not written/.test(String(l.msg)))).toEqual([]);
    expect((await allPages(ops, { state: 'completed', limit: 200 })).rows.length).toBe(n);
  });
});
