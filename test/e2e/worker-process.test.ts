import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createNaq, type Naq } from '../../src/naq.js';
import { cleanEnv, elapse, until, startServer, stopAllServers, type TestServer } from '../support/harness.js';
import { CLI, fixture } from '../support/paths.js';
import { exitedWithOutput, killSpawned, runCli, spawned } from '../support/processes.js';
import { busiestWindow } from '../support/windows.js';

const HANDLERS = fixture('handlers.ts');
const clients: Naq[] = [];

afterEach(async () => {
  killSpawned();
  await Promise.all(clients.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

interface Proc {
  child: ChildProcess;
  exited: Promise<{ code: number | null; stderr: string; stdout: string }>;
  stderr: () => string;
}

function naqProcess(args: string[], extra: Record<string, string> = {}): Proc {
  const child = spawned(process.execPath, [CLI, ...args], { env: cleanEnv(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => (stdout += d));
  const exited = exitedWithOutput(child).then((code) => ({ code, stderr, stdout }));
  return { child, exited, stderr: () => stderr };
}

async function startWorker(server: TestServer, log: string, extra: Record<string, string> = {}) {
  const p = naqProcess(['worker', '--handlers', HANDLERS, '--nats-url', server.url, '--log-level', 'info'], {
    NAQ_TEST_LOG: log,
    NAQ_WORKER__ACK_WAIT_MS: '2000',
    ...extra,
  });
  await until(() => p.stderr().includes('all services running') || p.child.exitCode !== null);
  if (p.child.exitCode !== null) throw new Error(`worker exited early:\n${p.stderr()}`);
  return p;
}

async function client(server: TestServer, config: Record<string, unknown> = {}) {
  const naq = createNaq({ nats: { url: server.url }, ...config }, { logger: pino({ level: 'silent' }) });
  clients.push(naq);
  await naq.start({ timeoutMs: 10_000 });
  return naq;
}

const starts = async (log: string) => (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);

describe('worker processes', () => {
  it('a worker SIGKILLed mid-job loses nothing: another worker completes the job after ack_wait', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const a = await startWorker(server, log);
    const naq = await client(server);
    const id = await naq.enqueue('sleepy', { ms: 1500 });
    await until(async () => (await starts(log)).length === 1);
    a.child.kill('SIGKILL');
    await a.exited;
    const b = await startWorker(server, log);
    const result = await naq.waitFor<{ pid: number }>(id, { timeoutMs: 15_000 });
    expect(result.pid).toBe(b.child.pid);
    const lines = await starts(log);
    expect(lines).toEqual([`start ${id} ${a.child.pid} 1`, `start ${id} ${b.child.pid} 2`]);
    const record = (await naq.getJob(id))!;
    expect(record.status).toBe('completed');
  });

  it('drains on SIGTERM: running jobs finish, the heartbeat is removed, exit 0', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const w = await startWorker(server, log, { NAQ_WORKER__DRAIN_GRACE_MS: '5000', NAQ_WORKER__HEARTBEAT_MS: '200' });
    const naq = await client(server);
    const ids = await naq.enqueueBulk([0, 1, 2].map(() => ({ name: 'sleepy', data: { ms: 700 } })));
    await until(async () => (await starts(log)).length === 3);
    await until(async () => (await naq.listWorkers()).length === 1);
    w.child.kill('SIGTERM');
    const r = await w.exited;
    expect(r.code).toBe(0);
    for (const id of ids) expect((await naq.getJob(id))?.status).toBe('completed');
    expect(await naq.listWorkers()).toEqual([]);
  });

  it('gives unfinished jobs back at once when the drain grace runs out', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const w = await startWorker(server, log, { NAQ_WORKER__DRAIN_GRACE_MS: '200' });
    const naq = await client(server);
    const id = await naq.enqueue('sleepy', { ms: 60_000 });
    await until(async () => (await starts(log)).length === 1);
    const stoppedAt = Date.now();
    w.child.kill('SIGTERM');
    const r = await w.exited;
    expect(r.code).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(5000);
    // NAKed, not waiting out ack_wait: pending again right away, for the next worker.
    await until(async () => (await naq.queueStats('default')).pending === 1, 1500);
    expect((await naq.getJob(id))?.status).toBe('pending');
  });
});

describe('job CLI', () => {
  it('--metrics-port serves Prometheus metrics while the worker runs', async () => {
    const server = await startServer();
    const p = naqProcess(['worker', '--handlers', HANDLERS, '--nats-url', server.url, '--log-level', 'info', '--metrics-port', '0']);
    await until(() => /metrics: http:\/\/127\.0\.0\.1:\d+\/metrics/.test(p.stderr()) || p.child.exitCode !== null);
    const url = /metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(p.stderr())![1]!;
    const naq = await client(server);
    await naq.waitFor(await naq.enqueue('add', { a: 1, b: 2 }), { timeoutMs: 10_000 });
    const text = await (await fetch(url)).text();
    expect(text).toMatch(/^naq_connection_up 1$/m);
    expect(text).toMatch(/^naq_jobs_ended_total\{queue="default",name="add",outcome="completed"\} 1$/m);
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
  });

  it('enqueue --wait prints the result; a failing job exits 1 with its error; job / queue / workers show state', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    await startWorker(server, log, { NAQ_WORKER__HEARTBEAT_MS: '200' });
    const url = ['--nats-url', server.url];
    const ok = naqProcess(['enqueue', 'add', '--data', '{"a":20,"b":22}', '--wait', ...url]);
    const okr = await ok.exited;
    expect(okr.code).toBe(0);
    expect(okr.stdout.trim()).toBe('42');

    const bad = naqProcess(['enqueue', 'explode', '--attempts', '2', '--backoff', 'fixed:50', '--job-id', 'bad-job', '--wait', ...url]);
    const badr = await bad.exited;
    expect(badr.code).toBe(1);
    expect(badr.stderr).toContain('job bad-job failed: exploded on purpose');

    const show = await naqProcess(['job', 'bad-job', '--json', ...url]).exited;
    const record = JSON.parse(show.stdout);
    expect(record).toMatchObject({ id: 'bad-job', status: 'failed', maxAttempts: 2 });
    expect(record.attempts).toHaveLength(2);

    const queues = await naqProcess(['queue', 'ls', '--json', ...url]).exited;
    expect(JSON.parse(queues.stdout)).toEqual([{ queue: 'default', pending: 0, inFlight: 0, dead: 1, workers: 1, paused: false, limit: null }]);
    const workers = await naqProcess(['workers', '--json', ...url]).exited;
    expect(workers.code, workers.stderr).toBe(0);
    expect(JSON.parse(workers.stdout)[0]).toMatchObject({ queues: ['default'], processed: 1, failed: 1 });

    const retried = await naqProcess(['job', 'retry', 'bad-job', ...url]).exited;
    expect(retried.stdout.trim()).toBe('bad-job re-enqueued');

    const pending = await naqProcess(['enqueue', 'add', '--queue', 'nobody', '--job-id', 'p1', ...url]).exited;
    expect(pending.stdout.trim()).toBe('p1');
    const cancelled = await naqProcess(['job', 'cancel', 'p1', ...url]).exited;
    expect(cancelled.stdout.trim()).toBe('p1 cancelled');
    await naqProcess(['enqueue', 'add', '--queue', 'nobody', ...url]).exited;
    const purged = await naqProcess(['queue', 'purge', 'nobody', ...url]).exited;
    expect(purged.stdout.trim()).toBe('purged 1 jobs from nobody');

    const badArgs = await naqProcess(['enqueue', 'add', '--backoff', 'linear:5', ...url]).exited;
    expect(badArgs.code).toBe(2);
    expect(badArgs.stderr).toContain('invalid --backoff');
    const badData = await naqProcess(['enqueue', 'add', '--data', '{nope', ...url]).exited;
    expect(badData.code).toBe(2);
    expect(badData.stderr).toContain('invalid --data');
    const noHandlers = await naqProcess(['worker', ...url]).exited;
    expect(noHandlers.code).toBe(2);
    expect(noHandlers.stderr).toContain('--handlers');
  });
});

describe('delayed jobs with only workers up (no naq scheduler)', () => {
  // A short lease, so that the test sees a leader change within seconds.
  const FAST = { NAQ_SCHEDULER__LEADER_TTL_MS: '2000', NAQ_SCHEDULER__RENEW_MS: '500', NAQ_SCHEDULER__ELECTION_RETRY_MS: '200' };

  it('naq enqueue --delay runs on a naq worker; with two workers, SIGKILL of the leading one: every delayed job still fires once', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const workers = [await startWorker(server, log, FAST), await startWorker(server, log, FAST)];
    const leading = () => workers.find((w) => w.stderr().includes('elected scheduler leader'));
    await until(() => leading() !== undefined);

    // The trap of old: a delayed job from the CLI, and nothing but workers up.
    const enq = await runCli(['enqueue', 'add', '--data', '{"a":1,"b":2}', '--delay', '500', '--nats-url', server.url]);
    expect(enq.code, enq.stderr).toBe(0);
    const naq = await client(server);
    await expect(naq.waitFor(enq.stdout.trim(), { timeoutMs: 10_000 })).resolves.toBe(3);

    // 20 delayed jobs due over the next 4 s; the leader is killed after 1 s.
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await naq.enqueueIn(200 * (i + 1), 'add', { a: i, b: 0 }));
    await new Promise((r) => setTimeout(r, 1000));
    const killed = leading()!;
    killed.child.kill('SIGKILL');
    await killed.exited;
    const survivor = workers.find((w) => w !== killed)!;
    await until(() => survivor.stderr().includes('elected scheduler leader'), 10_000);
    for (const [i, id] of ids.entries()) await expect(naq.waitFor(id, { timeoutMs: 15_000 })).resolves.toBe(i);

    // Fired once: one first attempt per job (a second firing would be a second message, a
    // second attempt 1; a job the killed worker was running comes back as attempt 2).
    const lines = await starts(log);
    for (const id of ids) expect(lines.filter((l) => l.startsWith(`start ${id} `) && l.endsWith(' 1')), id).toHaveLength(1);
  });

  it('naq worker --no-fire-schedules leaves delayed jobs to a scheduler', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const w = naqProcess(['worker', '--no-fire-schedules', '--handlers', HANDLERS, '--nats-url', server.url, '--log-level', 'info'], { NAQ_TEST_LOG: log });
    await until(() => w.stderr().includes('all services running'));
    const naq = await client(server);
    const id = await naq.enqueueIn(100, 'add', { a: 2, b: 2 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await starts(log)).toEqual([]);
    expect(w.stderr()).not.toContain('elected scheduler leader');
    naqProcess(['scheduler', '--nats-url', server.url]);
    await expect(naq.waitFor(id, { timeoutMs: 15_000 })).resolves.toBe(4);
  });
});

