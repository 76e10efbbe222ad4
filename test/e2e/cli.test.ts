import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, until, freePort, startServer, stopAllServers, type TestServer } from '../support/harness.js';
import { CLI } from '../support/paths.js';
import { exitedWithOutput, runCli, type CliResult } from '../support/processes.js';

const run = (args: string[], extra: Record<string, string> = {}, timeoutMs = 20_000) => runCli(args, extra, timeoutMs);

/** Starts a long-running command and resolves once its log shows `ready`. */
function runUntil(args: string[], ready: RegExp, extra: Record<string, string> = {}) {
  const child: ChildProcess = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exited: Promise<CliResult> = exitedWithOutput(child).then((code) => ({ code, stdout, stderr }));
  const started = new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`not ready in time:\n${stderr}`)), 20_000);
    const check = () => {
      if (ready.test(stderr) || ready.test(stdout)) {
        clearTimeout(timer);
        res();
      }
    };
    child.stderr!.on('data', check);
    child.stdout!.on('data', check);
    void exited.then((r) => {
      clearTimeout(timer);
      rej(new Error(`exited ${r.code} before ready:\n${r.stderr}`));
    });
  });
  return { child, started, exited, output: () => ({ stdout, stderr }) };
}

// The tests of this file are independent of each other (each its own queue, bucket, stream or
// port on the shared server) and mostly wait on `naq` subprocesses, one core each: they run two
// at a time (describe.concurrent, at most maxConcurrency of vitest.config.ts).
let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(stopAllServers);

describe.concurrent('naq CLI: usage and config', () => {
  it('--help lists the commands and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['supervisor', 'config', 'machines', 'streams', 'kv']) expect(r.stdout).toContain(`naq ${c}`);
  });

  it('exits 2 naming an unknown argument, a missing argument, and a bad choice', async () => {
    const unknown = await run(['config', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown argument: bogus/);
    const missing = await run(['kv', 'get', 'bucket-only']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing argument <key>');
    const badChoice = await run(['machines', '--format', 'svg']);
    expect(badChoice.code).toBe(2);
    expect(badChoice.stderr).toMatch(/format/);
  });

  it('exits 2 naming the key of a bad config file, env variable or flag', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'naq-cli-'));
    const file = join(dir, 'naq.yaml');
    await writeFile(file, 'supervisor:\n  maxRestartz: 3\n');
    const badKey = await run(['config', '--config', file]);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toContain('supervisor.maxRestartz');

    const badEnv = await run(['config'], { NAQ_OPS__TIMEOUT_MS: 'soon' });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('NAQ_OPS__TIMEOUT_MS');

    const badFlag = await run(['config', '--nats-url', 'http://nope']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain('nats.url');
  });

  it('naq config prints the effective config with secrets redacted', async () => {
    const r = await run(['config', '--json', '--nats-url', 'nats://10.1.2.3:4333'], {
      NAQ_NATS_USER: 'alice',
      NAQ_NATS_PASSWORD: 'pa55-secret',
      NAQ_LOG_LEVEL: 'debug',
    });
    expect(r.code).toBe(0);
    const config = JSON.parse(r.stdout);
    expect(config.nats).toMatchObject({ url: 'nats://10.1.2.3:4333', user: 'alice', password: '[redacted]' });
    expect(config.log.level).toBe('debug');
    expect(r.stdout + r.stderr).not.toContain('pa55-secret');
    const yaml = await run(['config'], { NAQ_NATS_TOKEN: 'tok-123456' });
    expect(yaml.stdout).toMatch(/token: "?\[redacted\]"?/);
    expect(yaml.stdout).not.toContain('tok-123456');
  });

  it('naq machines prints JSON definitions and Mermaid diagrams of every machine', async () => {
    const json = await run(['machines', '--format', 'json']);
    expect(json.code).toBe(0);
    const defs = JSON.parse(json.stdout);
    expect(Object.keys(defs)).toEqual(expect.arrayContaining(['supervisor', 'connection', 'service']));
    expect(Object.keys(defs.connection.states)).toEqual(
      expect.arrayContaining(['idle', 'connecting', 'waiting', 'online', 'closing', 'closed', 'failed']),
    );
    const mermaid = await run(['machines', '--format', 'mermaid']);
    expect(mermaid.code).toBe(0);
    expect(mermaid.stdout).toContain('stateDiagram-v2');
    expect(mermaid.stdout).toMatch(/connected --> reconnecting : NATS\.DISCONNECT/);
  });
});

