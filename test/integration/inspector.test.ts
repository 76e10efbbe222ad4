import { createConnection } from 'node:net';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWebSocketReceiver } from '@statelyai/inspect';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { replayRecording, startInspector, type RecordedInspectionEvent } from '../../src/inspect/inspector.js';
import { createNaq } from '../../src/naq.js';
import { configSecrets, resolveConfig } from '../../src/config/index.js';
import { until, freePort, startServer, stopAllServers } from '../support/harness.js';
import { CLI, fixture } from '../support/paths.js';

afterAll(stopAllServers);

const PASSWORD = 'insp-s3cret-pw';
const PAYLOAD = 'very-private-payload-42';

async function authServer() {
  return startServer({ configText: `authorization { user: alice, password: "${PASSWORD}" }\n` });
}

/** Whether something accepts TCP connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

describe('inspector', () => {
  it('records the whole actor system, without secrets or payloads', async () => {
    const server = await authServer();
    const dir = await mkdtemp(join(tmpdir(), 'naq-inspect-'));
    const file = join(dir, 'events.jsonl');
    const config = resolveConfig({ nats: { url: server.url, user: 'alice', password: PASSWORD } });
    const inspector = startInspector({ recordFile: file, secrets: configSecrets(config) });
    const naq = createNaq(config, { logger: pino({ level: 'silent' }), inspect: inspector.observer });
    await naq.start({ timeoutMs: 10_000 });
    await naq.kv.ensureBucket('insp');
    await naq.kv.put('insp', 'k', PAYLOAD);
    await naq.stop();
    await inspector.stop();

    const text = await readFile(file, 'utf8');
    const events = text.trim().split('\n').map((l) => JSON.parse(l) as RecordedInspectionEvent);
    const actors = new Set(events.filter((e) => e.type === '@xstate.actor').map((e) => e.actorId));
    expect([...actors]).toEqual(expect.arrayContaining(['supervisor', 'connection', 'streams', 'kv']));
    const types = new Set(events.map((e) => e.type));
    expect(types).toEqual(new Set(['@xstate.actor', '@xstate.event', '@xstate.snapshot', '@xstate.microstep', '@xstate.action']));
    // The kv actor saw the put request, and its snapshot went through ready → stopped.
    expect(events.some((e) => e.actorId === 'kv' && (e.event as { type?: string })?.type === 'kv.put')).toBe(true);
    const kvStates = events.filter((e) => e.actorId === 'kv' && e.type === '@xstate.snapshot').map((e) => e.snapshot!.value);
    expect(kvStates).toContain('ready');
    expect(kvStates.at(-1)).toBe('stopped');
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain(PAYLOAD);
    expect(text).toContain('[payload]');
  });

  it('streams inspection events to a WebSocket client through the local inspector server', async () => {
    const server = await authServer();
    const port = await freePort();
    const config = resolveConfig({ nats: { url: server.url, user: 'alice', password: PASSWORD } });
    const inspector = startInspector({ port, secrets: configSecrets(config) });
    expect(inspector.url).toBe(`http://localhost:${port}`);
    const received: Array<{ type: string; sessionId?: string; event?: unknown; snapshot?: unknown }> = [];
    const raw: string[] = [];
    // The receiver connects once the bridge listens.
    await until(() => listening(port));
    const receiver = createWebSocketReceiver({ server: `ws://localhost:${port}` });
    receiver.subscribe((e) => {
      received.push(e as never);
      raw.push(JSON.stringify(e));
    });
    const naq = createNaq(config, { logger: pino({ level: 'silent' }), inspect: inspector.observer });
    await naq.start({ timeoutMs: 10_000 });
    await naq.kv.ensureBucket('insp');
    await naq.kv.put('insp', 'k', PAYLOAD);
    await until(() => raw.some((r) => r.includes('kv.put')));
    await naq.stop();
    await inspector.stop();
    const types = new Set(received.map((e) => e.type));
    expect(types).toContain('@xstate.actor');
    expect(types).toContain('@xstate.event');
    expect(types).toContain('@xstate.snapshot');
    const all = raw.join('\n');
    for (const id of ['supervisor', 'connection', 'streams', 'kv']) expect(all).toContain(`"${id}"`);
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain(PAYLOAD);
  });

  it('naq supervisor --inspect streams supervisor, connection, leader and worker actors to a WebSocket client; the recording replays to the same states', async () => {
    const server = await startServer();
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'naq-inspect-'));
    const file = join(dir, 'run.jsonl');
    const cli = CLI;
    const handlers = fixture('handlers.ts');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));
    const child = spawn(
      process.execPath,
      [cli, 'supervisor', '--roles', 'worker', 'scheduler', '--queue', 'insp', '--handlers', handlers, '--nats-url', server.url,
        '--inspect', '--inspect-port', String(port), '--inspect-record', file, '--log-level', 'info'],
      { env: { ...env, NO_COLOR: '1', NAQ_SCHEDULER__LEADER_TTL_MS: '2000', NAQ_SCHEDULER__RENEW_MS: '500' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    child.stderr!.on('data', (d) => (log += d));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    await until(() => log.includes(`inspector: open http://localhost:${port}`));
    const names = new Map<string, string>();
    const received: Array<{ type: string; sessionId: string; name?: string; snapshot?: { value?: unknown } }> = [];
    const receiver = createWebSocketReceiver({ server: `ws://localhost:${port}` });
    receiver.subscribe((e) => {
      const ev = e as unknown as { type: string; sessionId: string; name?: string; snapshot?: { value?: unknown } };
      received.push(ev);
      if (ev.type === '@xstate.actor' && ev.name) names.set(ev.sessionId, ev.name);
    });
    await until(() => log.includes('all services running') && log.includes('elected scheduler leader'), 20_000);
    const naq = createNaq({ nats: { url: server.url } }, { logger: pino({ level: 'silent' }) });
    await naq.start({ timeoutMs: 10_000 });
    await naq.waitFor(await naq.enqueue('add', { a: 1, b: 2 }, { queue: 'insp' }), { timeoutMs: 10_000 });
    await naq.stop();
    await until(() => received.some((e) => e.type === '@xstate.snapshot' && names.get(e.sessionId) === 'worker:insp'));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const byActor = (type: string) => new Set(received.filter((e) => e.type === type).map((e) => names.get(e.sessionId)));
    for (const type of ['@xstate.actor', '@xstate.event', '@xstate.snapshot']) {
      for (const actor of ['supervisor', 'connection', 'leader', 'worker:insp']) expect(byActor(type)).toContain(actor);
    }
    // What the live client saw, per actor, is what the recording replays: the same states in
    // the same order (the live view may join a moment late and lose the last few as the
    // process exits, so it is a contiguous run within the recording).
    const live = new Map<string, string[]>();
    for (const e of received) {
      if (e.type !== '@xstate.snapshot' || e.snapshot?.value === undefined) continue;
      const actor = names.get(e.sessionId);
      if (!actor) continue;
      const seq = live.get(actor) ?? [];
      const name = stateName(e.snapshot.value);
      if (seq.at(-1) !== name) seq.push(name);
      live.set(actor, seq);
    }
    const replayed = replayRecording(await readFile(file, 'utf8'));
    for (const actor of ['supervisor', 'connection', 'leader', 'worker:insp']) {
      const r = replayed.get(actor)!;
      const l = live.get(actor)!;
      expect(l.length).toBeGreaterThan(1);
      const at = r.indexOf(l[0]!);
      expect(at).toBeGreaterThanOrEqual(0);
      expect(r.slice(at, at + l.length)).toEqual(l);
    }
    expect(replayed.get('supervisor')![0]).toBe('active.connecting');
    expect(replayed.get('supervisor')!.at(-1)).toBe('stopped');
    expect(replayed.get('leader')).toEqual(expect.arrayContaining(['candidate', 'leader']));
  });

  it('keeps payloads out of recordings unless asked', async () => {
    const server = await startServer();
    const dir = await mkdtemp(join(tmpdir(), 'naq-inspect-'));
    for (const payloads of [false, true]) {
      const file = join(dir, `p-${payloads}.jsonl`);
      const config = resolveConfig({ nats: { url: server.url } });
      const inspector = startInspector({ recordFile: file, secrets: [], payloads });
      const naq = createNaq(config, { logger: pino({ level: 'silent' }), inspect: inspector.observer });
      await naq.start({ timeoutMs: 10_000 });
      await naq.kv.ensureBucket('pl');
      await naq.kv.put('pl', 'k', PAYLOAD);
      await naq.stop();
      await inspector.stop();
      expect((await readFile(file, 'utf8')).includes(PAYLOAD)).toBe(payloads);
    }
  });
});

function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') return Object.entries(value).map(([k, v]) => `${k}.${stateName(v)}`).join(',');
  return String(value);
}