describe('a rate limit across worker processes', () => {
  it('50 per second over 3 worker processes, one SIGKILLed midway: no one-second window holds more than 50 starts, every job runs', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const naq = await client(server);
    await naq.setQueueLimit('default', { max: 50, durationMs: 1000 });
    const workers = await Promise.all([startWorker(server, log), startWorker(server, log), startWorker(server, log)]);
    const ids = await naq.enqueueBulk(Array.from({ length: 200 }, () => ({ name: 'stamped', data: null })));
    await until(async () => (await starts(log)).length >= 75);
    workers[0]!.child.kill('SIGKILL');
    for (const id of ids) await naq.waitFor(id, { timeoutMs: 30_000 });
    const stamps = (await starts(log)).filter((l) => l.startsWith('stamp ')).map((l) => Number(l.split(' ')[3])).sort((a, b) => a - b);
    expect(new Set((await starts(log)).map((l) => l.split(' ')[1])).size).toBe(200);
    expect(busiestWindow(stamps, 1000)).toBeLessThanOrEqual(50);
    // 200 starts at 50 per second: three windows at least after the first.
    expect(stamps.at(-1)! - stamps[0]!).toBeGreaterThanOrEqual(3000);
  });
});

describe('dedupe windows across a worker SIGKILL', () => {
  const FAST = { NAQ_SCHEDULER__LEADER_TTL_MS: '2000', NAQ_SCHEDULER__RENEW_MS: '500', NAQ_SCHEDULER__ELECTION_RETRY_MS: '200' };

  /** A worker that leads the firing of delayed jobs, killed; what is left is in NATS only. */
  async function leaderThenKilled(server: TestServer, log: string) {
    const a = await startWorker(server, log, FAST);
    await until(() => a.stderr().includes('elected scheduler leader'));
    return {
      a,
      kill: async () => {
        a.child.kill('SIGKILL');
        await a.exited;
      },
    };
  }

  it('debounce: its worker SIGKILLed while the job is pending, the next worker runs it once, with the last data, ttl after the last enqueue', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const { kill } = await leaderThenKilled(server, log);
    const naq = await client(server);
    const dedupe = { key: 'digest.1', ttlMs: 1500, mode: 'debounce' as const };
    const id = await naq.enqueue('keep', { n: 1 }, { dedupe });
    await kill();
    expect(await naq.enqueue('keep', { n: 2 }, { dedupe })).toBe(id);
    // Another producer, which has seen nothing of it.
    const other = await client(server);
    const lastAt = Date.now();
    expect(await other.enqueue('keep', { n: 3 }, { dedupe })).toBe(id);
    const b = await startWorker(server, log, FAST);
    await expect(naq.waitFor(id, { timeoutMs: 15_000 })).resolves.toEqual({ n: 3 });
    expect((await naq.getJob(id))!.startedAt).toBeGreaterThanOrEqual(lastAt + dedupe.ttlMs);
    // A second firing would start within moments of the first.
    await elapse(1000);
    expect(await starts(log)).toEqual([`start ${id} ${b.child.pid} 1`]);
  });

  it('throttle: its worker SIGKILLed while the window\'s job is pending, enqueues are still dropped onto it; the next worker runs it once', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const { kill } = await leaderThenKilled(server, log);
    const naq = await client(server);
    const dedupe = { key: 'reminder.1', ttlMs: 60_000 };
    // Pending as a delayed job, so that the killed worker cannot have run it.
    const id = await naq.enqueueIn(1000, 'keep', { n: 1 }, { dedupe });
    await kill();
    const other = await client(server);
    expect(await other.enqueue('keep', { n: 2 }, { dedupe })).toBe(id);
    const b = await startWorker(server, log, FAST);
    await expect(naq.waitFor(id, { timeoutMs: 15_000 })).resolves.toEqual({ n: 1 });
    // The window outlives its job: still dropped, from a process that never saw it.
    const third = await client(server);
    expect(await third.enqueue('keep', { n: 3 }, { dedupe })).toBe(id);
    await elapse(1000);
    expect(await starts(log)).toEqual([`start ${id} ${b.child.pid} 1`]);
    expect((await naq.queueStats('default')).pending).toBe(0);
  });
});

