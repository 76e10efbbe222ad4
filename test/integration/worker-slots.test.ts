/**
 * A worker's slots on a real server: `concurrency` bounds the handlers running at once, while
 * the outcomes of handlers that returned are still being written; a graceful stop waits for
 * those writes, so every job a handler ran is recorded before the worker is gone.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { NaqContext } from '../../src/actors/nats/context.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Handlers, JobContext } from '../../src/actors/worker/handler.js';
import { QueueWorker } from '../../src/actors/worker/queue-worker.js';
import { resolveConfig } from '../../src/config/index.js';
import { connectTo, startServer, stopAllServers, until } from '../support/harness.js';
import { producer, silent, stopNaqs, worker } from '../support/naqs.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const proxies: TcpProxy[] = [];
afterEach(async () => {
  await stopNaqs();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});
afterAll(stopAllServers);

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A QueueWorker of `default` on the connection `nc` (made to `url`), pulling; no actors around it. */
async function queueWorker(nc: NatsConnection, url: string, handlers: Handlers, concurrency: number): Promise<QueueWorker> {
  const config = resolveConfig({ nats: { url }, ops: { timeoutMs: 5000 }, events: { enabled: false } });
  const ctx = new NaqContext(nc, config, silent);
  // What the worker machine's setup does before its processor prepares the QueueWorker.
  await ctx.storage.ensureLayout();
  await ctx.storage.ensureConsumer('default', 1000);
  const qw = new QueueWorker(ctx, 'default', handlers, { concurrency, ackWaitMs: 30_000, activeAfterMs: 0 }, silent);
  await qw.prepare(1000);
  qw.resume((error) => {
    throw error;
  });
  return qw;
}

describe("a worker's slots", () => {
  it('runs at most `concurrency` handlers at once, and reaches it', async () => {
    const server = await startServer();
    let running = 0;
    let most = 0;
    let done = 0;
    await worker(
      server,
      {
        job: async () => {
          most = Math.max(most, ++running);
          // A few turns of the event loop: the outcomes of the jobs before are written meanwhile.
          for (let i = 0; i < 3; i++) await turn();
          running--;
          done++;
        },
      },
      { concurrency: 3 },
    );
    const ops = await producer(server);
    const ids = await ops.enqueueBulk(Array.from({ length: 150 }, (_, n) => ({ name: 'job' as const, data: { n } })));
    await until(() => done === 150);
    expect(most).toBe(3);
    await until(async () => (await Promise.all(ids.map((id) => ops.getJob(id)))).every((r) => r?.status === 'completed'));
  });

  it('a graceful stop waits for the outcomes of the handlers that returned: every job that ran is recorded and acked', async () => {
    const server = await startServer();
    const ran: string[] = [];
    let stopped: Promise<unknown> | undefined;
    const w = await worker(
      server,
      {
        job: async (_data: unknown, ctx: JobContext) => {
          ran.push(ctx.jobId);
          // Stopped mid-stream, with handlers running and outcomes on their way to the server.
          if (ran.length === 200) stopped = w.stop();
          const n = ran.length;
          for (let i = 0; i < n % 5; i++) await turn();
          return { n };
        },
      },
      { concurrency: 16 },
    );
    const ops = await producer(server);
    await ops.enqueueBulk(Array.from({ length: 1000 }, (_, n) => ({ name: 'job' as const, data: { n } })));
    await until(() => stopped !== undefined);
    await stopped;
    expect(ran.length).toBeGreaterThanOrEqual(200);
    const records = await Promise.all(ran.map((id) => ops.getJob(id)));
    expect(records.filter((r) => r?.status !== 'completed').map((r) => r?.id)).toEqual([]);
    // Acked too: the jobs stream (work-queue retention) keeps only the jobs that did not run.
    const nc = await connectTo(server);
    const jsm = await jetstreamManager(nc);
    const stream = await jsm.streams.info('NAQ_JOBS');
    expect(stream.state.messages).toBe(1000 - ran.length);
    await nc.close();
  });

  it('a slot is free once its handler returned: more jobs start while outcomes wait for the server, and drain waits for those outcomes', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const ids = await ops.enqueueBulk(Array.from({ length: 40 }, (_, n) => ({ name: 'job' as const, data: { n } })));
    // The worker's connection goes through a proxy that can hold every byte back.
    const proxy = await startTcpProxy({ port: server.port });
    proxies.push(proxy);
    const nc = await connectTo({ url: proxy.url });
    let ran = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const qw = await queueWorker(nc, proxy.url, {
      job: async (data: { n: number }) => {
        ran++;
        await gate;
        return data;
      },
    }, 2);
    // Two handlers wait at the gate; the worker pulls two more jobs to hold meanwhile.
    await until(() => ran === 2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ran).toBe(2);
    // From now on no write is answered: the handlers return, their outcomes wait.
    proxy.freeze();
    open();
    await until(() => ran === 4);
    expect(qw.inFlight).toBe(4);
    let drained = false;
    const draining = qw.drain().then(() => (drained = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(drained).toBe(false);
    proxy.thaw();
    await draining;
    expect(qw.inFlight).toBe(0);
    expect(qw.processed).toBe(4);
    await qw.stop();
    const records = await Promise.all(ids.map((id) => ops.getJob(id)));
    expect(records.filter((r) => r?.status === 'completed')).toHaveLength(4);
  });

  it("a job's finish time is taken before the next job starts: a synchronous handler's recorded duration is its own", async () => {
    const server = await startServer();
    await worker(
      server,
      {
        // The first job holds one slot throughout, so the others wait in the worker for the
        // second slot; each of them is 60 ms of synchronous work.
        work: async (data: { n: number }) => {
          if (data.n === 0) return void (await new Promise((resolve) => setTimeout(resolve, 1000)));
          const end = Date.now() + 60;
          while (Date.now() < end);
        },
      },
      { concurrency: 2 },
    );
    const ops = await producer(server);
    const ids = await ops.enqueueBulk(Array.from({ length: 8 }, (_, n) => ({ name: 'work' as const, data: { n } })));
    await until(async () => (await Promise.all(ids.map((id) => ops.getJob(id)))).every((r) => r?.status === 'completed'));
    const records = await Promise.all(ids.slice(1).map((id) => ops.getJob(id)));
    const durations = records.map((r) => r!.attempts[0]!.finishedAt! - r!.attempts[0]!.startedAt);
    // Taken after the next job's synchronous work, a duration would read 120 ms or more.
    expect(durations.filter((d) => d >= 110)).toEqual([]);
  });

  it('a burst of deliveries that run no handler (no handler of that name) at a high concurrency: all dead-lettered, every slot given back', async () => {
    const server = await startServer();
    const ops = await producer(server);
    // Enqueued under a name this worker has no handler for: each is dead-lettered without a run.
    await ops.enqueueBulk(Array.from({ length: 2500 }, (_, n) => ({ name: 'unknown', data: { n } })));
    const nc = await connectTo(server);
    const jsm = await jetstreamManager(nc);
    let running = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const qw = await queueWorker(nc, server.url, {
      known: async () => {
        running++;
        await gate;
      },
    }, 1000);
    await until(async () => (await jsm.streams.info('NAQ_DEAD')).state.messages === 2500, 60_000);
    await until(() => qw.inFlight === 0);
    // Every one of the 1000 slots is free again: 1000 handlers run at once.
    await ops.enqueueBulk(Array.from({ length: 1000 }, (_, n) => ({ name: 'known', data: { n } })));
    await until(() => running === 1000);
    open();
    await until(() => qw.processed === 1000);
    await qw.drain();
    await qw.stop();
  }, 90_000);
});
