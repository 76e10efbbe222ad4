/**
 * The first run: what `npm start` runs (the arguments of package.json's start script, started
 * as `node bin/naq.js` since npm would not forward the SIGTERM) brings up an embedded
 * nats-server, a worker with the example handlers, the scheduler and the dashboard, and its
 * log says where the dashboard is and what to try. The embedded server gets a free port and a
 * temporary store, never 4222.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanEnv, freePort, until } from '../support/harness.js';
import { BIN, ROOT } from '../support/paths.js';
import { killSpawned, runCli, spawned } from '../support/processes.js';

afterEach(killSpawned);

describe('npm start', () => {
  it('serves the dashboard of a whole node, its log says what to try, and `naq dashboard` beside it sees the node', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const args = pkg.scripts.start.split(' ');
    const naqArgs = args.slice(args.indexOf('dist/src/main.js') + 1);
    const port = await freePort();
    const store = await mkdtemp(join(tmpdir(), 'naq-first-run-'));
    const child = spawned(process.execPath, [BIN, ...naqArgs, '--dashboard-port', '0'], {
      cwd: ROOT,
      env: cleanEnv({ NAQ_EMBEDDED__PORT: String(port), NAQ_EMBEDDED__STORE_DIR: join(store, 'nats') }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stderr!.on('data', (d) => (log += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await until(() => /elected scheduler leader/.test(log) && /try: npx naq enqueue/.test(log), 20_000);
    const messages = log
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => (JSON.parse(line) as { msg: string }).msg);
    const dashboard = /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(messages.find((m) => m.startsWith('dashboard: '))!)![1]!;
    const tryLine = messages.find((m) => m.startsWith('try: npx naq '))!.slice('try: npx naq '.length);
    expect(tryLine).toContain(`--nats-url nats://127.0.0.1:${port}`);

    // The suggested command, as a user would paste it (its quotes read as a shell would).
    const words = [...tryLine.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
    const enqueued = await runCli(words);
    expect(enqueued.code).toBe(0);
    const id = enqueued.stdout.trim();
    await until(async () => ((await (await fetch(`${dashboard}api/jobs/${id}`)).json()) as { job?: { status: string } }).job?.status === 'completed', 10_000);
    const overview = (await (await fetch(`${dashboard}api/overview`)).json()) as { queues: Array<{ queue: string; workers: number }> };
    expect(overview.queues).toContainEqual(expect.objectContaining({ queue: 'default', workers: 1 }));

    // `naq dashboard` on its own, beside that node: no worker or scheduler of its own, so the
    // system page shows the node's worker from its heartbeat and the leader from the lease.
    const standalone = spawned(process.execPath, [BIN, 'dashboard', '--port', '0', '--read-only', '--nats-url', `nats://127.0.0.1:${port}`], {
      cwd: ROOT,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let standaloneLog = '';
    standalone.stderr!.on('data', (d) => (standaloneLog += d));
    const standaloneExited = new Promise<number | null>((resolve) => standalone.on('exit', (code) => resolve(code)));
    await until(() => /dashboard: http:\/\/127\.0\.0\.1:\d+\//.test(standaloneLog), 10_000);
    const other = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(standaloneLog)![1]!;
    type System = { tree: Array<{ id: string; children: Array<{ id: string }> }>; leader: { here: boolean; lease: { pid: number } | null }; workers: Array<{ pid: number }> };
    let system: System | null = null;
    await until(async () => {
      system = (await (await fetch(`${other}api/system`)).json()) as System;
      return system.tree[0]?.children.some((c) => c.id === 'jobs') === true && system.leader.lease !== null && system.workers.length > 0;
    }, 10_000);
    expect(system!.leader).toEqual({ here: false, lease: expect.objectContaining({ pid: child.pid }) });
    expect(system!.workers.map((w) => w.pid)).toEqual([child.pid]);
    expect(system!.tree[0]!.children.map((c) => c.id)).not.toContain('scheduler');
    expect((await fetch(`${other}api/queues/default/pause`, { method: 'POST' })).status).toBe(403);
    standalone.kill('SIGTERM');
    expect(await standaloneExited).toBe(0);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 60_000);
});