describe('priorities across a worker SIGKILL', () => {
  it('a worker SIGKILLed with urgent jobs running and held: the next worker runs every job, never-delivered ones most urgent first', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const naq = await client(server);
    const level = new Map<string, number>();
    for (const priority of [10, 5, 1]) {
      const ids = await naq.enqueueBulk(Array.from({ length: 12 }, () => ({ name: 'sleepy', data: { ms: 100 }, opts: { priority } })));
      for (const id of ids) level.set(id, priority);
    }
    const a = await startWorker(server, log, { NAQ_WORKER__CONCURRENCY: '2' });
    await until(async () => (await starts(log)).length >= 4);
    a.child.kill('SIGKILL');
    await a.exited;
    const ranByA = (await starts(log)).map((l) => l.split(' ')[1]!);
    // Strict before the kill: the killed worker started only level-1 jobs.
    expect(ranByA.every((id) => level.get(id) === 1)).toBe(true);

    const b = await startWorker(server, log, { NAQ_WORKER__CONCURRENCY: '2' });
    for (const id of level.keys()) await naq.waitFor(id, { timeoutMs: 20_000 });
    const byB = (await starts(log)).map((l) => l.split(' ')).filter(([, , pid]) => pid === String(b.child.pid));
    // Every job ran; those the killed worker never had (attempt 1 here) started in level order.
    expect(new Set((await starts(log)).map((l) => l.split(' ')[1])).size).toBe(36);
    const fresh = byB.filter(([, , , attempt]) => attempt === '1').map(([, id]) => level.get(id!)!);
    expect(fresh).toEqual([...fresh].sort((x, y) => x - y));
    // At most two per lane were held by the killed worker (its cap at concurrency 2), besides those it ran.
    expect(fresh.length).toBeGreaterThanOrEqual(36 - ranByA.length - 2 * 3);
    expect(byB.filter(([, id]) => level.get(id!) === 10)).toHaveLength(12);
  });
});

