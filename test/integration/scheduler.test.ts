import { spawn, type ChildProcess } from 'node:child_process';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, RevisionMismatchError } from '../../src/core/errors.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { cleanEnv, connectTo, until, startServer, stopAllServers, type TestServer, elapse } from '../support/harness.js';
import { CLI } from '../support/paths.js';
import { exitedWithOutput } from '../support/processes.js';

const silent = pino({ level: 'silent' });
const running: Naq<any>[] = [];
const children = new Set<ChildProcess>();

afterEach(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  children.clear();
  await Promise.all(running.splice(0).map((n) => n.stop()));
});
afterAll(stopAllServers);

const FAST_LEADER = { leaderTtlMs: 2000, renewMs: 500, electionRetryMs: 250 };

/** One process running the scheduler and a worker that records when each job started. */
async function schedulerAndWorker(server: TestServer, roles: Array<'worker' | 'scheduler'> = ['worker', 'scheduler'], extra: Record<string, unknown> = {}) {
  const started = new Map<string, number[]>();
  const naq = createNaq(
    {
      nats: { url: server.url },
      roles,
      worker: { queues: ['default'], concurrency: 10 },
      scheduler: FAST_LEADER,
      supervisor: { stopTimeoutMs: 3000 },
      ...extra,
    },
    {
      logger: silent,
      handlers: {
        tick: async (_d: unknown, ctx) => {
          started.set(ctx.jobId, [...(started.get(ctx.jobId) ?? []), Date.now()]);
          return ctx.jobId;
        },
      },
    },
  );
  running.push(naq);
  await naq.start({ timeoutMs: 10_000 });
  return { naq, started };
}

