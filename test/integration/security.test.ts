import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startInspector } from '../../src/inspect/inspector.js';
import { REDACTED, SECRET_CONFIG_KEYS, SECRET_PROPERTY_NAMES, configSecrets, defaultConfig, redactConfig, resolveConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { createScrubber } from '../../src/core/redact.js';
import { connectOptions, natsOf } from '../../src/actors/nats/connection.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { connectTo, startServer, stopAllServers } from '../support/harness.js';
import { CLI } from '../support/paths.js';
import { exitedWithOutput } from '../support/processes.js';

const PASSWORD = 'Sup3r-S3cret-pw';
const TOKEN = 'tok-9f8e7d6c5b4a';
const running: Naq[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

function run(args: string[], extra: Record<string, string>, timeoutMs = 30_000): Promise<{ code: number | null; out: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...env, NO_COLOR: '1', ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`naq ${args.join(' ')} did not exit:\n${out}`));
    }, timeoutMs);
    void exitedWithOutput(child).then((code) => {
      clearTimeout(timer);
      res({ code, out });
    });
  });
}

describe('NATS authentication, for real', () => {
  it('user/password: right credentials work; wrong ones fail fast and clearly, never leaking the password', async () => {
    const server = await startServer({ configText: `authorization { user: alice, password: "${PASSWORD}" }\n` });
    const naq = createNaq({ nats: { url: server.url, user: 'alice', password: PASSWORD } }, { logger: pino({ level: 'silent' }) });
    running.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    await naq.kv.ensureBucket('sec');
    expect(await naq.kv.put('sec', 'k', 'v')).toBe(1);

    const wrong = createNaq({ nats: { url: server.url, user: 'alice', password: 'not-it' } }, { logger: pino({ level: 'silent' }) });
    running.push(wrong);
    const started = Date.now();
    const err = (await wrong.start().catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/naq could not start: connection: .*authorization violation/i);
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await wrong.done).status).toBe('failed');

    // The CLI: exit 1 with the reason, at once — not a retry loop.
    const cli = await run(['supervisor', '--nats-url', server.url], { NAQ_NATS_USER: 'alice', NAQ_NATS_PASSWORD: 'wrong-' + PASSWORD });
    expect(cli.code).toBe(1);
    expect(cli.out).toMatch(/authorization violation/i);
    expect(cli.out).not.toContain(PASSWORD);
  });

  it('a password with "@", ":" and "%" works when percent-encoded in the URL; unencoded, it is refused before connecting', async () => {
    const tricky = 'p@ss:w%rd-Z9';
    const server = await startServer({ configText: `authorization { user: alice, password: "${tricky}" }\n` });
    const withPassword = (written: string) => server.url.replace('nats://', `nats://alice:${written}@`);
    const url = withPassword(encodeURIComponent(tricky));
    expect(url).toContain('alice:p%40ss%3Aw%25rd-Z9@');
    const nc = await connectTo(server, await connectOptions(resolveConfig({ nats: { url } })));
    await nc.flush(); // a round trip: the server accepted the CONNECT
    await nc.close();

    // Decoded exactly once: encoded twice, the password the server sees is wrong.
    const twice = resolveConfig({ nats: { url: withPassword(encodeURIComponent(encodeURIComponent(tricky))) } });
    await expect(connectTo(server, await connectOptions(twice))).rejects.toThrow(/authorization violation/i);

    let refused: unknown;
    try {
      createNaq({ nats: { url: withPassword(tricky) } }, { logger: pino({ level: 'silent' }) });
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).key).toBe('nats.url');
    expect(String(refused)).not.toContain('p@ss');
    expect(String(refused)).not.toContain('w%rd');
  });

  it('token auth', async () => {
    const server = await startServer({ configText: `authorization { token: "${TOKEN}" }\n` });
    const ok = await run(['kv', 'put', 'b', 'k', 'v', '--nats-url', server.url], { NAQ_NATS_TOKEN: TOKEN });
    expect(ok.code).toBe(0);
    const bad = await run(['kv', 'get', 'b', 'k', '--nats-url', server.url], { NAQ_NATS_TOKEN: 'nope' });
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/authorization violation/i);
    expect(bad.out).not.toContain(TOKEN);
  });

  it('TLS with a certificate generated for the test', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'naq-tls-'));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: 'ignore' });
    const server = await startServer({ configText: `tls { cert_file: "${cert}", key_file: "${key}" }\n` });
    const naq = createNaq({ nats: { url: server.url, tls: { caFile: cert } } }, { logger: pino({ level: 'silent' }) });
    running.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    await naq.kv.ensureBucket('tls');
    expect(await naq.kv.put('tls', 'k', 'over tls')).toBe(1);
    const nc = natsOf(naq.get('connection')!.getSnapshot().context.connection);
    expect(nc.info?.tls_required).toBe(true);

    // Without the CA the server's certificate is not trusted: a clear failure, not a hang.
    const untrusted = await run(['kv', 'get', 'tls', 'k', '--nats-url', server.url], { NAQ_OPS__TIMEOUT_MS: '1000', NAQ_NATS__CONNECT_TIMEOUT_MS: '1000' });
    expect(untrusted.code).toBe(1);
    const viaCli = await run(['kv', 'get', 'tls', 'k', '--nats-url', server.url], { NAQ_TLS_CA: cert });
    expect(viaCli.out.trim()).toBe('over tls');
  });
});

