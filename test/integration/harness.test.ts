import { resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { NaqError } from '../../src/core/errors.js';
import { findNatsServerBinary, isNatsReachable, readNatsInfo, startNatsServer } from '../../src/nats-server/process.js';
import { startTestServer } from '../../src/testing/index.js';
import { connectTo, freePort, startServer, stopAllServers } from '../support/harness.js';
import { ROOT } from '../support/paths.js';

afterAll(stopAllServers);

describe('test harness / nats-server', () => {
  it('finds the nats-server binary', () => {
    const path = findNatsServerBinary();
    expect(path).toBeDefined();
    expect(existsSync(path!)).toBe(true);
    expect(findNatsServerBinary('naq-no-such-binary')).toBeUndefined();
  });

  it('keeps a file-storage stream across SIGKILL and restart, and the client reconnects', async () => {
    const server = await startServer();
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    const nc = await connectTo(server, { reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'T', subjects: ['t.>'] });
    const ack = await jetstream(nc).publish('t.one', 'hello');
    expect(ack.stream).toBe('T');
    expect(ack.seq).toBe(1);

    const oldPid = server.pid;
    const statuses = nc.status();
    await server.kill();
    expect(server.exited).toBe(true);
    expect(await isNatsReachable(server.url)).toBe(false);

    const port = server.port;
    await server.restart();
    expect(server.exited).toBe(false);
    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(oldPid);

    // The client was connected before the kill; it must come back on its own.
    for await (const s of statuses) {
      if (s.type === 'reconnect') break;
    }
    const info = await jsm.streams.info('T');
    expect(info.state.messages).toBe(1);
    const msg = await jsm.streams.getMessage('T', { seq: 1 });
    expect(msg?.subject).toBe('t.one');
    expect(msg?.string()).toBe('hello');
    const ack2 = await jetstream(nc).publish('t.two', 'again');
    expect(ack2.seq).toBe(2);
  });

  it('runs two servers in parallel on different ports and stores', async () => {
    const [a, b] = await Promise.all([startServer(), startServer()]);
    expect(a.port).not.toBe(b.port);
    expect(a.storeDir).not.toBe(b.storeDir);
    const [ia, ib] = await Promise.all([readNatsInfo(a.url), readNatsInfo(b.url)]);
    expect(ia?.server_id).toBeTruthy();
    expect(ia?.server_id).not.toBe(ib?.server_id);
    expect(ia?.jetstream).toBe(true);
    await a.cleanup();
    expect(existsSync(a.storeDir)).toBe(false);
    expect(await isNatsReachable(b.url)).toBe(true);
  });

  it('passes config text and can run without JetStream', async () => {
    const server = await startServer({ jetstream: false, configText: 'max_payload: 65536\n' });
    const info = await readNatsInfo(server.url);
    expect(info?.max_payload).toBe(65536);
    expect(info?.jetstream).toBeFalsy();
  });

  it('rejects with NATS_SERVER_MISSING mentioning apt-get when there is no binary', async () => {
    const err = await startNatsServer({ binary: 'naq-no-such-binary', port: 0, storeDir: '/nonexistent' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NaqError);
    expect((err as NaqError).code).toBe('NATS_SERVER_MISSING');
    expect((err as NaqError).message).toContain('apt-get install nats-server');
    expect((err as NaqError).message).toContain('NAQ_NATS_URL');
  });

  it('rejects with the server output when the port is taken', async () => {
    const running = await startServer();
    const err = await startNatsServer({ port: running.port, storeDir: `${running.storeDir}-2` }).catch(
      (e: unknown) => e,
    );
    expect((err as NaqError).code).toBe('NATS_SERVER_START_FAILED');
    expect((err as NaqError).message).toContain('address already in use');
    // The probe must not mistake the other server for the one that failed to start.
    expect(await isNatsReachable(running.url)).toBe(true);
  });

  it('isNatsReachable is true for a running server and false for a closed port', async () => {
    const server = await startServer();
    expect(await isNatsReachable(server.url)).toBe(true);
    expect(await isNatsReachable(`127.0.0.1:${server.port}`)).toBe(true);
    expect(await isNatsReachable(`nats://127.0.0.1:${await freePort()}`)).toBe(false);
    await server.stop();
    expect(server.exited).toBe(true);
    expect(await isNatsReachable(server.url)).toBe(false);
  });

  it('a process that exits without cleaning up leaves no throwaway server or store behind', () => {
    const entry = resolve(ROOT, 'dist/test/support/throwaway-server.js');
    const script = `
      const { startThrowawayNatsServer } = await import(${JSON.stringify(entry)});
      const t = await startThrowawayNatsServer({ prefix: 'naq-leftover-' });
      console.log(JSON.stringify({ pid: t.server.pid, root: t.root }));
      process.exit(0);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const { pid, root } = JSON.parse(out) as { pid: number; root: string };
    expect(existsSync(root)).toBe(false);
    // Gone, or a zombie nobody reaped yet (its parent exited): either way not running.
    const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : null;
    expect(stat === null || / Z /.test(stat)).toBe(true);
  });

  it("naq/testing's startTestServer: JetStream on a free port; kill and restart keep the store; stop removes it (twice is fine, restart after it is refused)", async () => {
    const server = await startTestServer();
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(await readNatsInfo(server.url)).toMatchObject({ jetstream: true });
    const nc = await connectTo(server);
    await (await jetstreamManager(nc)).streams.add({ name: 'K', subjects: ['k.>'] });
    await jetstream(nc).publish('k.one', 'kept');
    await nc.close();
    await server.kill();
    expect(await isNatsReachable(server.url)).toBe(false);
    await server.restart();
    const again = await connectTo(server);
    expect((await (await jetstreamManager(again)).streams.info('K')).state.messages).toBe(1);
    await again.close();
    const store = server.process.storeDir;
    await server.stop();
    await server.stop();
    expect(server.process.exited).toBe(true);
    expect(existsSync(store)).toBe(false);
    // Its store is gone and nothing would clean a new process up: no restart after stop.
    await expect(server.restart()).rejects.toThrow(/was stopped/);
    expect(server.process.exited).toBe(true);
  });

  it("startTestServer without a nats-server binary: NATS_SERVER_MISSING, saying how to install one", async () => {
    const error = await startTestServer({ binary: 'naq-no-such-binary' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NaqError);
    expect((error as NaqError).code).toBe('NATS_SERVER_MISSING');
    expect((error as NaqError).message).toMatch(/apt-get install nats-server/);
  });
});
