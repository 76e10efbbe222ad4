/**
 * The fault-injection scenario: real worker and scheduler processes on a real nats-server,
 * SIGKILLed while they work, the server itself SIGKILLed and restarted once, and bad input
 * published straight onto the job subjects. What it checks is what naq promises: at least
 * once (nothing lost; every duplicate execution traced to a kill), one job per fire time of
 * a schedule, poison ends in the dead letters with its reason, an oversized enqueue is
 * refused before it is sent.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { InvalidArgumentError } from '../src/core/errors.js';
import type { JobRecord } from '../src/model/job.js';
import { createNaq, type Naq } from '../src/naq.js';
import { classifyDuplicates, parseExecutions, type Execution, type Faults } from './analysis.js';
import { poisonOutcomeJobs, publishPoison, rawOversizedPublish, readDeadLetters, BIG_PAYLOAD_BYTES, type PoisonCase } from './poison.js';
import { cliPath, handlersPath, NaqProcess, repoRoot } from './processes.js';
import { startChaosServer, type ChaosServer } from './server.js';

export const QUEUE = 'chaos';
export const SCHED_QUEUE = 'chaos-sched';
export const SCHEDULE_ID = 'chaos-tick';
const JOB_PREFIX = 'job-';

/** The leader lease is short so a killed leader is replaced within the run. */
const LEADER = { ttlMs: 2000, renewMs: 500, retryMs: 250 };
/** How long the killed nats-server stays down: long enough that every client notices. */
const SERVER_DOWN_MS = 1000;
const READY_TIMEOUT_MS = 60_000;
/** Progress (jobs executed at least once) at which the server is killed: "in the middle". */
const SERVER_KILL_AT = 0.5;
/** Where in the enqueue order the poison goes, so workers meet it among real jobs. */
const POISON_AT = 0.25;
/** Beyond a job's own run time, how long its record write and ack can take under load. */
const OUTCOME_SLACK_MS = 1000;

export interface ChaosOptions {
  jobs: number;
  workers: number;
  concurrency: number;
  /** A random worker is SIGKILLed (and a new one started) about this often (±25%). */
  killEveryMs: number;
  /** SIGKILL the nats-server once in the middle and restart it on the same port and store. */
  restartServer: boolean;
  /** Two `naq scheduler` processes and an every-second schedule; the leader is killed once. */
  scheduler: boolean;
  /** Each job sleeps a random 0..durationMaxMs. */
  durationMaxMs: number;
  /** The workers' ack wait: how soon a killed worker's jobs come back. */
  ackWaitMs: number;
  log?: (line: string) => void;
  /** Publish the poison cases and check the dead letters (default true). */
  poison?: boolean;
  /**
   * Jobs whose handler misbehaves on purpose (returns, throws or reports what cannot be
   * stored, hangs past its timeout), mixed among the others (default: a tenth of `jobs`).
   */
  poisonOutcomes?: number;
  /** Keep killing until at least this many kills, even when the work is done (default 0). */
  minKills?: number;
  /** Never kill more than this many workers (default: keep killing until the work is done). */
  maxKills?: number;
  /** Spread the enqueue over this long, so faults meet a steady flow (default 0: all at once). */
  enqueueOverMs?: number;
  /** The whole run's budget; past it the run stops and reports what it has (default 10 min). */
  timeoutMs?: number;
  seed?: number;
  /** The server to run against (tests pass the harness's); default a private one. */
  startServer?: () => Promise<ChaosServer>;
  /** Keep the run directory (process logs, execution log) when a check fails (default true). */
  keepDirOnFailure?: boolean;
}

export interface Check {
  name: string;
  expected: string;
  got: string;
  ok: boolean;
}

export interface Crash {
  name: string;
  code: number | null;
  signal: string | null;
  tail: string;
}

export interface PoisonOutcome {
  label: string;
  jobId: string;
  published: string;
  expected: string;
  got: string;
  ok: boolean;
}