describe('credentials never leak', () => {
  it('not in logs, naq config, inspector recordings or error messages', async () => {
    const server = await startServer({ configText: `authorization { user: alice, password: "${PASSWORD}" }\n` });
    const dir = await mkdtemp(join(tmpdir(), 'naq-leak-'));
    const record = join(dir, 'inspect.jsonl');
    // A debug-level supervisor run, recorded, with the password in the URL as well.
    const url = server.url.replace('nats://', `nats://alice:${PASSWORD}@`);
    const sup = spawn(process.execPath, [CLI, 'supervisor', '--nats-url', url, '--log-level', 'trace', '--inspect-record', record], {
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_'))), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    sup.stdout!.on('data', (d) => (log += d));
    sup.stderr!.on('data', (d) => (log += d));
    const exited = new Promise((r) => sup.on('exit', r));
    const end = Date.now() + 20_000;
    while (!log.includes('all services running') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(log).toContain('all services running');
    sup.kill('SIGTERM');
    await exited;
    expect(log).not.toContain(PASSWORD);
    expect(await readFile(record, 'utf8')).not.toContain(PASSWORD);

    const config = await run(['config', '--json', '--nats-url', url], { NAQ_NATS_PASSWORD: PASSWORD, NAQ_NATS_TOKEN: TOKEN });
    expect(config.code).toBe(0);
    expect(config.out).not.toContain(PASSWORD);
    expect(config.out).not.toContain(TOKEN);

    // A failing command's error message does not quote the URL's password either.
    const failing = await run(['kv', 'get', 'b', 'k', '--nats-url', url.replace(String(server.port), '1')], {
      NAQ_OPS__TIMEOUT_MS: '300',
      NAQ_NATS__CONNECT_TIMEOUT_MS: '300',
    });
    expect(failing.code).toBe(1);
    expect(failing.out).not.toContain(PASSWORD);

    // In-process: the inspector scrubs secrets given by value wherever they appear.
    const cfg = resolveConfig({ nats: { url: server.url, user: 'alice', password: PASSWORD } });
    const inspector = startInspector({ recordFile: join(dir, 'in-process.jsonl'), secrets: configSecrets(cfg) });
    const naq = createNaq(cfg, { logger: pino({ level: 'silent' }), inspect: inspector.observer });
    await naq.start({ timeoutMs: 10_000 });
    await naq.stop();
    await inspector.stop();
    expect(await readFile(join(dir, 'in-process.jsonl'), 'utf8')).not.toContain(PASSWORD);
  });
});

describe('one list of secret names', () => {
  /** An object with `name` at the depths the logger covers (top, and two levels down). */
  const carrying = (name: string) => ({ [name]: 'leak-0', a: { [name]: 'leak-1', b: { [name]: 'leak-2' } } });

  it('the inspector scrubber and the logger hide every secret name the config defines', () => {
    const scrub = createScrubber({ secrets: [] });
    let written = '';
    const destination = new Writable({
      write(chunk, _encoding, done) {
        written += String(chunk);
        done();
      },
    });
    const logger = createLogger({ level: 'info', pretty: false, destination });
    expect(SECRET_PROPERTY_NAMES.size).toBeGreaterThan(SECRET_CONFIG_KEYS.size);
    for (const name of SECRET_PROPERTY_NAMES) {
      expect(JSON.stringify(scrub(carrying(name)))).not.toContain('leak');
      logger.info(carrying(name), `with ${name}`);
    }
    expect(written.split('\n').filter((line) => line !== '')).toHaveLength(SECRET_PROPERTY_NAMES.size);
    expect(written).not.toContain('leak');
    expect(written).toContain(REDACTED);
  });

  it('every secret setting is redacted, listed as a secret, and known to the scrubber by name', () => {
    const config = defaultConfig();
    // Every secret key is `<section>.<field>` (nats.password, dashboard.token, ...).
    const sections = config as unknown as Record<string, Record<string, string>>;
    const parts = (key: string) => key.split('.') as [string, string];
    for (const key of SECRET_CONFIG_KEYS) {
      const [section, field] = parts(key);
      sections[section]![field] = `secret-of-${key}`;
      expect(SECRET_PROPERTY_NAMES.has(field)).toBe(true);
    }
    const redacted = redactConfig(config) as unknown as Record<string, Record<string, string>>;
    const secrets = configSecrets(config);
    for (const key of SECRET_CONFIG_KEYS) {
      const [section, field] = parts(key);
      expect(redacted[section]![field]).toBe(REDACTED);
      expect(secrets).toContain(`secret-of-${key}`);
    }
  });
});
