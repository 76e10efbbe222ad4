/**
 * Pausing a queue (issue 11): persisted, honoured by every worker within a second and by a
 * worker started later, running jobs finish, and resume runs what waited.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Naq } from '../../src/naq.js';
import { until, startServer, stopAllServers } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

/** The worker machine's hold region: 'open' or 'held'. */
function hold(naq: Naq): string | undefined {
  const value = naq.get('worker:default')?.getSnapshot().value as { active?: { serving?: { hold?: string } } } | undefined;
  return value?.active?.serving?.hold;
}

describe('queue pause', () => {
  it('every worker stops taking new jobs within a second, running ones finish, a later worker honours it, resume runs the backlog', async () => {
    const server = await startServer();
    const started: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const handlers = {
      slow: async () => {
        started.push('slow');
        await gate;
        return 'done';
      },
      quick: async (d: { n: number }) => {
        started.push(`quick${d.n}`);
        return d.n;
      },
    };
    const a = await worker(server, handlers);
    const b = await worker(server, handlers, { queues: ['default'] });
    const slow = await a.enqueue('slow', null);
    await until(() => started.includes('slow'));

    const ops = await producer(server);
    await ops.pauseQueue('default');
    const t0 = Date.now();
    await until(() => hold(a) === 'held' && hold(b) === 'held');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await ops.queueStats('default')).toMatchObject({ paused: true });
    expect((await ops.listQueues()).find((q) => q.queue === 'default')).toMatchObject({ paused: true });

    // Enqueued while paused: it waits. The running job finishes and is recorded.
    const waiting = await ops.enqueue('quick', { n: 1 });
    release();
    await expect(ops.waitFor(slow, { timeoutMs: 5000 })).resolves.toBe('done');
    // A worker started while the queue is paused never pulls.
    const c = await worker(server, handlers);
    await until(() => hold(c) === 'held');
    await expect(ops.waitFor(waiting, { timeoutMs: 1500 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(started).not.toContain('quick1');
    expect(await ops.queueStats('default')).toMatchObject({ pending: 1, inFlight: 0 });
    expect((await ops.listWorkers()).map((w) => w.status)).toContain('paused');

    await ops.resumeQueue('default');
    await expect(ops.waitFor(waiting, { timeoutMs: 5000 })).resolves.toBe(1);
    expect([hold(a), hold(b), hold(c)]).toEqual(['open', 'open', 'open']);
    expect(await ops.queueStats('default')).toMatchObject({ paused: false });
  });

  it('a pause outlives the processes: a queue paused with no worker up stays paused for the first one', async () => {
    const server = await startServer();
    const ops = await producer(server);
    await ops.pauseQueue('mail');
    await ops.stop();
    let runs = 0;
    const w = await worker(server, { send: async () => ++runs }, { queues: ['mail'] });
    const id = await w.enqueue('send', null, { queue: 'mail' });
    const state = () => (w.get('worker:mail')?.getSnapshot().value as { active?: { serving?: { hold?: string } } })?.active?.serving?.hold;
    await until(() => state() === 'held');
    await expect(w.waitFor(id, { timeoutMs: 1000 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(runs).toBe(0);
    await w.resumeQueue('mail');
    await expect(w.waitFor(id, { timeoutMs: 5000 })).resolves.toBe(1);
  });
});