describe.concurrent('naq CLI against a real nats-server', () => {
  // 22 naq starts one after another (each waits for the last): 13 s alone, 18-21 s beside
  // another test on a busy 2-core machine, near the default 30 s; a run that hangs still fails
  // at its own 20 s.
  it('queue pause / resume / limit: persisted, shown by queue ls; a bad queue name or limit exits 2 naming it', { timeout: 60_000 }, async () => {
    const url = ['--nats-url', server.url];
    const pause = await run(['queue', 'pause', 'held', ...url]);
    expect(pause.code, pause.stderr).toBe(0);
    expect(pause.stdout.trim()).toBe('paused held');
    const ls = await run(['queue', 'ls', ...url]);
    expect(ls.stdout).toMatch(/^held\t0\t0\t0\t0\tpaused\t-$/m);
    const json = await run(['queue', 'ls', '--json', ...url]);
    expect(JSON.parse(json.stdout)).toContainEqual(expect.objectContaining({ queue: 'held', paused: true }));
    const resume = await run(['queue', 'resume', 'held', ...url]);
    expect(resume.stdout.trim()).toBe('resumed held');
    expect((await run(['queue', 'ls', ...url])).stdout).toMatch(/^held\t0\t0\t0\t0\trunning\t-$/m);
    // A rate limit: set, shown beside the pause setting (which it keeps), cleared.
    expect((await run(['queue', 'pause', 'held', ...url])).code).toBe(0);
    const limit = await run(['queue', 'limit', 'held', '--max', '100', '--per', '1000', ...url]);
    expect(limit.code, limit.stderr).toBe(0);
    expect(limit.stdout.trim()).toBe('held limited to 100 starts per 1000 ms');
    expect((await run(['queue', 'ls', ...url])).stdout).toMatch(/^held\t0\t0\t0\t0\tpaused\t100\/1000ms$/m);
    expect(JSON.parse((await run(['queue', 'ls', '--json', ...url])).stdout)).toContainEqual(expect.objectContaining({ queue: 'held', paused: true, limit: { max: 100, durationMs: 1000 } }));
    expect((await run(['queue', 'limit', 'held', '--clear', ...url])).stdout.trim()).toBe('held not limited');
    expect((await run(['queue', 'resume', 'held', ...url])).code).toBe(0);
    expect((await run(['queue', 'ls', ...url])).stdout).toMatch(/^held\t0\t0\t0\t0\trunning\t-$/m);
    for (const [args, named] of [
      [['--max', '0', '--per', '1000'], '--max'],
      [['--max', '10', '--per', 'soon'], '--per'],
      [['--max', '10'], '--per'],
      [['--clear', '--max', '3'], '--clear'],
    ] as const) {
      const bad = await run(['queue', 'limit', 'held', ...args, ...url]);
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stderr).toContain(named);
    }
    const bad = await run(['queue', 'pause', 'a b', ...url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('<queue>');
  });

  it('job promote / rm: a delayed job shows as delayed, is removed or promoted; a missing one exits 1 naming it', async () => {
    const url = ['--nats-url', server.url];
    const enq = await run(['enqueue', 'later', '--delay', '3600000', '--queue', 'ops', ...url]);
    expect(enq.code, enq.stderr).toBe(0);
    const id = enq.stdout.trim();
    expect((await run(['job', id, ...url])).stdout).toContain(`${id}  delayed  later on ops`);
    const rm = await run(['job', 'rm', id, ...url]);
    expect(rm.stdout.trim()).toBe(`${id} removed (it was delayed)`);
    const again = await run(['enqueue', 'later', '--delay', '3600000', '--queue', 'ops', ...url]);
    const promoted = await run(['job', 'promote', again.stdout.trim(), ...url]);
    expect(promoted.stdout.trim()).toBe(`${again.stdout.trim()} promoted: it runs now`);
    expect((await run(['job', again.stdout.trim(), ...url])).stdout).toContain('pending  later on ops');
    const missing = await run(['job', 'promote', 'nope', ...url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('job nope not found');
  });

  it('enqueue --dedupe-key: the same id twice within the window, throttled or debounced; a bad --dedupe-ttl exits 2 naming it', async () => {
    const url = ['--nats-url', server.url];
    const args = ['enqueue', 'digest', '--queue', 'dedupe', '--dedupe-key', 'user.42', '--dedupe-ttl', '600000', ...url];
    const first = await run([...args, '--data', '{"n":1}']);
    expect(first.code, first.stderr).toBe(0);
    const second = await run([...args, '--data', '{"n":2}', '--dedupe-mode', 'throttle']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout.trim()).toBe(first.stdout.trim());
    const debounced = ['enqueue', 'digest', '--queue', 'dedupe', '--dedupe-key', 'user.42', '--dedupe-ttl', '600000', '--dedupe-mode', 'debounce', ...url];
    const third = await run([...debounced, '--json']);
    expect(third.code, third.stderr).toBe(0);
    const { id } = JSON.parse(third.stdout) as { id: string };
    expect(id).not.toBe(first.stdout.trim());
    expect((await run([...debounced, '--data', '{"n":4}'])).stdout.trim()).toBe(id);
    expect(JSON.parse((await run(['job', id, '--json', ...url])).stdout)).toMatchObject({ id, status: 'delayed' });
    const bad = await run(['enqueue', 'digest', '--dedupe-key', 'k', '--dedupe-ttl', '-1', ...url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('invalid --dedupe-ttl: expected at least 1 ms, got -1');
  });

  it('kv put / get / keys / del', async () => {
    const url = ['--nats-url', server.url];
    const put = await run(['kv', 'put', 'cli', 'greeting', 'hello', ...url]);
    expect(put.code).toBe(0);
    expect(put.stdout).toMatch(/cli\/greeting revision 1/);
    const get = await run(['kv', 'get', 'cli', 'greeting', ...url]);
    expect(get.stdout.trim()).toBe('hello');
    const getJson = await run(['kv', 'get', 'cli', 'greeting', '--json', ...url]);
    expect(JSON.parse(getJson.stdout)).toMatchObject({ key: 'greeting', value: 'hello', revision: 1 });
    await run(['kv', 'put', 'cli', 'other', 'x', ...url]);
    const keys = await run(['kv', 'keys', 'cli', '--json', ...url]);
    expect(JSON.parse(keys.stdout)).toEqual(['greeting', 'other']);
    const del = await run(['kv', 'del', 'cli', 'greeting', ...url]);
    expect(del.code).toBe(0);
    const gone = await run(['kv', 'get', 'cli', 'greeting', ...url]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('cli/greeting not found');
  });

  it('kv watch prints current values, then changes as they happen', async () => {
    const url = ['--nats-url', server.url];
    const missing = await run(['kv', 'watch', 'watched', ...url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('bucket watched not found');

    await run(['kv', 'put', 'watched', 'seed', '0', ...url]);
    const w = runUntil(['kv', 'watch', 'watched', '--json', ...url], /"key":"seed"/);
    await w.started;
    await run(['kv', 'put', 'watched', 'a', '1', ...url]);
    await until(() => w.output().stdout.includes('"key":"a"'));
    w.child.kill('SIGINT');
    const r = await w.exited;
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => `${l.operation} ${l.key}=${l.value}`)).toEqual(['PUT seed=0', 'PUT a=1']);
  });

  it('streams ls / info / purge / rm', async () => {
    const url = ['--nats-url', server.url];
    await run(['kv', 'put', 'streamy', 'k1', 'v', ...url]);
    await run(['kv', 'put', 'streamy', 'k2', 'v', ...url]);
    const ls = await run(['streams', 'ls', ...url]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/KV_streamy\t\$KV\.streamy\.>\t2 msgs/);
    const info = await run(['streams', 'info', 'KV_streamy', ...url]);
    expect(JSON.parse(info.stdout).state.messages).toBe(2);
    const purge = await run(['streams', 'purge', 'KV_streamy', '--subject', '$KV.streamy.k1', ...url]);
    expect(purge.stdout.trim()).toBe('purged 1 messages from KV_streamy');
    const rm = await run(['streams', 'rm', 'KV_streamy', ...url]);
    expect(rm.code).toBe(0);
    const missing = await run(['streams', 'info', 'KV_streamy', ...url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('stream KV_streamy not found');
  });

  it('a one-shot command fails clearly, not forever, when no server answers', async () => {
    const port = await freePort();
    const r = await run(['kv', 'get', 'b', 'k', '--nats-url', `nats://127.0.0.1:${port}`], { NAQ_OPS__TIMEOUT_MS: '500', NAQ_NATS__CONNECT_TIMEOUT_MS: '500' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/starting naq .*did not complete within 1000 ms/);
    expect(r.stderr).toMatch(/ECONNREFUSED|refused/i);
  });
});

describe.concurrent('naq supervisor', () => {
  it('runs until SIGTERM, then drains its children in reverse order and exits 0', async () => {
    const s = runUntil(['supervisor', '--nats-url', server.url, '--log-level', 'info'], /all services running/);
    await s.started;
    s.child.kill('SIGTERM');
    const r = await s.exited;
    expect(r.code).toBe(0);
    // Whole messages: a bare "bye" also turns up inside random ids.
    const order = ['SIGTERM: draining', 'stopping kv', 'stopping streams', 'stopping connection', '"msg":"bye"'].map((m) => r.stderr.indexOf(m));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it('starts an embedded nats-server when no URL is configured and nothing answers, and stops it on exit', async () => {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'naq-embedded-'));
    const s = runUntil(['supervisor'], /all services running/, {
      NAQ_EMBEDDED__PORT: String(port),
      NAQ_EMBEDDED__STORE_DIR: join(dir, 'nats'),
      NAQ_LOG_LEVEL: 'info',
    });
    await s.started;
    expect(s.output().stderr).toContain(`nats://127.0.0.1:${port}`);
    expect(s.output().stderr).toContain('started an embedded nats-server');
    // The embedded server is a real one: a one-shot command can use it.
    const put = await run(['kv', 'put', 'emb', 'k', 'v', '--nats-url', `nats://127.0.0.1:${port}`]);
    expect(put.code).toBe(0);
    s.child.kill('SIGINT');
    const r = await s.exited;
    expect(r.code).toBe(0);
    const after = await run(['kv', 'get', 'emb', 'k', '--nats-url', `nats://127.0.0.1:${port}`], { NAQ_OPS__TIMEOUT_MS: '300', NAQ_NATS__CONNECT_TIMEOUT_MS: '300' });
    expect(after.code).toBe(1);
    expect(await readFile(join(dir, 'nats-server.log'), 'utf8')).toMatch(/Server is ready/);
  });

  it('says how to install nats-server when the embedded binary is missing', async () => {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'naq-embedded-'));
    const r = await run(['supervisor'], {
      NAQ_EMBEDDED__PORT: String(port),
      NAQ_EMBEDDED__STORE_DIR: join(dir, 'nats'),
      NAQ_EMBEDDED__BINARY: '/nonexistent/nats-server',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apt-get install nats-server');
  });

  it('exits non-zero naming the key when its config is bad', async () => {
    const r = await run(['supervisor'], { NAQ_SUPERVISOR__MAX_RESTARTS: '-3' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('NAQ_SUPERVISOR__MAX_RESTARTS');
    const roles = await run(['supervisor', '--roles', 'janitor']);
    expect(roles.code).toBe(2);
    expect(roles.stderr).toContain('roles');
  });

  it('fails loudly and exits 1 when the connection keeps failing past the restart limit', async () => {
    const port = await freePort();
    const r = await run(['supervisor', '--nats-url', `nats://127.0.0.1:${port}`], {
      NAQ_CONNECT__MAX_ATTEMPTS: '1',
      NAQ_SUPERVISOR__MAX_RESTARTS: '1',
      NAQ_SUPERVISOR__RESTART_DELAY_MS: '10',
      NAQ_LOG_LEVEL: 'info',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/too many restarts/);
  });
});
