/**
 * The conformance kit against naq itself: the reference worker and producer pass it, and a
 * worker or producer that breaks the wire format fails it, with the check named. The Go
 * example (examples/go) is run against it in go-example.test.ts.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanEnv, until, startServer, stopAllServers, type TestServer } from '../support/harness.js';
import { CLI, ROOT } from '../support/paths.js';
import { killSpawned, runCli, spawned } from '../support/processes.js';

afterEach(killSpawned);
afterAll(stopAllServers);

const REFERENCE_HANDLERS = join(ROOT, 'dist/src/conformance/handlers.js');

interface Running {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Running {
  const child = spawned(process.execPath, [CLI, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out: () => out, exited };
}

/** A naq worker process on `queue`, with a short ack_wait so the kit checks the keep-alive too. */
async function startWorker(server: TestServer, queue: string, handlers: string): Promise<Running> {
  const w = start(['worker', '--queue', queue, '--handlers', handlers, '--nats-url', server.url, '--log-level', 'info'], { NAQ_WORKER__ACK_WAIT_MS: '2000' });
  await until(() => w.out().includes('all services running') || w.child.exitCode !== null);
  expect(w.child.exitCode, w.out()).toBeNull();
  return w;
}

async function tempModule(name: string, source: string): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), 'naq-conf-')), name);
  await writeFile(file, source);
  return file;
}