describe('groups across a SIGKILL of the leading worker', () => {
  const FAST = { NAQ_SCHEDULER__LEADER_TTL_MS: '2000', NAQ_SCHEDULER__RENEW_MS: '500', NAQ_SCHEDULER__ELECTION_RETRY_MS: '200', NAQ_WORKER__CONCURRENCY: '4' };

  it('the worker releasing grouped jobs is killed: the other takes over, every job runs, no group ever runs more than its limit', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    const naq = await client(server);
    await naq.setGroupLimit('default', { concurrency: 2 });
    const ids = await naq.enqueueBulk(['g1', 'g2', 'g3', 'g4'].flatMap((group) => Array.from({ length: 4 }, () => ({ name: 'grouped', data: { group, ms: 400 }, opts: { group } }))));
    const workers = [await startWorker(server, log, FAST), await startWorker(server, log, FAST)];
    const leading = () => workers.find((w) => w.stderr().includes('elected scheduler leader'));
    await until(() => leading() !== undefined);
    // Jobs run on both workers (the spans are logged at their end).
    await until(async () => (await starts(log)).length >= 4);
    const killed = leading()!;
    killed.child.kill('SIGKILL');
    await killed.exited;
    for (const id of ids) await naq.waitFor(id, { timeoutMs: 30_000 });
    const spans = (await starts(log)).map((l) => l.split(' ')).filter(([kind]) => kind === 'span');
    // Every job finished somewhere (a job cut short by the kill ran again on the survivor).
    expect(new Set(spans.map(([, id]) => id))).toEqual(new Set(ids));
    for (const group of ['g1', 'g2', 'g3', 'g4']) {
      const edges = spans.filter(([, , , g]) => g === group).flatMap(([, , , , s, e]) => [[Number(s), 1], [Number(e), -1]] as const);
      edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let now = 0;
      let most = 0;
      for (const [, d] of edges) most = Math.max(most, (now += d));
      expect(most, group).toBeLessThanOrEqual(2);
    }
  });
});

