import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createWebSocketReceiver } from '@statelyai/inspect';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startInspector, type RecordedInspectionEvent } from '../src/inspector.js';
import { createNaq } from '../src/naq.js';
import { configSecrets, resolveConfig } from '../src/config.js';
import { freePort, startServer, stopAllServers } from './harness.js';

afterAll(stopAllServers);

const PASSWORD = 'insp-s3cret-pw';
const PAYLOAD = 'very-private-payload-42';

async function authServer() {
  return startServer({ configText: `authorization { user: alice, password: "${PASSWORD}" }\n` });
}

async function until(check: () => boolean, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
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
    // Give the server a moment to listen before the receiver connects.
    await new Promise((r) => setTimeout(r, 200));
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
});