function schedulerProcess(server: TestServer) {
  const child = spawn(process.execPath, [CLI, 'scheduler', '--nats-url', server.url, '--log-level', 'info'], {
    env: cleanEnv({
      NAQ_SCHEDULER__LEADER_TTL_MS: String(FAST_LEADER.leaderTtlMs),
      NAQ_SCHEDULER__RENEW_MS: String(FAST_LEADER.renewMs),
      NAQ_SCHEDULER__ELECTION_RETRY_MS: String(FAST_LEADER.electionRetryMs),
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const state = { log: '', leaderAt: 0 };
  child.stderr!.on('data', (d) => {
    state.log += d;
    if (!state.leaderAt && state.log.includes('elected scheduler leader')) state.leaderAt = Date.now();
  });
  return { child, state };
}

describe('scheduler', () => {
  it('enqueueIn and enqueueAt run no earlier than asked and within a second after', async () => {
    const server = await startServer();
    const { naq, started } = await schedulerAndWorker(server);
    await until(() => naq.isLeader());
    const t0 = Date.now();
    const inId = await naq.enqueueIn(800, 'tick', null);
    const atTime = Date.now() + 1200;
    const atId = await naq.enqueueAt(new Date(atTime), 'tick', null);
    // Until it fires, a delayed job is reported as such (it is a one-shot schedule, not a job message yet).
    expect(await naq.getJob(inId)).toMatchObject({ id: inId, status: 'delayed', name: 'tick' });
    await naq.waitFor(inId, { timeoutMs: 5000 });
    await naq.waitFor(atId, { timeoutMs: 5000 });
    const inStart = started.get(inId)![0]!;
    const atStart = started.get(atId)![0]!;
    expect(inStart - t0).toBeGreaterThanOrEqual(800);
    expect(inStart - (t0 + 800)).toBeLessThan(1000);
    expect(atStart).toBeGreaterThanOrEqual(atTime);
    expect(atStart - atTime).toBeLessThan(1000);
    // A fired one-shot leaves no schedule behind.
    expect(await naq.listSchedules()).toEqual([]);
  });

  it('fires an every-N schedule, honours repeat, and marks it completed', async () => {
    const server = await startServer();
    const { naq, started } = await schedulerAndWorker(server);
    const s = await naq.schedule('thrice', { every: 300 }, 'tick', null, { repeat: 3 });
    expect(s.status).toBe('active');
    await until(async () => (await naq.getSchedule('thrice'))?.status === 'completed', 10_000);
    await until(() => started.size === 3);
    const record = (await naq.getSchedule('thrice'))!;
    expect(record.runs).toBe(3);
    expect(record.nextRunAt).toBeNull();
    expect([...started.keys()].every((id) => id.startsWith('thrice-'))).toBe(true);
  });

  it('runs a cron schedule; pause stops it, resume continues', async () => {
    const server = await startServer();
    const { naq, started } = await schedulerAndWorker(server);
    await naq.schedule('each-second', { cron: '* * * * * *', tz: 'Europe/Paris' }, 'tick', null);
    await until(() => started.size >= 2, 5000);
    await naq.pauseSchedule('each-second');
    // A run fired just before the pause may still land; then nothing more for 1.5 s.
    await elapse(1200);
    const atPause = started.size;
    await elapse(1500);
    expect(started.size).toBe(atPause);
    await naq.resumeSchedule('each-second');
    await until(() => started.size >= atPause + 1, 5000);
    for (const [, times] of started) expect(times).toHaveLength(1);
  });

  it('an outage of the jobs stream, however long, does not fail a schedule: it fires again once the stream is back', async () => {
    const server = await startServer();
    // The scheduler alone: the runs it publishes are counted in the stream. A short operation
    // deadline, so each fire gives up quickly and the failures pile up.
    const { naq } = await schedulerAndWorker(server, ['scheduler'], { ops: { timeoutMs: 300 } });
    const nc = await connectTo(server);
    const jsm = await jetstreamManager(nc);
    const runs = async () => (await jsm.streams.info('NAQ_JOBS')).state.messages;
    await naq.schedule('steady', { every: 500 }, 'tick', null);
    await until(async () => (await runs()) >= 1, 10_000);
    // No stream for the runs' subjects (as while a cluster elects its leader): each fire fails
    // with no responders, well over maxFireFailures (5) times in 8 s of backoff.
    const { config } = await jsm.streams.info('NAQ_JOBS');
    await jsm.streams.delete('NAQ_JOBS');
    await elapse(8000);
    expect((await naq.getSchedule('steady'))?.status).toBe('active');
    await jsm.streams.add(config);
    await until(async () => (await runs()) >= 1, 20_000);
    expect((await naq.getSchedule('steady'))?.status).toBe('active');
  }, 60_000);

  it('rejects an invalid cron, time zone or period at schedule() time, naming the field', async () => {
    const server = await startServer();
    const naq = createNaq({ nats: { url: server.url } }, { logger: silent });
    running.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    await expect(naq.schedule('bad', { cron: '61 * * * *' }, 'tick', null)).rejects.toThrow(/invalid cron "61 \* \* \* \*"/);
    await expect(naq.schedule('bad', { cron: '* * * * *', tz: 'Mars/Olympus' }, 'tick', null)).rejects.toThrow(/invalid tz "Mars\/Olympus"/);
    await expect(naq.schedule('bad', { every: 0 }, 'tick', null)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await naq.listSchedules()).toEqual([]);
  });

  it('updates a schedule only at the revision it was read at', async () => {
    const server = await startServer();
    const naq = createNaq({ nats: { url: server.url } }, { logger: silent });
    running.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    await naq.schedule('s1', { every: 60_000 }, 'tick', { v: 1 });
    const read = (await naq.getSchedule('s1'))!;
    await naq.updateSchedule('s1', (s) => ({ ...s, data: { v: 2 } }), read.revision);
    await expect(naq.updateSchedule('s1', (s) => ({ ...s, data: { v: 3 } }), read.revision)).rejects.toBeInstanceOf(RevisionMismatchError);
    expect((await naq.getSchedule('s1'))!.data).toEqual({ v: 2 });
    expect(await naq.removeSchedule('s1')).toBe(true);
    expect(await naq.getSchedule('s1')).toBeNull();
  });

  it('isLeader() is true in exactly one of two embedded schedulers, and moves when the leader stops', async () => {
    const server = await startServer();
    const a = await schedulerAndWorker(server, ['scheduler']);
    const b = await schedulerAndWorker(server, ['scheduler']);
    await until(() => a.naq.isLeader() || b.naq.isLeader());
    const [leader, other] = a.naq.isLeader() ? [a.naq, b.naq] : [b.naq, a.naq];
    expect(other.isLeader()).toBe(false);
    await leader.stop();
    expect(leader.isLeader()).toBe(false);
    // The leader stepped down (deleted its key), so the other takes over at its next try.
    await until(() => other.isLeader(), 5000);
  });

  it('three scheduler processes elect exactly one leader; a new one takes over within TTL + a renew interval after SIGKILL', async () => {
    const server = await startServer();
    const procs = [schedulerProcess(server), schedulerProcess(server), schedulerProcess(server)];
    await until(() => procs.some((p) => p.state.leaderAt > 0));
    // Several election rounds pass: still exactly one.
    await elapse(1500);
    const leaders = procs.filter((p) => p.state.leaderAt > 0);
    expect(leaders).toHaveLength(1);
    const killedAt = Date.now();
    leaders[0]!.child.kill('SIGKILL');
    const rest = procs.filter((p) => p !== leaders[0]);
    await until(() => rest.some((p) => p.state.leaderAt > 0), 10_000);
    const next = rest.filter((p) => p.state.leaderAt > 0);
    expect(next).toHaveLength(1);
    expect(next[0]!.state.leaderAt - killedAt).toBeLessThanOrEqual(FAST_LEADER.leaderTtlMs + FAST_LEADER.renewMs + 500);
  });

  it('an every-second schedule produces one job per fire time, even when the leader is killed in the middle', async () => {
    const server = await startServer();
    // The worker leaves firing to the two scheduler processes, one of which is killed.
    const { naq, started } = await schedulerAndWorker(server, ['worker'], { worker: { queues: ['default'], concurrency: 10, fireSchedules: false } });
    const procs = [schedulerProcess(server), schedulerProcess(server)];
    await until(() => procs.some((p) => p.state.leaderAt > 0));
    // 15 s in all, the leader SIGKILLed half way.
    await naq.schedule('heartbeat', { every: 1000 }, 'tick', null);
    await elapse(7500);
    procs.find((p) => p.state.leaderAt > 0)!.child.kill('SIGKILL');
    await elapse(7500);
    await naq.removeSchedule('heartbeat');
    // A fire already under way when the schedule went still lands: let it run.
    await elapse(500);
    const fireTimes = [...started.keys()].map((id) => Number(id.slice('heartbeat-'.length))).sort((a, b) => a - b);
    // No run twice: every fire time maps to one job, and each job ran once.
    expect(new Set(fireTimes).size).toBe(fireTimes.length);
    for (const [, times] of started) expect(times).toHaveLength(1);
    // Fire times are whole periods apart; the failover gap skips ticks, it never repeats one.
    for (let i = 1; i < fireTimes.length; i++) {
      const gap = fireTimes[i]! - fireTimes[i - 1]!;
      expect(gap % 1000).toBe(0);
      expect(gap).toBeGreaterThanOrEqual(1000);
    }
    expect(fireTimes.length).toBeGreaterThanOrEqual(10);
  });

  it('schedule CLI: add, ls, show, pause, resume, rm; enqueue --delay; bad input exits 2 naming it', async () => {
    const server = await startServer();
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((res) => {
        const child = spawn(process.execPath, [CLI, ...args, '--nats-url', server.url], { env: cleanEnv({}), stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (d) => (stdout += d));
        child.stderr!.on('data', (d) => (stderr += d));
        void exitedWithOutput(child).then((code) => res({ code, stdout, stderr }));
      });
    const add = await run(['schedule', 'add', 'nightly', 'report', '--cron', '0 3 * * *', '--tz', 'Europe/Paris', '--data', '{"x":1}']);
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/^nightly next run \d{4}-\d\d-\d\dT0[12]:00:00.000Z/);
    const ls = await run(['schedule', 'ls']);
    expect(ls.stdout).toContain('nightly\tactive\tcron 0 3 * * * Europe/Paris\treport\tdefault');
    expect(JSON.parse((await run(['schedule', 'show', 'nightly'])).stdout)).toMatchObject({ id: 'nightly', data: { x: 1 }, status: 'active' });
    expect((await run(['schedule', 'pause', 'nightly'])).stdout.trim()).toBe('nightly paused');
    expect((await run(['schedule', 'resume', 'nightly'])).stdout).toMatch(/^nightly active, next run/);
    expect((await run(['schedule', 'rm', 'nightly'])).stdout.trim()).toBe('removed nightly');
    expect((await run(['schedule', 'rm', 'nightly'])).code).toBe(1);

    const delayed = await run(['enqueue', 'tick', '--delay', '60000', '--job-id', 'later-1']);
    expect(delayed.stdout.trim()).toBe('later-1');
    expect(JSON.parse((await run(['schedule', 'show', 'later-1'])).stdout)).toMatchObject({ kind: 'at', name: 'tick', status: 'active' });

    const badCron = await run(['schedule', 'add', 'x', 'report', '--cron', 'nope']);
    expect(badCron.code).toBe(2);
    expect(badCron.stderr).toContain('invalid --cron');
    const both = await run(['schedule', 'add', 'x', 'report', '--cron', '* * * * *', '--every', '5']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of --cron or --every');
    const badAt = await run(['enqueue', 'tick', '--at', 'tomorrow-ish']);
    expect(badAt.code).toBe(2);
    expect(badAt.stderr).toContain('invalid --at');
  });
});
