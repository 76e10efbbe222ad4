/**
 * A worker makes its queue's consumers (one per priority level, and the group staging lane's)
 * and brings them up to date at start, without reading every one's info each time: an info
 * makes nats-server count that consumer's backlog job by job (storage.ts #ensureConsumer).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connectTo, startServer, stopAllServers, until } from '../support/harness.js';
import { stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

const LEVELS = ['naq-default', ...[1, 2, 3, 4, 6, 7, 8, 9, 10].map((p) => `naq-default~${p}`)];
const STAGING = 'naq-default~g';
const handlers = { noop: async () => null };

describe("a queue's consumers at a worker's start", () => {
  it("are made, read only the default level's and the staging lane's info on a restart with nothing to change, take a changed setting on every level, and one removed is made again", async () => {
    const server = await startServer();
    const nc = await connectTo(server);
    const jsm = await jetstreamManager(nc);
    const infos: string[] = [];
    let pulls = 0;
    nc.subscribe('$JS.API.CONSUMER.INFO.NAQ_JOBS.*', { callback: (_error, m) => void infos.push(m.subject.split('.').pop()!) });
    nc.subscribe('$JS.API.CONSUMER.MSG.NEXT.NAQ_JOBS.naq-default', { callback: () => void pulls++ });
    /** The consumers whose info a worker's start read, once it pulls (so its setup is over). */
    const startReads = async (settings: Record<string, unknown>): Promise<string[]> => {
      const before = infos.length;
      const pullsBefore = pulls;
      const naq = await worker(server, handlers, settings);
      await until(() => pulls > pullsBefore);
      await nc.flush();
      const read = [...new Set(infos.slice(before))].sort();
      await naq.stop();
      return read;
    };
    const levels = async () => {
      const out: Record<string, [number, number]> = {};
      for (const name of LEVELS) {
        const { config } = await jsm.consumers.info('NAQ_JOBS', name);
        out[name] = [config.max_ack_pending!, config.ack_wait!];
      }
      return out;
    };
    const every = (maxAckPending: number, ackWaitMs: number) => Object.fromEntries(LEVELS.map((n) => [n, [maxAckPending, ackWaitMs * 1_000_000]]));

    await startReads({ maxAckPending: 50, ackWaitMs: 5000 });
    expect(await levels()).toEqual(every(50, 5000));
    expect((await jsm.consumers.info('NAQ_JOBS', STAGING)).config.max_ack_pending).toBe(20_000);

    expect(await startReads({ maxAckPending: 50, ackWaitMs: 5000 })).toEqual(['naq-default', STAGING]);

    await startReads({ maxAckPending: 80, ackWaitMs: 7000 });
    expect(await levels()).toEqual(every(80, 7000));

    await jsm.consumers.delete('NAQ_JOBS', 'naq-default~3');
    expect(await startReads({ maxAckPending: 80, ackWaitMs: 7000 })).toEqual(['naq-default', STAGING]);
    expect(await levels()).toEqual(every(80, 7000));
  });
});