describe('a batch across a SIGKILL of the leading worker', () => {
  const FAST = { NAQ_SCHEDULER__LEADER_TTL_MS: '2000', NAQ_SCHEDULER__RENEW_MS: '500', NAQ_SCHEDULER__ELECTION_RETRY_MS: '200', NAQ_WORKER__CONCURRENCY: '8' };

  it('5,000 jobs, the worker counting them killed midway: every job runs, the completion job runs once with the right counts', async () => {
    const server = await startServer();
    const log = join(await mkdtemp(join(tmpdir(), 'naq-w-')), 'starts.log');
    // The first process up creates the leader bucket, whose TTL is the lease the workers follow.
    const naq = await client(server, { scheduler: { leaderTtlMs: 2000 } });
    const workers = [await startWorker(server, log, FAST), await startWorker(server, log, FAST)];
    // Job 1500 has an id of our own: once it completed, about 1,500 have (they start in order).
    const jobs = Array.from({ length: 5000 }, (_, i) =>
      i % 500 === 7 ? { name: 'explode', data: null, opts: { attempts: 1 } } : { name: 'brief', data: {}, ...(i === 1500 ? { opts: { jobId: 'b-1500' } } : {}) },
    );
    const id = await naq.enqueueBatch(jobs, { onComplete: { name: 'batchDone' } });
    const leading = () => workers.find((w) => w.stderr().includes('elected scheduler leader'));
    await until(() => leading() !== undefined);
    await until(async () => (await naq.getJob('b-1500'))?.status === 'completed', 30_000);
    expect((await naq.getBatch(id)).completed).toBeLessThan(5000);
    const killed = leading()!;
    killed.child.kill('SIGKILL');
    await killed.exited;
    const summary = await naq.waitFor<{ total: number; completed: number; failed: number; failedIds: string[] }>(id, { timeoutMs: 60_000 });
    expect([summary.total, summary.completed, summary.failed, summary.failedIds.length]).toEqual([5000, 4990, 10, 10]);
    // Once: a moment later there is still one run, on the survivor.
    await elapse(1500);
    const runs = (await starts(log)).filter((l) => l.startsWith('batch '));
    expect(runs).toHaveLength(1);
    expect(runs[0]!.split(' ')[2]).not.toBe(String(killed.child.pid));
    expect(await naq.getBatch(id)).toMatchObject({ state: 'completed', completed: 4990, failed: 10, pending: 0 });
  }, 120_000);
});
