/**
 * The wire format from another language: examples/go's worker and producer, written on
 * nats.go from docs/wire-format.md, are built with Debian's Go (which .ci/run installs) and
 * run against the conformance kit on a real nats-server.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, until, startServer, stopAllServers } from '../support/harness.js';
import { CLI, ROOT } from '../support/paths.js';
import { killSpawned, runCli, spawned } from '../support/processes.js';

afterEach(killSpawned);
afterAll(stopAllServers);

let bin: string;

beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'naq-go-'));
  const build = spawnSync(join(ROOT, 'examples/go/build.sh'), [bin], { encoding: 'utf8' });
  // No Go here is a broken setup (.ci/run installs it), not a reason to pass.
  if (build.status !== 0) throw new Error(`examples/go/build.sh failed (.ci/run installs golang-go and golang-github-nats-io-go-nats-dev):\n${build.stdout}${build.stderr}`);
}, 300_000);

function output(child: ChildProcess): () => string {
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  return () => out;
}

describe('the Go example', () => {
  it('the Go worker passes naq conformance worker', async () => {
    const server = await startServer();
    // The layout first: any naq command that connects creates it.
    expect((await runCli(['queue', 'ls', '--nats-url', server.url])).code).toBe(0);
    // A 2 s ack_wait (the Go worker creates the consumer), so the kit checks the keep-alive too.
    const worker = spawned(join(bin, 'worker'), ['-url', server.url, '-queue', 'goq', '-ack-wait', '2s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log = output(worker);
    const r = await runCli(['conformance', 'worker', '--queue', 'goq', '--nats-url', server.url], {}, 90_000);
    expect(r.code, `${r.stdout}\n--- go worker ---\n${log()}`).toBe(0);
    expect(r.stdout).toMatch(/^15 passed, 0 failed$/m);
    expect(r.stdout).not.toMatch(/^(FAIL|skip)/m);
    // It drains on SIGTERM and exits 0.
    const exited = new Promise<number | null>((res) => worker.on('exit', (code) => res(code)));
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 120_000);

  it('the Go producer passes naq conformance producer', async () => {
    const server = await startServer();
    const kit = spawned(process.execPath, [CLI, 'conformance', 'producer', '--queue', 'gop', '--nats-url', server.url, '--wait', '60000'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = output(kit);
    const kitExit = new Promise<number | null>((res) => kit.on('exit', (code) => res(code)));
    await until(() => out().includes('ready:') || kit.exitCode !== null);
    const producer = spawnSync(join(bin, 'producer'), ['-url', server.url, '-queue', 'gop'], { encoding: 'utf8', timeout: 60_000 });
    expect(producer.status, producer.stdout + producer.stderr).toBe(0);
    expect(await kitExit, out()).toBe(0);
    expect(out()).toMatch(/^ok   conformance.done announced 14 jobs, and that many were seen/m);
    expect(out()).toMatch(/^15 passed, 0 failed$/m);
  }, 120_000);
});
