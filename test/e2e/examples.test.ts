// The examples are run as a user would run them: the compiled file under dist/examples, a
// real nats-server, the URL in NAQ_NATS_URL, and nothing else naq-related in the environment.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startServer, stopAllServers, type TestServer } from '../support/harness.js';
import { ROOT } from '../support/paths.js';

const EXAMPLES = resolve(ROOT, 'dist/examples');
const WAIT_MS = 20_000;
const children = new Set<ChildProcess>();

afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});
afterAll(stopAllServers);

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  // An NAQ_ variable left over from the developer's shell would change the example's config.
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NAQ_')));
  return { ...clean, NO_COLOR: '1', ...extra };
}

interface Line {
  text: string;
  /** When the test saw it, for checks on timing. */
  at: number;
}

interface Example {
  child: ChildProcess;
  lines: Line[];
  stdout(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once `check` holds on the stdout lines; fails with the output if the process exits first or time runs out. */
  waitFor<T>(what: string, check: (lines: Line[]) => T | undefined | false, timeoutMs?: number): Promise<T>;
}

function runExample(name: string, server: TestServer, extra: Record<string, string> = {}): Example {
  const child = spawn(process.execPath, [resolve(EXAMPLES, `${name}.js`)], {
    env: env({ NAQ_NATS_URL: server.url, ...extra }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines: Line[] = [];
  let partial = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  const wake = () => waiters.forEach((w) => w());
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    const at = Date.now();
    for (const text of parts) lines.push({ text, at });
    wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => {
      r({ code, signal });
      wake();
    }),
  );
  const stdout = () => lines.map((l) => l.text).join('\n');

  const waitFor = <T>(what: string, check: (lines: Line[]) => T | undefined | false, timeoutMs = WAIT_MS) =>
    new Promise<T>((resolveWait, reject) => {
      const fail = (why: string) => {
        done();
        reject(new Error(`${name}: ${why} while waiting for ${what}\n--- stdout\n${stdout()}\n--- stderr (tail)\n${stderr.slice(-4000)}`));
      };
      const attempt = () => {
        const found = check(lines);
        if (found !== undefined && found !== false) {
          done();
          resolveWait(found);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          fail(`exited (${child.exitCode ?? child.signalCode})`);
        }
      };
      const timer = setTimeout(() => fail(`no match in ${timeoutMs} ms`), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(attempt);
      };
      waiters.add(attempt);
      attempt();
    });

  return { child, lines, stdout, exited, waitFor };
}

const texts = (lines: Line[]) => lines.map((l) => l.text);

async function stopWithSigterm(ex: Example) {
  ex.child.kill('SIGTERM');
  return ex.exited;
}

describe('examples/http-server', () => {
  it('resizes synchronously, reports a failed job as 500, enqueues without waiting, serves health, drains on SIGTERM', async () => {
    const server = await startServer();
    const ex = runExample('http-server', server, { PORT: '0' });
    const port = await ex.waitFor('the listening line', (lines) => {
      for (const l of lines) {
        const m = /^listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(l.text);
        if (m) return Number(m[1]);
      }
      return undefined;
    });
    expect(port).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${port}`;
    const post = (path: string, body: unknown) =>
      fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const ok = await post('/resize', { width: 640 });
    expect(ok.status).toBe(200);
    const okBody = (await ok.json()) as { id: string; result: unknown };
    expect(okBody.id).toEqual(expect.any(String));
    expect(okBody.result).toEqual({ width: 640, height: 480 });

    const bad = await post('/resize', { width: 0 });
    expect(bad.status).toBe(500);
    const badBody = (await bad.json()) as { id: string; status: string; error: string };
    expect(badBody).toMatchObject({ status: 'failed', error: 'width must be a positive number, got 0' });
    // The failure is the job's, recorded like any other outcome, not a crash of the request.
    const badRecord = (await (await fetch(`${base}/jobs/${badBody.id}`)).json()) as { status: string; error: { message: string } };
    expect(badRecord.status).toBe('failed');
    expect(badRecord.error.message).toBe('width must be a positive number, got 0');

    const accepted = await post('/enqueue', { width: 320 });
    expect(accepted.status).toBe(202);
    const { id } = (await accepted.json()) as { id: string };
    const end = Date.now() + WAIT_MS;
    let record: { status: string; result?: unknown } | null = null;
    while (Date.now() < end) {
      const res = await fetch(`${base}/jobs/${id}`);
      // 404 is allowed only before the job's first record is readable.
      if (res.status === 200) {
        record = (await res.json()) as { status: string; result?: unknown };
        if (record.status === 'completed') break;
      } else {
        expect(res.status).toBe(404);
        await res.body?.cancel();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(record).toMatchObject({ status: 'completed', result: { width: 320, height: 240 } });

    const missing = await fetch(`${base}/jobs/no-such-job`);
    expect(missing.status).toBe(404);
    await missing.body?.cancel();

    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    const report = (await health.json()) as { healthy: boolean; state: string; actors: Record<string, { status: string }> };
    expect(report.healthy).toBe(true);
    expect(report.state).toBe('running');
    expect(Object.keys(report.actors)).toContain('worker:default');

    expect(await stopWithSigterm(ex)).toEqual({ code: 0, signal: null });
  });
});

describe('examples/worker-and-scheduler', () => {
  it('leads, runs the recurring schedule on its grid and the enqueueIn job after its delay, exits 0 on SIGTERM', async () => {
    const server = await startServer();
    const ex = runExample('worker-and-scheduler', server);
    await ex.waitFor('the leader line', (lines) => texts(lines).includes('leader'));
    const delayed = await ex.waitFor('the delayed job id', (lines) => {
      for (const l of lines) {
        const m = /^delayed (\S+)$/.exec(l.text);
        if (m) return { id: m[1]!, at: l.at };
      }
      return undefined;
    });

    const tick = /^tick (\S+) (\S+)$/;
    const ticks = await ex.waitFor('the delayed tick and two schedule ticks', (lines) => {
      const all = lines.flatMap((l) => {
        const m = tick.exec(l.text);
        return m ? [{ id: m[1]!, time: Date.parse(m[2]!), at: l.at }] : [];
      });
      const runs = all.filter((t) => t.id.startsWith('every-second-'));
      return all.some((t) => t.id === delayed.id) && runs.length >= 2 ? { all, runs } : undefined;
    });

    // Each tick line is `tick <id> <iso time>`, with a real time.
    for (const t of ticks.all) expect(Number.isFinite(t.time)).toBe(true);
    // The delayed job ran once, and not before its delay (the id is printed right after
    // enqueueIn returned, so 1500 ms minus generous slack for stdout and scheduling).
    const delayedTicks = ticks.all.filter((t) => t.id === delayed.id);
    expect(delayedTicks).toHaveLength(1);
    expect(delayedTicks[0]!.time - delayed.at).toBeGreaterThanOrEqual(1000);
    // Schedule runs are named by their fire time, which sits on a 1000 ms grid.
    const fireTimes = ticks.runs.map((t) => Number(t.id.slice('every-second-'.length))).sort((a, b) => a - b);
    expect(new Set(fireTimes).size).toBe(fireTimes.length);
    for (let i = 1; i < fireTimes.length; i++) expect((fireTimes[i]! - fireTimes[0]!) % 1000).toBe(0);

    expect(await stopWithSigterm(ex)).toEqual({ code: 0, signal: null });
    // One election, won once: no flapping while it ran.
    expect(texts(ex.lines).filter((t) => t === 'leader')).toHaveLength(1);
  });
});

describe('examples/host-machine', () => {
  it('follows the connection: online, offline when the server dies, online after its restart, closed on SIGTERM', async () => {
    const server = await startServer({ jetstream: false });
    const ex = runExample('host-machine', server);
    const count = (state: string) => (lines: Line[]) => texts(lines).filter((t) => t === `host: ${state}`).length;

    await ex.waitFor('host: online', (lines) => count('online')(lines) === 1);
    await server.kill('SIGKILL');
    await ex.waitFor('host: offline', (lines) => count('offline')(lines) === 1);
    await server.restart();
    await ex.waitFor('host: online again', (lines) => count('online')(lines) === 2);

    expect(await stopWithSigterm(ex)).toEqual({ code: 0, signal: null });
    expect(texts(ex.lines)).toEqual([
      'host: waitingForNats',
      'host: online',
      'host: offline',
      'host: online',
      'host: closing',
      'host: closed',
    ]);
  });
});
