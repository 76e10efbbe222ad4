/**
 * The deployment changing under a running system: streams and buckets deleted by an operator
 * (or `naq streams rm`), and settings in the config that differ from what the server has.
 */
import { Writable } from 'node:stream';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connectTo, startServer, stopAllServers, until } from '../support/harness.js';
import { startNaq, stopNaqs } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

/** A logger whose lines the test can read. */
function capture() {
  const lines: Array<Record<string, any>> = [];
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    }),
  );
  return { logger, lines };
}

/** A worker on queue default that has completed one job, and a JetStream manager of its server. */
async function workerThatRanAJob() {
  const server = await startServer();
  const w = await startNaq(server, { roles: ['worker'], worker: { queues: ['default'], concurrency: 2, ackWaitMs: 5000 } }, { echo: async (d: unknown) => d });
  await expect(w.waitFor(await w.enqueue('echo', 1), { timeoutMs: 5000 })).resolves.toBe(1);
  return { w, jsm: await jetstreamManager(await connectTo(server)) };
}

describe('streams and buckets that disappear', () => {
  it('a worker whose jobs stream is deleted recreates it and consumes again', async () => {
    const { w, jsm } = await workerThatRanAJob();
    await jsm.streams.delete('NAQ_JOBS');
    await until(async () => (await jsm.streams.info('NAQ_JOBS').catch(() => null)) !== null, 20_000);
    await until(async () => (await jsm.consumers.info('NAQ_JOBS', 'naq-default').catch(() => null)) !== null, 20_000);
    await expect(w.waitFor(await w.enqueue('echo', 2), { timeoutMs: 15_000 })).resolves.toBe(2);
    expect(w.health().failures).toBe(0);
  });

  it('a bulk enqueued while the jobs stream is missing lands whole once it is recreated: every job once, one job.enqueued each', async () => {
    const server = await startServer();
    const p = await startNaq(server, { roles: ['producer'], events: { flushMs: 20 } });
    await p.enqueue('warm', null);
    const jsm = await jetstreamManager(await connectTo(server));
    await jsm.streams.delete('NAQ_JOBS');
    // Every publish of the first window finds no stream; they are retried after the repair.
    const ids = await p.enqueueBulk(Array.from({ length: 1500 }, (_, i) => ({ name: 'bulk', data: { i } })));
    expect(new Set(ids).size).toBe(1500);
    expect((await p.queueStats('default')).pending).toBe(1500);
    await p.events.flush();
    const enqueued = (await p.events.history({ types: ['job.enqueued'], limit: 5000 })).filter((e) => e.data?.name === 'bulk');
    expect(enqueued.map((e) => e.jobId).sort()).toEqual([...ids].sort());
  });

  it('the jobs stream deleted again within a second of being recreated is recreated again, not left missing', async () => {
    const { w, jsm } = await workerThatRanAJob();
    const deleteAndWait = async () => {
      await jsm.streams.delete('NAQ_JOBS');
      await until(async () => (await jsm.consumers.info('NAQ_JOBS', 'naq-default').catch(() => null)) !== null, 20_000);
    };
    // The first repair runs half a second after the loss is noticed; the second loss comes
    // right after it, within the second in which repairs are spaced out.
    await deleteAndWait();
    await deleteAndWait();
    await expect(w.waitFor(await w.enqueue('echo', 2), { timeoutMs: 15_000 })).resolves.toBe(2);
    expect(w.health().failures).toBe(0);
  });

  it('the results bucket, the dead letters and the event log, deleted under a running system, are recreated at the next write', async () => {
    const server = await startServer();
    const { logger, lines } = capture();
    const w = await startNaq(
      server,
      { roles: ['worker'], worker: { queues: ['default'], concurrency: 2, ackWaitMs: 2000 }, events: { flushMs: 20 } },
      {
        echo: async (d: unknown) => d,
        fails: async () => {
          throw new Error('no');
        },
      },
      logger,
    );
    await expect(w.waitFor(await w.enqueue('echo', 1), { timeoutMs: 5000 })).resolves.toBe(1);
    const nc = await connectTo(server);
    const jsm = await jetstreamManager(nc);
    for (const stream of ['KV_naq_jobs', 'KV_naq_waiting', 'NAQ_DEAD', 'NAQ_EVENTS']) await jsm.streams.delete(stream);

    // The outcome write finds no stream: the layout is repaired, the job comes back and is recorded.
    const id = await w.enqueue('echo', 2);
    await until(async () => (await w.getJob(id).catch(() => null))?.status === 'completed', 20_000);
    // The dependency resolver follows the recreated buckets.
    await expect(w.waitFor(await w.enqueue('echo', 3, { dependsOn: [id] }), { timeoutMs: 15_000 })).resolves.toBe(3);
    const failed = await w.enqueue('fails', null);
    await until(async () => (await w.getJob(failed).catch(() => null))?.status === 'failed', 20_000);
    expect((await w.queueStats('default')).dead).toBe(1);
    await until(async () => (await jsm.streams.info('NAQ_EVENTS').catch(() => null)) !== null, 10_000);
    const recreated = lines.filter((l) => /recreated .* it had disappeared/.test(l.msg)).flatMap((l) => l.recreated as string[]);
    expect(recreated).toEqual(expect.arrayContaining(['KV_naq_jobs', 'KV_naq_waiting', 'NAQ_DEAD']));
    // Events flow again into the recreated stream.
    await w.events.flush();
    await until(async () => (await jsm.streams.info('NAQ_EVENTS')).state.messages > 0, 10_000);
  });
});

describe('settings that differ from the server', () => {
  it('applies what the server allows on start, and names what it cannot change with both values', async () => {
    const server = await startServer();
    const first = await startNaq(server, { jobs: { resultTtlMs: 60_000 } });
    await first.stop();

    const { logger, lines } = capture();
    const second = await startNaq(server, { jobs: { resultTtlMs: 120_000 }, storage: { storage: 'memory' } }, undefined, logger);
    const nc = await connectTo(server);
    const jsm = await jetstreamManager(nc);
    // Updatable: the results bucket's TTL follows the config.
    expect((await jsm.streams.info('KV_naq_jobs')).config.max_age).toBe(120_000 * 1_000_000);
    expect(lines).toContainEqual(expect.objectContaining({ stream: 'KV_naq_jobs', setting: 'max_age', from: 60_000 * 1_000_000, to: 120_000 * 1_000_000 }));
    // Not updatable: storage stays, and a warning says so with both values.
    expect((await jsm.streams.info('NAQ_JOBS')).config.storage).toBe('file');
    const refused = lines.find((l) => l.stream === 'NAQ_JOBS' && l.setting === 'storage');
    expect(refused).toMatchObject({ have: 'file', want: 'memory', level: 40 });
    expect(refused!.msg).toContain('NAQ_JOBS: storage is "file" on the server but the config wants "memory"');
    // And the process works on what the server has.
    expect(await second.enqueue('later', null)).toBeTypeOf('string');
  });
});