describe('the conformance kit', () => {
  it('naq conformance handlers prints the reference handlers module', async () => {
    const r = await runCli(['conformance', 'handlers']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(REFERENCE_HANDLERS);
  });

  it('passes naq worker --handlers "$(naq conformance handlers)", one line per check', async () => {
    const server = await startServer();
    await startWorker(server, 'cq', REFERENCE_HANDLERS);
    const r = await runCli(['conformance', 'worker', '--queue', 'cq', '--nats-url', server.url], {}, 60_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('ok   ')).length).toBe(15);
    expect(lines.some((l) => l.startsWith('FAIL') || l.startsWith('skip'))).toBe(false);
    expect(lines.at(-1)).toBe('15 passed, 0 failed');
    expect(r.stderr).toBe('');
  });

  it('fails a worker whose handlers break the contract, naming each broken check, and exits 1', async () => {
    const server = await startServer();
    // echo answers something else; failUntil never fails, so no retry happens.
    const broken = await tempModule(
      'broken.mjs',
      `import reference from ${JSON.stringify(REFERENCE_HANDLERS)};
export default {
  ...reference,
  'conformance.echo': (data) => ({ not: data }),
  'conformance.failUntil': (_data, ctx) => ({ attempt: ctx.attempt }),
};
`,
    );
    await startWorker(server, 'bq', broken);
    const r = await runCli(['conformance', 'worker', '--queue', 'bq', '--nats-url', server.url], {}, 60_000);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL success: the result is recorded, then the message acked: record \S+: result is \{"not":/m);
    expect(r.stdout).toMatch(/^FAIL retry, fixed backoff 300 ms: record \S+: result is \{"attempt":1\}, expected \{"attempt":3\}/m);
    expect(r.stdout).toMatch(/^ok   undecodable message/m);
    expect(r.stdout).toMatch(/\d+ passed, [1-9]\d* failed\n$/);
  });

  it('checks a producer: naq enqueueing the fixture set passes; bare-id Nats-Msg-Ids and a wrong queue field fail', async () => {
    const server = await startServer();
    const producerScript = await tempModule(
      'producer.mjs',
      `import { createNaq } from ${JSON.stringify(join(ROOT, 'dist/src/index.js'))};
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(join(ROOT, 'package.json'))});
const { connect } = await import(require.resolve('@nats-io/transport-node'));
const { jetstream } = await import(require.resolve('@nats-io/jetstream'));
const [url, queue, mode] = process.argv.slice(2);
const naq = createNaq({ nats: { url }, log: { level: 'warn' } }, { resolveDependencies: false });
await naq.start();
const ids = [];
for (let i = 0; i < 3; i++) ids.push(await naq.enqueue('conformance.echo', { n: i }, { queue }));
ids.push(await naq.enqueue('conformance.failUntil', { attempt: 2 }, { queue, attempts: 3, backoff: { type: 'fixed', delay: 100 } }));
ids.push(await naq.enqueue('conformance.fail', {}, { queue, attempts: 1 }));
ids.push(await naq.enqueue('conformance.echo', { after: ids[0] }, { queue, dependsOn: [ids[0]] }));
const fixed = 'fixed-' + Date.now();
await naq.enqueue('conformance.echo', { fixed: true }, { queue, jobId: fixed });
await naq.enqueue('conformance.echo', { fixed: true }, { queue, jobId: fixed });
ids.push(fixed);
if (mode === 'bad') {
  // What the old docs advised (Nats-Msg-Id: <id>), and a body whose queue is not its subject's.
  const nc = await connect({ servers: url });
  const js = jetstream(nc);
  const bare = 'bare-' + Date.now();
  await js.publish(\`naq.jobs.\${queue}.\${bare}\`, JSON.stringify({ v: 1, id: bare, name: 'conformance.echo', queue, data: null, attempts: 1, ts: Date.now() }), { msgID: bare });
  const wrong = 'wrong-' + Date.now();
  await js.publish(\`naq.jobs.\${queue}.\${wrong}\`, JSON.stringify({ v: 1, id: wrong, name: 'conformance.echo', queue: 'elsewhere', data: null, attempts: 1, ts: Date.now() }));
  ids.push(bare, wrong);
  await nc.close();
}
await naq.enqueue('conformance.done', { jobs: ids.length }, { queue });
await naq.stop();
`,
    );
    for (const mode of ['good', 'bad'] as const) {
      const queue = `p${mode}`;
      const kit = start(['conformance', 'producer', '--queue', queue, '--nats-url', server.url, '--wait', '30000']);
      await until(() => kit.out().includes('ready:') || kit.child.exitCode !== null);
      const producer = spawned(process.execPath, [producerScript, server.url, queue, mode], { env: cleanEnv(), stdio: 'inherit', cwd: ROOT });
      const producerExit = await new Promise<number | null>((r) => producer.on('exit', (code) => r(code)));
      expect(producerExit).toBe(0);
      const code = await kit.exited;
      const out = kit.out();
      if (mode === 'good') {
        expect(code, out).toBe(0);
        expect(out).toMatch(/^ok   conformance.done announced 7 jobs, and that many were seen/m);
        expect(out).toMatch(/^ok   job fixed-\d+: conformance.echo, completed with its data as result/m);
        expect(out).toMatch(/^ok   job \S+: conformance.echo, completed after its dependencies/m);
        expect(out).toMatch(/^ok   job \S+: conformance.fail, failed after 1 attempt\(s\), dead-lettered/m);
        expect(out).toMatch(/^8 passed, 0 failed$/m);
      } else {
        expect(code, out).toBe(1);
        expect(out).toMatch(/^FAIL job bare-\d+: naq.jobs.pbad.bare-\d+: Nats-Msg-Id is the bare job id/m);
        expect(out).toMatch(/^FAIL job wrong-\d+: naq.jobs.pbad.wrong-\d+: queue is "elsewhere", expected "pbad"/m);
        expect(out).toMatch(/^8 passed, 2 failed$/m);
      }
    }
  });

  it('one-shot commands print nothing on stderr when they succeed, even into a pipe closed early', async () => {
    const server = await startServer();
    const enq = await runCli(['enqueue', 'conformance.echo', '--data', '{"x":1}', '--nats-url', server.url]);
    expect(enq.code, enq.stderr).toBe(0);
    const id = enq.stdout.trim();
    for (let i = 0; i < 8; i++) {
      const r = await runCli(['job', id, '--nats-url', server.url]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
    }
    // A reader that stops early (`| head -1`) is not an error: no EPIPE stack on stderr.
    for (let i = 0; i < 5; i++) {
      const r = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" job ${id} --nats-url ${server.url} | head -1`], { env: cleanEnv(), encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(1);
      expect(r.stderr).toBe('');
    }
  });
});
