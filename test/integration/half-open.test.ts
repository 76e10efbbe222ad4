/**
 * Half-open connections: the network stops delivering but nobody closes the socket, so the
 * client hears no error at all. Only unanswered pings reveal it (nats.pingIntervalMs ×
 * nats.maxPingsOut); then the client reconnects and the worker must pick up again.
 */
import { connect, createServer, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Handlers } from '../../src/actors/worker/queue-worker.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { startServer, stopAllServers, until } from '../support/harness.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const silent = pino({ level: 'silent' });
const running: Naq<any>[] = [];
const proxies: TcpProxy[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});
afterAll(stopAllServers);

async function proxyTo(port: number): Promise<TcpProxy> {
  const proxy = await startTcpProxy({ port });
  proxies.push(proxy);
  return proxy;
}

describe('tcp proxy', () => {
  const echo = createServer((s) => s.pipe(s));
  beforeAll(() => new Promise<void>((r) => echo.listen(0, '127.0.0.1', r)));
  afterAll(() => new Promise<void>((r) => echo.close(() => r())));

  /** A client that collects what comes back and whether it was closed. */
  async function client(proxy: TcpProxy) {
    const socket: Socket = connect(proxy.port, '127.0.0.1');
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    const seen = { data: '', closed: false };
    socket.on('data', (b) => (seen.data += b.toString())).on('close', () => (seen.closed = true));
    return { socket, seen };
  }

  it('forwards, goes silent on freeze without closing, serves new connections, resumes on thaw', async () => {
    const proxy = await proxyTo((echo.address() as { port: number }).port);
    const a = await client(proxy);
    a.socket.write('one');
    await until(() => a.seen.data === 'one', 5000);

    proxy.freeze();
    a.socket.write('two');
    const b = await client(proxy);
    b.socket.write('fresh');
    await until(() => b.seen.data === 'fresh', 5000);
    // b's round trip went through the same proxy and event loop: had 'two' been forwarded,
    // its echo would be back by now; and freezing must not have closed a's socket.
    expect(a.seen).toEqual({ data: 'one', closed: false });
    expect(proxy.accepted).toBe(2);

    proxy.thaw();
    await until(() => a.seen.data === 'onetwo', 5000);
    a.socket.destroy();
    b.socket.destroy();
  });
});

describe('half-open connection', () => {
  it('a worker whose link goes silent reconnects, and every job, before, during and after, completes', async (ctx) => {
    const server = await startServer();
    const proxy = await proxyTo(server.port);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held = 0;
    const handlers = {
      double: async (n: number) => n * 2,
      // Running when the link goes silent; its outcome is then written into the dead link.
      hold: async () => {
        held++;
        await gate;
        return 'held';
      },
    } satisfies Handlers;
    const common = { reconnect: { timeWaitMs: 100 }, ops: { timeoutMs: 5000 }, supervisor: { stopTimeoutMs: 2000 } };

    const worker = createNaq(
      {
        ...common,
        // Short pings so the test does not wait for the defaults (tens of seconds).
        nats: { url: proxy.url, pingIntervalMs: 500, maxPingsOut: 2 },
        roles: ['worker'],
        // Jobs the server handed to the dead link before it was noticed come back after ack_wait.
        worker: { queues: ['default'], concurrency: 4, ackWaitMs: 5000, drainGraceMs: 1000 },
        // The outcome written into the dead link must still be waiting when the reconnect
        // re-sends it, even if this machine is slow to notice.
        jobs: { publishTimeoutMs: 30_000 },
      },
      { logger: silent, handlers },
    );
    running.push(worker);
    await worker.start({ timeoutMs: 15_000 });
    const producer = createNaq({ ...common, nats: { url: server.url } }, { logger: silent });
    running.push(producer);
    await producer.start({ timeoutMs: 15_000 });

    // Every state the worker's connection goes through, with when it got there.
    const connection = worker.get('connection');
    expect(connection).toBeDefined();
    const states: Array<{ state: string; at: number }> = [];
    const subscription = connection!.subscribe((s) => {
      const state = JSON.stringify(s.value);
      if (states.at(-1)?.state !== state) states.push({ state, at: Date.now() });
    });
    const connected = JSON.stringify({ online: 'connected' });
    const reconnecting = JSON.stringify({ online: 'reconnecting' });
    expect(JSON.stringify(connection!.getSnapshot().value)).toBe(connected);

    const enqueue = (from: number, count: number) =>
      Promise.all(Array.from({ length: count }, (_, i) => producer.enqueue('double', from + i)));
    const before = await enqueue(0, 5);
    expect(await Promise.all(before.map((id) => producer.waitFor<number>(id, { timeoutMs: 20_000 })))).toEqual([0, 2, 4, 6, 8]);
    const holding = await producer.enqueue('hold', null);
    await until(() => held === 1);
    expect(proxy.accepted).toBe(1);

    const frozenAt = Date.now();
    proxy.freeze();
    release();
    const during = await enqueue(10, 5);

    await until(() => states.some((s) => s.state === reconnecting), 30_000);
    await until(() => states.at(-1)?.state === connected, 30_000);
    const noticed = states.find((s) => s.state === reconnecting)!.at;
    const back = states.at(-1)!.at;
    ctx.annotate(`noticed after ${noticed - frozenAt} ms, reconnected after ${back - frozenAt} ms`);
    // The reconnect was a new TCP connection through the proxy: the frozen one never came back.
    expect(proxy.accepted).toBe(2);

    expect(await Promise.all(during.map((id) => producer.waitFor<number>(id, { timeoutMs: 30_000 })))).toEqual([20, 22, 24, 26, 28]);
    // Jobs keep flowing on the new connection, not just the ones caught in the outage.
    const after = await enqueue(20, 5);
    expect(await Promise.all(after.map((id) => producer.waitFor<number>(id, { timeoutMs: 30_000 })))).toEqual([40, 42, 44, 46, 48]);
    for (const id of [...before, ...during, ...after]) {
      expect(await producer.getJob(id)).toMatchObject({ id, status: 'completed' });
    }
    // The outcome written into the dead link was re-sent after the reconnect, not lost: the
    // job completed from its first run, which is the only run it had.
    expect(await producer.waitFor(holding, { timeoutMs: 30_000 })).toBe('held');
    expect((await producer.getJob(holding))!.attempts.map((a) => a.n)).toEqual([1]);
    expect(held).toBe(1);
    expect(worker.health()).toMatchObject({ healthy: true, failures: 0 });
    subscription.unsubscribe();
  }, 90_000);
});
