/**
 * The launch forms the README documents for production (examples/deploy/): naq started so
 * that a SIGTERM sent to the one pid a process manager knows reaches naq itself, which then
 * drains. An app directory is laid out as npm installs naq (node_modules/naq, and the bin
 * linked from node_modules/.bin); npm and npx are deliberately absent, as in production.
 * `npm test` builds dist/ first; alone, run `npx tsc -p tsconfig.json` before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createNaq, type Naq } from '../../src/naq.js';
import { cleanEnv, startServer, stopAllServers, until, type TestServer } from '../support/harness.js';
import { ROOT, fixture } from '../support/paths.js';

const HANDLERS = fixture('handlers.ts');

interface LaunchForm {
  name: string;
  /** The command and its arguments before naq's own (`worker ...`), run from the app directory. */
  command: (app: string) => [string, ...string[]];
}

const FORMS: LaunchForm[] = [
  // What the Dockerfile's CMD and the systemd unit's ExecStart run.
  { name: 'node node_modules/naq/bin/naq.js', command: () => [process.execPath, '--max-semi-space-size=8', 'node_modules/naq/bin/naq.js'] },
  // The bin on PATH: a symlink to bin/naq.js, whose `#!/usr/bin/env -S node …` line execs node in place.
  { name: 'node_modules/.bin/naq', command: (app) => [join(app, 'node_modules/.bin/naq')] },
];

let server: TestServer;
let app: string;
const children = new Set<ChildProcess>();
const clients: Naq[] = [];

beforeAll(async () => {
  server = await startServer();
  app = await mkdtemp(join(tmpdir(), 'naq-launch-'));
  await mkdir(join(app, 'node_modules/.bin'), { recursive: true });
  await symlink(ROOT, join(app, 'node_modules/naq'), 'dir');
  // As npm links a package's bin: relative, through the package directory.
  await symlink('../naq/bin/naq.js', join(app, 'node_modules/.bin/naq'));
});
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  await Promise.all(clients.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

function launch(form: LaunchForm, args: string[], env: Record<string, string>) {
  const [command, ...before] = form.command(app);
  // `env` in the shebang finds node on PATH, as it would on a host or in a node image.
  const path = [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter);
  const child = spawn(command, [...before, ...args], { cwd: app, env: cleanEnv({ ...env, PATH: path }), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, exited, stderr: () => stderr };
}

const starts = async (log: string) => (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);

describe('launching naq for production: SIGTERM to the launched pid drains naq', () => {
  it.each(FORMS.map((f, i) => [f.name, i] as const))('%s', async (_name, i) => {
    const form = FORMS[i]!;
    const queue = `launch-${i}`;
    const log = join(await mkdtemp(join(tmpdir(), 'naq-launch-log-')), 'starts.log');
    const worker = launch(form, ['worker', '--handlers', HANDLERS, '--queue', queue, '--nats-url', server.url, '--log-level', 'info'], { NAQ_TEST_LOG: log });
    await until(() => worker.stderr().includes('all services running') || worker.child.exitCode !== null);
    expect(worker.child.exitCode, worker.stderr()).toBeNull();

    const naq = createNaq({ nats: { url: server.url } }, { logger: pino({ level: 'silent' }) });
    clients.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    const id = await naq.enqueue('sleepy', { ms: 1500 }, { queue });
    await until(async () => (await starts(log)).length === 1);

    // The pid a process manager or container runtime holds: nothing may stand in between.
    process.kill(worker.child.pid!, 'SIGTERM');
    const exit = await worker.exited;
    expect(exit, worker.stderr()).toEqual({ code: 0, signal: null });

    // Drained: the job in flight finished in the signalled process before it exited.
    const record = await naq.getJob(id);
    expect(record?.status).toBe('completed');
    expect(record?.result).toEqual({ pid: worker.child.pid });
    const order = ['SIGTERM: draining', `"msg":"bye"`].map((m) => worker.stderr().indexOf(m));
    expect(order[0], worker.stderr()).toBeGreaterThanOrEqual(0);
    expect(order[1]).toBeGreaterThan(order[0]!);
  });
});