export interface ChaosResult {
  ok: boolean;
  seed: number;
  elapsedMs: number;
  jobs: number;
  completed: number;
  lost: number;
  lostIds: string[];
  executions: number;
  /** Executions beyond the first of each job. */
  duplicates: number;
  /** (worker kills + server kills × workers) × concurrency: the issue's bound, a server kill counted as killing every worker. */
  duplicateLimit: number;
  /** Duplicates that ran a delivery no newer than one already run (see DuplicateCauses.outOfOrder). */
  duplicatesOutOfOrder: number;
  /** Duplicates whose earlier execution died with its SIGKILLed worker. */
  duplicatesFromWorkerKills: number;
  /** Worker kills × concurrency: a killed worker can take at most its running jobs with it. */
  workerKillLimit: number;
  /** Duplicates whose earlier execution was in flight, or just acknowledged, when the server was SIGKILLed. */
  duplicatesFromServerRestart: number;
  /** Duplicates no fault explains. */
  duplicatesUnexplained: number;
  /** Re-executions at attempt 1: the server lost the delivery (or the job was enqueued twice). */
  reRunsAtAttempt1: number;
  /** Jobs whose completed record lists exactly one successful attempt. */
  recordedOnce: number;
  kills: number;
  workerRestarts: number;
  serverRestarts: number;
  leaderKills: number;
  crashes: Crash[];
  enqueueRetries: number;
  deadExpected: number;
  deadGot: number;
  deadForRealJobs: number;
  poison: PoisonOutcome[];
  /** Jobs whose handler misbehaved on purpose, how many ended recorded, how many of those failed. */
  poisonOutcomes: number;
  poisonOutcomesEnded: number;
  poisonOutcomesFailed: number;
  oversizedEnqueue: string;
  rawOversizedPublish: string;
  scheduleFires: number;
  /** Fire times that ran more than once for no fault's reason (a second job for one fire time). */
  scheduleDuplicates: number;
  /** Fire times that ran more than once around the server restart (redelivery or re-fire: indistinguishable). */
  scheduleRerunsInServerRestart: number;
  scheduleOnGrid: boolean;
  fireAfterFailover: boolean;
  notes: string[];
  checks: Check[];
  summary: string;
  dir: string | undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A small seeded generator, so a run's random choices can be replayed with its seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const o = {
    poison: true,
    poisonOutcomes: Math.round(options.jobs / 10),
    minKills: 0,
    maxKills: Infinity,
    enqueueOverMs: 0,
    timeoutMs: 10 * 60_000,
    keepDirOnFailure: true,
    ...options,
  };
  const t0 = Date.now();
  const deadline = t0 + o.timeoutMs;
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const say = (msg: string) => log(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const rand = mulberry32(seed);
  const root = repoRoot();
  const cli = cliPath(root);
  const handlers = handlersPath(root);
  const dir = await mkdtemp(join(tmpdir(), 'naq-chaos-'));
  const execLog = join(dir, 'executions.log');
  await writeFile(execLog, '');

  const procs: NaqProcess[] = [];
  const crashes: Crash[] = [];
  const notes: string[] = [];
  const counters = { kills: 0, workerRestarts: 0, serverRestarts: 0, leaderKills: 0, enqueueRetries: 0 };
  const faults: Faults = { workerKills: new Map(), serverDown: null };
  let server: ChaosServer | undefined;
  let producer: Naq | undefined;
  let nc: NatsConnection | undefined;
  let stopping = false;
  let serial = 0;
  let result: ChaosResult | undefined;

  const spawnProc = (role: NaqProcess['role']): NaqProcess => {
    const name = `${role}-${++serial}`;
    const url = server!.url;
    const args =
      role === 'scheduler'
        ? ['scheduler', '--nats-url', url, '--log-level', 'info']
        : // Firing stays with the two schedulers, whose leader the run kills (workers that fire
          // are covered by test/e2e/worker-process.test.ts).
          ['worker', '--no-fire-schedules', '--handlers', handlers, '--queue', role === 'worker' ? QUEUE : SCHED_QUEUE, '--concurrency', String(o.concurrency), '--nats-url', url, '--log-level', 'info'];
    const p = new NaqProcess({
      name,
      role,
      cli,
      args,
      logFile: join(dir, `${name}.log`),
      env: {
        NAQ_TEST_LOG: execLog,
        NAQ_WORKER__ACK_WAIT_MS: String(o.ackWaitMs),
        NAQ_SCHEDULER__LEADER_TTL_MS: String(LEADER.ttlMs),
        NAQ_SCHEDULER__RENEW_MS: String(LEADER.renewMs),
        NAQ_SCHEDULER__ELECTION_RETRY_MS: String(LEADER.retryMs),
      },
    });
    procs.push(p);
    // A process that dies without being killed is a finding; the run goes on with a new one.
    void p.exited.then(({ code, signal }) => {
      if (p.killedOnPurpose || stopping) return;
      crashes.push({ name, code, signal, tail: p.tail() });
      say(`${name} (pid ${p.pid}) EXITED ON ITS OWN (code ${code}, signal ${signal}); starting a replacement`);
      spawnProc(role);
    });
    return p;
  };
  const live = (role: NaqProcess['role']) => procs.filter((p) => p.role === role && !p.hasExited);
  const readExecutions = async () => parseExecutions(await readFile(execLog, 'utf8'));

  try {
    server = await (o.startServer ?? startChaosServer)();
    say(`nats-server at ${server.url}; run directory ${dir}; seed ${seed}`);
    // The first process to ensure the layout fixes the leader bucket's TTL for everyone, and
    // that is this one: it must carry the schedulers' lease settings, or failover waits out
    // the default 10 s lease instead of LEADER.ttlMs.
    producer = createNaq(
      {
        nats: { url: server.url },
        worker: { ackWaitMs: o.ackWaitMs },
        scheduler: { leaderTtlMs: LEADER.ttlMs, renewMs: LEADER.renewMs, electionRetryMs: LEADER.retryMs },
      },
      { logger: pino({ level: 'silent' }) },
    );
    await producer.start({ timeoutMs: 30_000 });
    nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const naq = producer;
    const raw = nc;

    // --- processes
    for (let i = 0; i < o.workers; i++) spawnProc('worker');
    if (o.scheduler) {
      spawnProc('tick-worker');
      spawnProc('scheduler');
      spawnProc('scheduler');
    }
    await Promise.all(procs.map((p) => p.whenReady(READY_TIMEOUT_MS)));
    say(`${procs.length} processes ready: ${procs.map((p) => `${p.name}=${p.pid}`).join(' ')}`);

    // --- size checks, before any fault: deterministic.
    let oversizedEnqueue: string;
    let oversizedOk: boolean;
    try {
      await naq.enqueue('sleepy', { ms: 0, pad: 'x'.repeat(BIG_PAYLOAD_BYTES) } as never, { queue: QUEUE, jobId: 'oversized-enqueue' });
      oversizedEnqueue = 'accepted';
      oversizedOk = false;
    } catch (error) {
      oversizedEnqueue = `${(error as Error).name}: ${errorText(error)}`;
      oversizedOk = error instanceof InvalidArgumentError && /over the \d+-byte limit/.test(errorText(error));
    }
    if ((await naq.getJob('oversized-enqueue')) !== null) {
      oversizedOk = false;
      oversizedEnqueue += ' (but a job oversized-enqueue exists)';
    }
    const rawOversized = await rawOversizedPublish(server.url, `naq.jobs.${QUEUE}.poison-raw-big`);
    say(`oversized enqueue: ${oversizedEnqueue}; raw 2 MiB PUB: ${rawOversized}`);

    // Fire times sit on the grid of the schedule's own createdAt.
    let scheduleCreatedAt = 0;
    if (o.scheduler) scheduleCreatedAt = (await naq.schedule(SCHEDULE_ID, { every: 1000 }, 'tick', null, { queue: SCHED_QUEUE })).createdAt;

    // --- producer: explicit ids, so a batch retried after an outage is deduplicated, not doubled.
    const ids = Array.from({ length: o.jobs }, (_, i) => `${JOB_PREFIX}${i}`);
    let poisonCases: PoisonCase[] | undefined;
    // Misbehaving handlers ride along with the real jobs, spread over the same enqueue.
    const badItems = poisonOutcomeJobs(o.poisonOutcomes, rand, QUEUE);
    const badIds = badItems.map((b) => b.opts.jobId);
    let producerDone = false;
    const retrying = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      for (;;) {
        try {
          return await fn();
        } catch (error) {
          counters.enqueueRetries++;
          if (Date.now() > deadline) throw error;
          say(`${what} failed (${errorText(error)}); retrying`);
          await sleep(500);
        }
      }
    };
    const producing = (async () => {
      const batch = o.enqueueOverMs > 0 ? 25 : 100;
      const perBatchMs = o.enqueueOverMs > 0 ? (o.enqueueOverMs * batch) / o.jobs : 0;
      for (let i = 0; i < o.jobs; i += batch) {
        const started = Date.now();
        const items = ids.slice(i, i + batch).map((jobId) => ({ name: 'sleepy', data: { ms: Math.floor(rand() * (o.durationMaxMs + 1)) }, opts: { queue: QUEUE, jobId } }));
        await retrying(`enqueue of jobs ${i}..${i + items.length - 1}`, () => naq.enqueueBulk(items));
        if (o.poison && !poisonCases && i + batch >= o.jobs * POISON_AT) {
          poisonCases = await publishPoison(raw, QUEUE);
          say(`poison published: ${poisonCases.map((c) => `${c.label}: ${c.published}`).join('; ')}`);
        }
        const badFrom = Math.floor((i / o.jobs) * badItems.length);
        const badTo = Math.floor(((i + items.length) / o.jobs) * badItems.length);
        if (badTo > badFrom) await retrying(`enqueue of poison outcomes ${badFrom}..${badTo - 1}`, () => naq.enqueueBulk(badItems.slice(badFrom, badTo)));
        const wait = perBatchMs - (Date.now() - started);
        if (wait > 0) await sleep(wait);
      }
      producerDone = true;
      say(`all ${o.jobs} jobs enqueued`);
    })();
    producing.catch(() => {});

    const executedJobs = async () => {
      let n = 0;
      for (const id of (await readExecutions()).keys()) if (id.startsWith(JOB_PREFIX)) n++;
      return n;
    };

    const leaderPid = async (): Promise<number | null> => {
      try {
        const kv = await new Kvm(raw).open('naq_leader');
        const e = await kv.get('scheduler');
        return e && e.operation === 'PUT' ? e.json<{ pid: number }>().pid : null;
      } catch {
        return null;
      }
    };

    // --- faults, one tick at a time: a worker kill, or the server restart; the leader kill
    // rides along on the tick after the server restart.
    let leaderKilledAt = 0;
    for (;;) {
      await sleep(o.killEveryMs * (0.75 + rand() * 0.5));
      if (Date.now() > deadline) {
        notes.push('the fault loop ran out of time');
        break;
      }
      const done = await executedJobs();
      const progress = done / o.jobs;
      const pct = `${(progress * 100).toFixed(0)}%`;
      const workDone = producerDone && done >= o.jobs;
      if (o.restartServer && !faults.serverDown && progress >= SERVER_KILL_AT) {
        const from = Date.now();
        await server.kill('SIGKILL');
        say(`progress ${pct}: SIGKILLed nats-server at ${from}`);
        await sleep(SERVER_DOWN_MS);
        await server.restart();
        faults.serverDown = { from, to: Date.now() };
        counters.serverRestarts++;
        say(`nats-server restarted on ${server.url} at ${faults.serverDown.to}`);
        continue;
      }
      if (counters.kills < o.maxKills && (!workDone || counters.kills < o.minKills)) {
        const workers = live('worker');
        const ready = workers.filter((p) => p.ready);
        const pool = ready.length ? ready : workers;
        const victim = pool[Math.floor(rand() * pool.length)];
        if (victim) {
          const at = Date.now();
          await victim.sigkill();
          faults.workerKills.set(victim.pid, at);
          counters.kills++;
          spawnProc('worker');
          counters.workerRestarts++;
          say(`progress ${pct}: SIGKILLed ${victim.name} (pid ${victim.pid}) at ${at}, kill ${counters.kills}; replacement started`);
        }
      }
      if (o.scheduler && !leaderKilledAt && (o.restartServer ? faults.serverDown !== null : progress >= SERVER_KILL_AT)) {
        const pid = await leaderPid();
        const leader = live('scheduler').find((p) => p.pid === pid);
        if (leader) {
          leaderKilledAt = Date.now();
          await leader.sigkill();
          counters.leaderKills++;
          spawnProc('scheduler');
          say(`SIGKILLed scheduler leader ${leader.name} (pid ${leader.pid}); replacement started`);
        }
      }
      const faultsDone = (!o.restartServer || faults.serverDown !== null) && (!o.scheduler || leaderKilledAt > 0) && counters.kills >= Math.min(o.minKills, o.maxKills);
      if (workDone && faultsDone) break;
    }
    await producing;
    say(`faults over: ${counters.kills} worker kills, ${counters.serverRestarts} server restarts, ${counters.leaderKills} leader kills; waiting for the queue to settle`);

    // --- settle: nothing pending, nothing unacknowledged, twice in a row.
    const settle = async (queue: string) => {
      let zeros = 0;
      while (Date.now() < deadline) {
        try {
          const s = await naq.queueStats(queue);
          zeros = s.pending === 0 && s.inFlight === 0 ? zeros + 1 : 0;
          if (zeros >= 2) return true;
        } catch {
          zeros = 0;
        }
        await sleep(500);
      }
      notes.push(`queue ${queue} did not settle in time`);
      return false;
    };
    await settle(QUEUE);

    const getRecord = async (id: string): Promise<JobRecord | null> => {
      for (let i = 0; ; i++) {
        try {
          return await naq.getJob(id);
        } catch (error) {
          if (i >= 5) throw error;
          await sleep(200);
        }
      }
    };
    const records = await mapLimit(ids, 64, getRecord);
    const lostIds = ids.filter((_, i) => records[i]?.status !== 'completed');
    const completed = o.jobs - lostIds.length;
    // The completing attempt is the one entry without an error; a second such entry means the
    // job ran again after its completion had been recorded.
    const successes = (r: JobRecord | null) => (r?.status === 'completed' ? r.attempts.filter((a) => !a.error).length : 0);
    const recordedOnce = records.filter((r) => successes(r) === 1).length;
    const twice = records.filter((r) => successes(r) > 1);
    if (twice.length) {
      notes.push(
        `${twice.length} completed records list more than one successful attempt (the job ran again after its completion was recorded), e.g. ${twice
          .slice(0, 2)
          .map((r) => `${r!.id} ${JSON.stringify(r!.attempts)}`)
          .join('; ')}`,
      );
    }

    // --- scheduler: a fire after the failover, then stop it and let its last jobs run.
    let fireAfterFailover = false;
    const tickEntries = (all: Map<string, Execution[]>) => [...all].filter(([id]) => id.startsWith(`${SCHEDULE_ID}-`));
    const fireTime = (id: string) => Number(id.slice(SCHEDULE_ID.length + 1));
    if (o.scheduler) {
      const after = Math.max(leaderKilledAt, faults.serverDown?.to ?? 0);
      while (Date.now() < deadline && !fireAfterFailover) {
        fireAfterFailover = after > 0 && tickEntries(await readExecutions()).some(([id]) => fireTime(id) > after);
        if (!fireAfterFailover) await sleep(250);
      }
      for (let i = 0; i < 10; i++) {
        try {
          await naq.removeSchedule(SCHEDULE_ID);
          break;
        } catch {
          await sleep(500);
        }
      }
      // A fire already under way when the schedule went still lands; let it run.
      await sleep(1500);
      await settle(SCHED_QUEUE);
    }

    // --- poison outcomes: each one ended recorded (completed or failed), none left running.
    const badRecords = await mapLimit(badIds, 64, getRecord);
    const badEnded = badRecords.filter((r) => r?.status === 'completed' || r?.status === 'failed').length;
    const badFailed = badRecords.filter((r) => r?.status === 'failed').length;
    const badUnended = badIds.filter((_, i) => badRecords[i]?.status !== 'completed' && badRecords[i]?.status !== 'failed');
    if (badUnended.length) notes.push(`poison outcomes not ended: ${badUnended.slice(0, 10).map((id) => `${id}=${badRecords[badIds.indexOf(id)]?.status ?? 'no record'}`).join(' ')}`);

    // --- poison: every stored case dead-lettered with its reason, and no real job among them.
    const storedPoison = (poisonCases ?? []).filter((c) => c.stored);
    let dead = await readDeadLetters(raw, QUEUE);
    while (Date.now() < deadline && storedPoison.some((c) => !dead.some((d) => d.jobId === c.jobId))) {
      await sleep(500);
      dead = await readDeadLetters(raw, QUEUE);
    }
    const realIds = new Set(ids);
    const deadForRealJobs = dead.filter((d) => d.jobId !== undefined && realIds.has(d.jobId)).length;
    const poison: PoisonOutcome[] = (poisonCases ?? []).map((c) => {
      const letters = dead.filter((d) => d.jobId === c.jobId);
      if (!c.reachesStream) {
        return {
          label: c.label,
          jobId: c.jobId,
          published: c.published,
          expected: 'refused at publish (max_payload 1 MiB)',
          got: c.stored ? `stored; ${letters.length} dead letters` : c.published,
          ok: !c.stored && letters.length === 0,
        };
      }
      const reasons = letters.map((d) => d.reason);
      return {
        label: c.label,
        jobId: c.jobId,
        published: c.published,
        expected: `dead: ${c.reason.source.replace(/^\^/, '')}`,
        got: letters.length === 0 ? (c.stored ? 'no dead letter' : c.published) : `${letters.length > 1 ? `${letters.length}x ` : ''}dead: ${reasons[0]}`,
        ok: c.stored && letters.length >= 1 && reasons.every((r) => c.reason.test(r)),
      };
    });
    const deadExpected = storedPoison.length;
    const deadGot = dead.length;

    // --- executions and where each duplicate came from
    const all = await readExecutions();
    const jobRuns = [...all].filter(([id]) => id.startsWith(JOB_PREFIX));
    const executions = jobRuns.reduce((n, [, runs]) => n + runs.length, 0);
    const duplicates = executions - jobRuns.length;
    const reRunsAtAttempt1 = jobRuns.reduce((n, [, runs]) => n + Math.max(0, runs.filter((r) => r.attempt === 1).length - 1), 0);
    const causes = classifyDuplicates(jobRuns, faults, o.durationMaxMs + OUTCOME_SLACK_MS);
    const workerKillLimit = counters.kills * o.concurrency;
    const duplicateLimit = (counters.kills + counters.serverRestarts * o.workers) * o.concurrency;
    if (causes.samples.length) notes.push(`duplicates run at an attempt already run, or unexplained, e.g. ${causes.samples.join(' | ')}`);
    if (reRunsAtAttempt1) notes.push(`${reRunsAtAttempt1} re-executions ran at attempt 1 again`);

    const ticks = tickEntries(all);
    const fires = ticks.map(([id]) => fireTime(id)).sort((a, b) => a - b);
    // The tick worker is never killed. A fire time run twice at attempt 1 is a second job for
    // it (or a delivery run twice, which looks the same from here): a duplicate. A later
    // attempt inside the server restart is a plain redelivery of the one job.
    const tickCauses = classifyDuplicates(ticks, faults, OUTCOME_SLACK_MS);
    const scheduleDuplicates = tickCauses.unexplained + tickCauses.workerKill + tickCauses.outOfOrder;
    const scheduleOnGrid = fires.every((t, i) => (t - scheduleCreatedAt) % 1000 === 0 && (i === 0 || t - fires[i - 1]! >= 1000));
    const gaps = fires.slice(1).map((t, i) => t - fires[i]!);
    if (o.scheduler) notes.push(`schedule gaps between fire times (ms): ${gaps.join(' ') || '-'}`);
    if (tickCauses.samples.length) notes.push(`schedule fire times run twice, e.g. ${tickCauses.samples.join(' | ')}`);

    const minKills = Math.max(1, Math.min(o.minKills, o.maxKills));
    const workerCrashes = crashes.filter((c) => c.name.startsWith('worker-')).length;
    const checks: Check[] = [
      { name: 'jobs completed', expected: String(o.jobs), got: String(completed), ok: completed === o.jobs },
      { name: 'lost', expected: '0', got: String(lostIds.length), ok: lostIds.length === 0 },
      { name: 'completion recorded once', expected: String(o.jobs), got: String(recordedOnce), ok: recordedOnce === o.jobs },
      { name: 'duplicate executions', expected: `<= ${duplicateLimit}`, got: `${duplicates} (${executions} executions)`, ok: duplicates <= duplicateLimit },
      { name: '  from worker kills', expected: `<= ${workerKillLimit}`, got: String(causes.workerKill), ok: causes.workerKill <= workerKillLimit },
      { name: '  from the server restart', expected: '-', got: String(causes.serverRestart), ok: true },
      { name: '  at an attempt already run', expected: '0', got: String(causes.outOfOrder), ok: causes.outOfOrder === 0 },
      { name: '  unexplained', expected: '0', got: String(causes.unexplained), ok: causes.unexplained === 0 },
      { name: 'worker kills', expected: `>= ${minKills}`, got: String(counters.kills), ok: counters.kills >= minKills },
      { name: 'worker restarts', expected: String(counters.kills + workerCrashes), got: String(counters.workerRestarts + workerCrashes), ok: true },
      { name: 'server restarts', expected: o.restartServer ? '1' : '0', got: String(counters.serverRestarts), ok: counters.serverRestarts === (o.restartServer ? 1 : 0) },
      { name: 'processes that died on their own', expected: '0', got: String(crashes.length), ok: crashes.length === 0 },
      {
        name: 'poison outcomes ended recorded',
        expected: String(badIds.length),
        got: `${badEnded} (${badFailed} failed, ${badEnded - badFailed} completed)`,
        ok: badEnded === badIds.length,
      },
      { name: 'oversized enqueue (2 MiB)', expected: 'rejected before sending', got: oversizedEnqueue, ok: oversizedOk },
      { name: 'raw 2 MiB PUB', expected: 'refused by nats-server', got: rawOversized, ok: /Maximum Payload/i.test(rawOversized) },
    ];
    if (o.poison) {
      checks.push({ name: 'dead letters', expected: String(deadExpected), got: String(deadGot), ok: deadGot >= deadExpected && poison.every((p) => p.ok) && deadForRealJobs === 0 });
      checks.push({ name: 'dead letters of real jobs', expected: '0', got: String(deadForRealJobs), ok: deadForRealJobs === 0 });
      for (const p of poison) checks.push({ name: `poison: ${p.label}`, expected: p.expected, got: p.got, ok: p.ok });
    }
    if (o.scheduler) {
      checks.push({ name: 'leader kills', expected: '1', got: String(counters.leaderKills), ok: counters.leaderKills === 1 });
      checks.push({ name: 'schedule fire times', expected: '>= 2', got: String(fires.length), ok: fires.length >= 2 });
      checks.push({ name: 'schedule duplicates', expected: '0', got: `${scheduleDuplicates}${tickCauses.serverRestart ? ` (+${tickCauses.serverRestart} re-run in the server restart)` : ''}`, ok: scheduleDuplicates === 0 });
      checks.push({ name: 'fire times on the 1 s grid', expected: 'yes', got: scheduleOnGrid ? 'yes' : `no: ${gaps.join(' ')}`, ok: scheduleOnGrid });
      checks.push({ name: 'fires after failover', expected: 'yes', got: fireAfterFailover ? 'yes' : 'no', ok: fireAfterFailover });
    }
    for (const c of crashes) notes.push(`${c.name} exited with code ${c.code} signal ${c.signal}:\n${c.tail}`);
    if (lostIds.length) notes.push(`lost: ${lostIds.slice(0, 20).map((id) => `${id}=${records[ids.indexOf(id)]?.status ?? 'no record'}`).join(' ')}${lostIds.length > 20 ? ' ...' : ''}`);
    if (counters.enqueueRetries) notes.push(`${counters.enqueueRetries} enqueue batches retried`);

    const ok = checks.every((c) => c.ok);
    result = {
      ok,
      seed,
      elapsedMs: Date.now() - t0,
      jobs: o.jobs,
      completed,
      lost: lostIds.length,
      lostIds,
      executions,
      duplicates,
      duplicateLimit,
      duplicatesOutOfOrder: causes.outOfOrder,
      duplicatesFromWorkerKills: causes.workerKill,
      workerKillLimit,
      duplicatesFromServerRestart: causes.serverRestart,
      duplicatesUnexplained: causes.unexplained,
      reRunsAtAttempt1,
      recordedOnce,
      kills: counters.kills,
      workerRestarts: counters.workerRestarts,
      serverRestarts: counters.serverRestarts,
      leaderKills: counters.leaderKills,
      crashes,
      enqueueRetries: counters.enqueueRetries,
      deadExpected,
      deadGot,
      deadForRealJobs,
      poison,
      poisonOutcomes: badIds.length,
      poisonOutcomesEnded: badEnded,
      poisonOutcomesFailed: badFailed,
      oversizedEnqueue,
      rawOversizedPublish: rawOversized,
      scheduleFires: fires.length,
      scheduleDuplicates,
      scheduleRerunsInServerRestart: tickCauses.serverRestart,
      scheduleOnGrid,
      fireAfterFailover,
      notes,
      checks,
      summary: '',
      dir: ok || !o.keepDirOnFailure ? undefined : dir,
    };
    result.summary = formatSummary(result, o);
    return result;
  } finally {
    stopping = true;
    await Promise.all(procs.map((p) => p.sigkill()));
    await producer?.stop().catch(() => {});
    await nc?.close().catch(() => {});
    await server?.cleanup().catch(() => {});
    if (!result?.dir) await rm(dir, { recursive: true, force: true });
  }
}

export function formatSummary(r: ChaosResult, o: Pick<ChaosOptions, 'jobs' | 'workers' | 'concurrency' | 'killEveryMs' | 'durationMaxMs' | 'ackWaitMs'>): string {
  const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 3)}...` : s);
  const rows = r.checks.map((c) => [c.name, clip(c.expected, 44), clip(c.got, 60), c.ok ? 'ok' : 'FAIL']);
  const head = ['check', 'expected', 'got', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [
    `naq chaos: ${o.jobs} jobs (0-${o.durationMaxMs} ms) on ${o.workers} workers x concurrency ${o.concurrency}, a worker kill every ~${o.killEveryMs} ms, ack wait ${o.ackWaitMs} ms, seed ${r.seed}, ${(r.elapsedMs / 1000).toFixed(1)} s`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `duplicate limit = (worker kills ${r.kills} + server kills ${r.serverRestarts} x workers ${o.workers}) x concurrency ${o.concurrency}`,
    ...r.notes.map((n) => `note: ${n}`),
    r.ok ? 'result: PASS' : `result: FAIL${r.dir ? ` (logs kept in ${r.dir})` : ''}`,
  ].join('\n');
}
