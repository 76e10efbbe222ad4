import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JobRecord } from '../../src/model/job.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { startCluster, stopAllServers, type TestServer } from '../support/harness.js';

const running: Naq<any>[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // A cluster mid-election answers with errors for a moment.
    }
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const portOf = (server: string | null | undefined) => Number(String(server ?? '').split(':').at(-1));

describe('on a 3-node nats-server cluster, everything at 3 replicas', () => {
  it('keeps working through the loss of the connected node and of the jobs stream leader', async () => {
    const nodes = await startCluster(3);
    const url = nodes.map((n) => n.url).join(',');
    const done = new Map<number, number>();
    const naq = createNaq(
      {
        nats: { url },
        storage: { replicas: 3 },
        roles: ['worker', 'scheduler'],
        worker: { queues: ['c'], concurrency: 8, ackWaitMs: 4000 },
        scheduler: { leaderTtlMs: 3000, renewMs: 1000, electionRetryMs: 500 },
        reconnect: { timeWaitMs: 200 },
        ops: { timeoutMs: 15_000 },
        jobs: { publishTimeoutMs: 5000 },
      },
      {
        logger: pino({ level: 'silent' }),
        handlers: {
          step: async (d: { i: number }) => {
            await new Promise((r) => setTimeout(r, 15));
            done.set(d.i, (done.get(d.i) ?? 0) + 1);
            return d.i;
          },
        },
      },
    );
    running.push(naq);
    // The JetStream meta leader is elected a moment after the nodes are up; services retry until then.
    await naq.start({ timeoutMs: 40_000 });
    const info = await naq.streams.info('NAQ_JOBS');
    expect(info.config.num_replicas).toBe(3);

    const total = 600;
    const ids = await naq.enqueueBulk(Array.from({ length: total }, (_, i) => ({ name: 'step' as const, data: { i }, opts: { queue: 'c' } })));
    await naq.schedule('beat', { every: 1000 }, 'step', { i: -1 }, { queue: 'c' });
    await until(() => done.size >= 100);

    // 1. SIGKILL the node this process is connected to: the connection moves on.
    const connectedPort = portOf(naq.health().actors.connection?.server);
    const first = nodes.find((n) => n.port === connectedPort)!;
    expect(first).toBeDefined();
    await first.kill('SIGKILL');
    await until(() => {
      const c = naq.health().actors.connection;
      return c?.state === 'online.connected' && portOf(c.server) !== connectedPort;
    });
    const doneAfterFirstKill = done.size;
    await until(() => done.size >= doneAfterFirstKill + 100);
    await first.restart();

    // 2. SIGKILL whichever node now leads the jobs stream.
    let leaderNode: TestServer | undefined;
    await until(async () => {
      const leader = (await naq.streams.info('NAQ_JOBS')).cluster?.leader;
      leaderNode = nodes.find((n, i) => `n${i + 1}` === leader && !n.exited);
      return leaderNode !== undefined && (await naq.streams.info('NAQ_JOBS')).cluster?.replicas?.every((r) => r.current) === true;
    });
    await leaderNode!.kill('SIGKILL');
    await until(async () => (await naq.streams.info('NAQ_JOBS')).cluster?.leader !== undefined);

    // Every job completes and its outcome is recorded.
    await until(() => ids.every((_, i) => done.has(i)), 60_000);
    await until(async () => {
      const records = await Promise.all(ids.map((id) => naq.getJob(id)));
      return records.every((r: JobRecord | null) => r?.status === 'completed');
    }, 60_000);
    // The scheduler carried on through both losses.
    const beats = done.get(-1) ?? 0;
    // Only after the cluster has elected leaders for every stream again can a lease be taken:
    // under a loaded 2-core machine that was once ~22 s for the leader bucket alone.
    await until(() => (done.get(-1) ?? 0) > beats, 60_000);
    await naq.removeSchedule('beat');
    await leaderNode!.restart();
  }, 180_000);
});
