import { resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { natsOf } from '../../src/actors/nats/connection.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { KeyExistsError, NotFoundError, OperationTimeoutError, RevisionMismatchError } from '../../src/core/errors.js';
import type { ConnectionNotification } from '../../src/machines/connection.js';
import { cleanEnv, until, startServer, stopAllServers, type TestServer, elapse } from '../support/harness.js';
import { ROOT } from '../support/paths.js';

const silent = pino({ level: 'silent' });
const running: Naq[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

function naqFor(server: TestServer, extra: Record<string, unknown> = {}) {
  const naq = createNaq(
    {
      nats: { url: server.url },
      reconnect: { timeWaitMs: 100 },
      ops: { timeoutMs: 3000, retryInitialDelayMs: 50, retryMaxDelayMs: 200 },
      ...extra,
    },
    { logger: silent },
  );
  running.push(naq);
  return naq;
}

/** Watches connection notifications through the connection actor's emitted events. */
function notifications(naq: Naq): ConnectionNotification['type'][] {
  const seen: ConnectionNotification['type'][] = [];
  const conn = naq.get('connection')!;
  for (const t of ['CONNECTED', 'DISCONNECTED', 'RECONNECTED'] as const) conn.on(t, (e) => seen.push(e.type));
  return seen;
}

describe('naq against a real nats-server', () => {
  it('starts, reports health, and serves stream operations', async () => {
    const server = await startServer();
    const naq = naqFor(server);
    await naq.start({ timeoutMs: 10_000 });
    const health = naq.health();
    expect(health.healthy).toBe(true);
    expect(health.state).toBe('running');
    expect(Object.keys(health.actors)).toEqual(['supervisor', 'connection', 'streams', 'kv', 'events', 'jobs']);
    expect(health.actors.connection!.state).toBe('online.connected');

    const created = await naq.streams.ensure({ name: 'ORDERS', subjects: ['orders.>'], max_msgs: 100 });
    expect(created.config.max_msgs).toBe(100);
    // Idempotent: the same wanted config is a no-op; a changed setting updates the stream.
    const again = await naq.streams.ensure({ name: 'ORDERS', subjects: ['orders.>'], max_msgs: 100 });
    expect(again.created).toEqual(created.created);
    const updated = await naq.streams.ensure({ name: 'ORDERS', subjects: ['orders.>'], max_msgs: 50 });
    expect(updated.config.max_msgs).toBe(50);

    const nc = natsOf(naq.get('connection')!.getSnapshot().context.connection);
    const { jetstream } = await import('@nats-io/jetstream');
    const js = jetstream(nc);
    await js.publish('orders.a', 'first');
    await js.publish('orders.b', 'second');
    const msg = await naq.streams.getMessage('ORDERS', 2);
    expect(msg).toMatchObject({ seq: 2, subject: 'orders.b', data: 'second' });
    expect((await naq.streams.list()).map((s) => s.config.name)).toContain('ORDERS');
    expect(await naq.streams.purge('ORDERS', 'orders.a')).toEqual({ purged: 1 });
    expect((await naq.streams.info('ORDERS')).state.messages).toBe(1);
    expect(await naq.streams.delete('ORDERS')).toBe(true);
    await expect(naq.streams.info('ORDERS')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('serves KV operations with revision checks and typed errors', async () => {
    const server = await startServer();
    const naq = naqFor(server);
    await naq.start({ timeoutMs: 10_000 });
    await naq.kv.ensureBucket('cfg', { history: 5 });
    const r1 = await naq.kv.put('cfg', 'a', 'one');
    expect(await naq.kv.get('cfg', 'a')).toMatchObject({ key: 'a', value: 'one', revision: r1 });
    expect(await naq.kv.get('cfg', 'missing')).toBeNull();

    await naq.kv.create('cfg', 'b', 'x');
    await expect(naq.kv.create('cfg', 'b', 'y')).rejects.toBeInstanceOf(KeyExistsError);

    // Two writers hold the same revision: exactly one wins, the other gets RevisionMismatch.
    const results = await Promise.allSettled([naq.kv.update('cfg', 'a', 'w1', r1), naq.kv.update('cfg', 'a', 'w2', r1)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(RevisionMismatchError);
    expect(lost[0]!.reason.code).toBe('REVISION_MISMATCH');

    await naq.kv.putMany('cfg', [
      { key: 'job.1', value: '1' },
      { key: 'job.2', value: '2' },
    ]);
    expect(await naq.kv.keys('cfg', 'job.>')).toEqual(['job.1', 'job.2']);
    expect((await naq.kv.getMany('cfg', ['job.1', 'nope', 'job.2'])).map((e) => e?.value ?? null)).toEqual(['1', null, '2']);

    const watch = await naq.kv.watch('cfg', 'live.>');
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of watch) {
        seen.push(`${e.key}=${e.value}`);
        if (seen.length === 2) break;
      }
    })();
    await naq.kv.put('cfg', 'live.x', '1');
    await naq.kv.put('cfg', 'live.y', '2');
    await reading;
    watch.stop();
    expect(seen).toEqual(['live.x=1', 'live.y=2']);

    await naq.kv.delete('cfg', 'job.1');
    expect(await naq.kv.get('cfg', 'job.1')).toBeNull();
    await expect(naq.kv.get('no_such_bucket', 'k')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('survives a nats-server restart: DISCONNECTED then RECONNECTED, and operations work again', async () => {
    const server = await startServer();
    const naq = naqFor(server);
    await naq.start({ timeoutMs: 10_000 });
    const seen = notifications(naq);
    await naq.kv.ensureBucket('state');
    await naq.kv.put('state', 'before', '1');

    await server.kill('SIGKILL');
    await until(() => seen.includes('DISCONNECTED'));
    expect(naq.health().actors.kv!.online).toBe(false);

    // Issued during the outage: it completes once the server is back, within its deadline.
    const during = naq.kv.put('state', 'during', '2');
    // The outage goes on a while after the put was issued.
    await elapse(300);
    await server.restart();
    await until(() => seen.includes('RECONNECTED'));
    await expect(during).resolves.toBeGreaterThan(0);

    expect(seen).toEqual(['DISCONNECTED', 'RECONNECTED']);
    expect(naq.health().healthy).toBe(true);
    expect((await naq.kv.get('state', 'before'))?.value).toBe('1');
    expect((await naq.kv.get('state', 'during'))?.value).toBe('2');
    const info = await naq.streams.ensure({ name: 'AFTER', subjects: ['after.>'] });
    expect(info.config.name).toBe('AFTER');
  });

  it('fails an operation clearly, without hanging, when the outage outlasts its deadline', async () => {
    const server = await startServer();
    const naq = naqFor(server, { ops: { timeoutMs: 800, retryInitialDelayMs: 50, retryMaxDelayMs: 100 } });
    await naq.start({ timeoutMs: 10_000 });
    await naq.kv.ensureBucket('state');
    await server.kill('SIGKILL');
    const started = Date.now();
    const err = await naq.kv.get('state', 'k').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OperationTimeoutError);
    expect((err as Error).message).toMatch(/kv get k state did not complete within 800 ms/);
    // Bounded by the deadline (plus the ask margin), not hanging until the server returns.
    expect(Date.now() - started).toBeLessThan(2500);
    await server.restart();
  });

  it('gives a clear error when nothing listens and connect attempts run out', async () => {
    const server = await startServer();
    const url = server.url;
    await server.cleanup();
    const naq = createNaq({ nats: { url }, connect: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 10 }, supervisor: { maxRestarts: 0 } }, { logger: silent });
    running.push(naq);
    await expect(naq.start()).rejects.toThrow(/naq could not start: connection: .*(ECONNREFUSED|connection refused)/i);
    const output = await naq.done;
    expect(output.status).toBe('failed');
  });

  it('tells a stop during start apart from a failure: start() rejects with STOPPED, stop() reports stopped', async () => {
    const server = await startServer();
    const url = server.url;
    await server.cleanup();
    // Nothing answers, so start() is still connecting (with retries) when stop() comes.
    const naq = createNaq({ nats: { url }, connect: { initialDelayMs: 50, maxDelayMs: 100 } }, { logger: silent });
    const starting = naq.start();
    await until(() => naq.health().actors.connection?.state !== undefined);
    await expect(naq.stop()).resolves.toMatchObject({ status: 'stopped' });
    await expect(starting).rejects.toMatchObject({ code: 'STOPPED', message: 'naq was stopped before it finished starting' });
  });

  it('lets an embedding process exit as soon as stop() resolves: nothing of naq keeps it alive', async () => {
    const server = await startServer();
    const entry = resolve(ROOT, 'dist/src/index.js');
    // The built library, as a host imports it (npm test builds first). A stop bound far beyond
    // the test's limit: a timer of naq's left running would hold the process past it.
    const script = `
      const { createNaq } = await import(${JSON.stringify(entry)});
      const naq = createNaq({ nats: { url: ${JSON.stringify(server.url)} }, roles: ['worker', 'scheduler'], worker: { queues: ['exit'] }, supervisor: { stopTimeoutMs: 120000 }, log: { level: 'warn' } }, { handlers: { noop: async () => null } });
      await naq.start();
      await naq.enqueue('noop', null, { queue: 'exit' });
      await naq.stop();
      console.log('stopped');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(out).toContain('stopped');
    expect(code).toBe(0);
  }, 60_000);
});
