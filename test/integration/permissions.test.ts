import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { JobFailedError } from '../../src/actors/jobs/reads.js';
import { AsyncPublisher } from '../../src/actors/nats/publisher.js';
import type { NaqConfigInput } from '../../src/config/index.js';
import { PermissionDeniedError } from '../../src/core/errors.js';
import { createNaq, type CreateNaqOptions, type Naq } from '../../src/naq.js';
import { isTransient, withRetry } from '../../src/core/retry.js';
import { logPermissionDenied, PERMISSION_LOG_WINDOW_MS, toPermissionDenied } from '../../src/core/permissions.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { PermissionViolationError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { cleanEnv, connectTo, startServer, stopAllServers, until, type TestServer } from '../support/harness.js';
import {
  authorizationBlock,
  parseBlock,
  passwordVariable,
  permissionsFromTables,
  readSecurityDoc,
  renderBlock,
  withPrefix,
  type Allow,
} from '../support/fixtures/permissions-doc.js';
import { CLI, fixture } from '../support/paths.js';
import { runCli, type CliResult } from '../support/processes.js';

/**
 * Every naq role runs with exactly the permissions docs/security.md gives it (the block is
 * read from the page), and does its whole job without one refusal from the server. Then, with
 * a permission taken away, the failure is a PermissionDeniedError naming the subject, logged
 * at error level, at once — never a publish timeout or a job redelivered for ever.
 */

const HANDLERS = fixture('permissions-handlers.mjs');
const doc = readSecurityDoc();
const documented = permissionsFromTables(doc);
const USERS = ['naq-admin', 'naq-producer', 'naq-worker', 'naq-scheduler', 'naq-reader'];

// The block reads passwords from the server's environment; the servers inherit this one.
for (const user of [...USERS, 'worker-noack', 'worker-norecord', 'no-inbox']) process.env[passwordVariable(user)] = `pw-${user}-7f3a`;
const password = (user: string) => process.env[passwordVariable(user)]!;

/**
 * The same timings for every process, as in one deployment: a bucket's settings come from
 * whoever created it, and a user that may not change them would otherwise log the drift.
 */
const TUNING = {
  worker: { heartbeatMs: 500, ackWaitMs: 2000 },
  scheduler: { leaderTtlMs: 3000, renewMs: 1000, electionRetryMs: 300 },
  jobs: { activeAfterMs: 100 },
} satisfies NaqConfigInput;
const TUNING_ENV = {
  NAQ_WORKER__HEARTBEAT_MS: '500',
  NAQ_WORKER__ACK_WAIT_MS: '2000',
  NAQ_SCHEDULER__LEADER_TTL_MS: '3000',
  NAQ_SCHEDULER__RENEW_MS: '1000',
  NAQ_SCHEDULER__ELECTION_RETRY_MS: '300',
  NAQ_JOBS__ACTIVE_AFTER_MS: '100',
};

interface LogLine {
  level: number;
  msg: string;
  subject?: string;
  code?: string;
  err?: { type?: string; code?: string; message?: string; subject?: string };
  [key: string]: unknown;
}

/** A logger whose lines the test can read. */
function memoryLogger() {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const running: Naq[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  await Promise.allSettled(running.splice(0).map((n) => n.stop()));
  await stopAllServers();
});

function naqAs(server: TestServer, user: string, input: NaqConfigInput = {}, options: CreateNaqOptions = {}) {
  const log = memoryLogger();
  const naq = createNaq(
    {
      ...input,
      nats: { url: server.url, user, password: password(user) },
      worker: { ...TUNING.worker, ...input.worker },
      scheduler: { ...TUNING.scheduler, ...input.scheduler },
      jobs: { ...TUNING.jobs, ...input.jobs },
    },
    { logger: log.logger, ...options },
  );
  running.push(naq);
  return Object.assign(naq, { lines: log.lines });
}

/** The server's own account of refusals (`Publish Violation - User "u", Subject "s"`). */
function violations(server: TestServer, user: string): string[] {
  return server
    .recentLog()
    .filter((l) => /Violation/.test(l) && l.includes(`User "${user}"`))
    .map((l) => /Subject "([^"]*)"/.exec(l)?.[1] ?? l);
}

function cli(server: TestServer, user: string, args: string[], timeoutMs = 30_000): Promise<CliResult> {
  return runCli([...args, '--nats-url', server.url], { NAQ_NATS_USER: user, NAQ_NATS_PASSWORD: password(user), ...TUNING_ENV }, timeoutMs);
}

/** Resolves with what `promise` gave, or with `timedOut` after `ms`: a bounded wait that names what did not happen. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timed out'> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<'timed out'>((r) => (timer = setTimeout(() => r('timed out'), ms)))]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const calls = { echo: 0, boom: 0, slow: 0, upstream: 0 };
const handlers = {
  echo: async (data: unknown) => {
    calls.echo++;
    return data;
  },
  boom: async () => {
    calls.boom++;
    throw new Error('boom');
  },
  // Longer than ack_wait: done without a redelivery only if working() gets through.
  slow: async () => {
    calls.slow++;
    await sleep(TUNING.worker.ackWaitMs + 1500);
    return 'slow done';
  },
  // Told to slow down once: the queue is held (a write to its settings) and the job comes back.
  upstream: async (_data: unknown, ctx: { rateLimit(ms: number): never }) => {
    if (calls.upstream++ === 0) ctx.rateLimit(200);
    return 'upstream done';
  },
};

/** What the client gives a request whose subject the server refused. */
function refusedRequest(subject: string, operation: 'publish' | 'subscription' = 'publish') {
  const text = `Permissions Violation for ${operation === 'publish' ? 'Publish' : 'Subscription'} to "${subject}"`;
  return new RequestError(text, { cause: new PermissionViolationError(text, operation, subject) });
}

describe('permission errors, without a server', () => {
  it('a refusal anywhere in the cause chain is a PermissionDeniedError naming the subject, and never transient', () => {
    // A subject with "timeout" in it must not pass for a timeout.
    const error = refusedRequest('$KV.timeout_jobs.a');
    expect(isTransient(error)).toBe(false);
    expect(toPermissionDenied(error)).toMatchObject({ code: 'PERMISSION_DENIED', operation: 'publish', subject: '$KV.timeout_jobs.a', cause: error });
    expect(toPermissionDenied(refusedRequest('_INBOX.x.*', 'subscription'))).toMatchObject({ operation: 'subscribe', subject: '_INBOX.x.*' });
    const denied = new PermissionDeniedError('publish', 'naq.jobs.q.1');
    expect(toPermissionDenied(new Error('wrapped', { cause: denied }))).toBe(denied);
    expect(toPermissionDenied(new TimeoutError())).toBeUndefined();
    expect(isTransient(new TimeoutError())).toBe(true);
  });

  it('withRetry gives up at the first refusal instead of retrying until its deadline', async () => {
    let attempts = 0;
    const started = Date.now();
    const error = await withRetry('get job', { timeoutMs: 20_000, initialDelayMs: 10, maxDelayMs: 10 }, async () => {
      attempts++;
      throw refusedRequest('$JS.API.DIRECT.GET.KV_naq_jobs.$KV.naq_jobs.a');
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionDeniedError);
    expect(error).toMatchObject({ subject: '$JS.API.DIRECT.GET.KV_naq_jobs.$KV.naq_jobs.a' });
    expect(attempts).toBe(1);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('the log names the subject at error level at once, and folds a burst into one summary line', () => {
    vi.useFakeTimers();
    try {
      const { logger, lines } = memoryLogger();
      const report = logPermissionDenied(logger);
      report(new PermissionDeniedError('publish', '$JS.ACK.NAQ_JOBS.naq-q.1.1.1.1.0'), { rejected: 0 });
      expect(lines).toMatchObject([{ level: 50, code: 'PERMISSION_DENIED', subject: '$JS.ACK.NAQ_JOBS.naq-q.1.1.1.1.0' }]);
      for (let n = 2; n <= 50; n++) report(new PermissionDeniedError('publish', `$JS.ACK.NAQ_JOBS.naq-q.${n}.1.1.1.0`), { rejected: 1 });
      expect(lines).toHaveLength(1);
      vi.advanceTimersByTime(PERMISSION_LOG_WINDOW_MS);
      expect(lines).toHaveLength(2);
      expect(lines[1]).toMatchObject({ level: 50, repeated: 49, rejected: 49, subject: '$JS.ACK.NAQ_JOBS.naq-q.50.1.1.1.0' });
      expect(lines[1]!.msg).toMatch(/^49 more NATS permission refusals/);
      // A quiet window later, the next refusal is logged at once again.
      vi.advanceTimersByTime(PERMISSION_LOG_WINDOW_MS);
      report(new PermissionDeniedError('subscribe', 'naq.cancel.q'), { rejected: 0 });
      expect(lines).toHaveLength(3);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('docs/security.md', () => {
  it('lists every role, and its group tables and its authorization block give each user the same subjects', () => {
    expect([...documented.keys()].sort()).toEqual([...USERS].sort());
    const block = parseBlock(authorizationBlock(doc));
    expect([...block.keys()].sort()).toEqual([...USERS].sort());
    for (const [user, allow] of documented) {
      const inBlock = block.get(user)!;
      expect(new Set(inBlock.publish), `${user} publish`).toEqual(new Set(allow.publish));
      expect(new Set(inBlock.subscribe), `${user} subscribe`).toEqual(new Set(allow.subscribe));
      expect(inBlock.publish.length, `${user}: a subject listed twice`).toBe(new Set(inBlock.publish).size);
    }
    // No role but the admin gets a wildcard over everything.
    for (const user of USERS.filter((u) => u !== 'naq-admin')) {
      const allow = documented.get(user)!;
      expect([...allow.publish, ...allow.subscribe].filter((s) => s === '>' || s === '$JS.API.>' || s === '$JS.>' || s === '$KV.>')).toEqual([]);
    }
  });
});

describe('each role with exactly the documented permissions', () => {
  let server: TestServer;
  let worker: ReturnType<typeof naqAs>;
  let producer: ReturnType<typeof naqAs>;
  const ids: Record<string, string> = {};

  it('a worker creates the layout on an empty server; with a producer, jobs complete, retry, dead-letter, wait on dependencies, get cancelled', async () => {
    // The literal block from the page: if it is not valid server config, nothing starts.
    server = await startServer({ configText: authorizationBlock(doc) });

    worker = naqAs(server, 'naq-worker', { roles: ['worker'] }, { handlers });
    await worker.start({ timeoutMs: 20_000 });
    producer = naqAs(server, 'naq-producer');
    await producer.start({ timeoutMs: 20_000 });

    ids.ok = await producer.enqueue('echo', { n: 1 });
    expect(await producer.waitFor(ids.ok, { timeoutMs: 15_000 })).toEqual({ n: 1 });

    // Retried once (a NAK with its backoff), then dead-lettered.
    ids.boom = await producer.enqueue('boom', null, { attempts: 2, backoff: { type: 'fixed', delay: 100 } });
    const failed = await producer.waitFor(ids.boom, { timeoutMs: 15_000 }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(JobFailedError);
    const boomRecord = await producer.getJob(ids.boom);
    expect(boomRecord?.attempts.map((a) => a.n)).toEqual([1, 2]);
    expect(boomRecord?.deadSeq).toBeGreaterThan(0);
    expect((await producer.queueStats('default')).dead).toBe(1);

    // Runs past ack_wait: completes on its first delivery only because working() is allowed.
    ids.slow = await producer.enqueue('slow', null);
    const dependent = await producer.enqueue('echo', { n: 2 }, { dependsOn: [ids.ok, ids.slow] });
    expect(await producer.waitFor(ids.slow, { timeoutMs: 15_000 })).toBe('slow done');
    expect((await producer.getJob(ids.slow))?.attempts.map((a) => a.n)).toEqual([1]);
    expect(calls.slow).toBe(1);
    expect(await producer.waitFor(dependent, { timeoutMs: 15_000 })).toEqual({ n: 2 });

    const [bulkA, bulkB] = await producer.enqueueBulk([
      { name: 'echo', data: 'a' },
      { name: 'echo', data: 'b', opts: { jobId: 'bulk-b' } },
    ]);
    expect(await producer.waitFor(bulkA!, { timeoutMs: 15_000 })).toBe('a');
    expect(await producer.waitFor(bulkB!, { timeoutMs: 15_000 })).toBe('b');

    // A queue nobody serves keeps its job pending: read by id, then cancelled.
    ids.parked = await producer.enqueue('echo', 'never', { queue: 'parked' });
    expect((await producer.getJob(ids.parked))?.status).toBe('pending');
    expect(await producer.cancel(ids.parked)).toMatchObject({ status: 'cancelled' });
    expect((await producer.getJob(ids.parked))?.status).toBe('cancelled');
    const waiting = await producer.enqueue('echo', 'later', { dependsOn: ['never-enqueued'] });
    expect((await producer.getJob(waiting))?.status).toBe('waiting');
    expect(await producer.cancel(waiting)).toMatchObject({ status: 'cancelled' });
    // Another pending one, for the read-only user to find.
    ids.pending = await producer.enqueue('echo', 'for the reader', { queue: 'parked' });

    // A flow (its parent released by the leading worker's tracker) and a batch with a job
    // cancelled while pending (the producer tells the batch).
    const flow = await producer.enqueueFlow({ name: 'echo', data: 'parent', children: [{ name: 'echo', data: 'child' }] });
    expect(await producer.waitFor(flow.id, { timeoutMs: 15_000 })).toBe('parent');
    ids.flow = flow.id;
    ids.batch = await producer.enqueueBatch([{ name: 'echo', data: 1 }, { name: 'echo', data: 2, opts: { queue: 'parked', jobId: 'batch-parked' } }], { onComplete: { name: 'echo', data: 'batch done' } });
    expect(await producer.cancel('batch-parked')).toMatchObject({ status: 'cancelled' });
    expect(await producer.waitFor(ids.batch, { timeoutMs: 15_000 })).toBe('batch done');
    // One that stays open (a job on a queue nobody serves), for the read-only user to count.
    ids.openBatch = await producer.enqueueBatch([{ name: 'echo', data: 3 }, { name: 'echo', data: 4, opts: { queue: 'unserved' } }], { onComplete: { name: 'echo' } });
    await until(async () => (await producer.getBatch(ids.openBatch!)).completed === 1, 15_000);

    // Re-run from the dead letters: it fails again and is dead-lettered anew.
    expect(await producer.retryDead(ids.boom)).toEqual({ id: ids.boom });
    await until(async () => {
      const r = await producer.getJob(ids.boom!);
      return r?.status === 'failed' && r.deadSeq !== boomRecord?.deadSeq;
    }, 15_000);

    // Bulk retry by filter, as the producer: it fails again and is dead-lettered anew.
    const deadBefore = (await producer.getJob(ids.boom))!.deadSeq;
    expect(await producer.retryJobs({ queue: 'default', state: 'dead', name: 'boom' })).toMatchObject({ retried: 1 });
    await until(async () => {
      const r = await producer.getJob(ids.boom!);
      return r?.status === 'failed' && r.deadSeq !== deadBefore;
    }, 15_000);

    // Heartbeats land in the workers bucket.
    await until(async () => (await producer.listWorkers()).some((w) => w.queues.includes('default')), 10_000);

    // A rate-limited queue (the worker takes starts from the rates bucket), and a handler that
    // holds the queue.
    expect(await producer.setQueueLimit('default', { max: 100, durationMs: 1000 })).toMatchObject({ limit: { max: 100, durationMs: 1000 } });
    const limited = await producer.enqueue('upstream', null);
    expect(await producer.waitFor(limited, { timeoutMs: 15_000 })).toBe('upstream done');
    expect(await producer.getJob(limited)).toMatchObject({ deferred: 1, attempts: [{ n: 1 }] });
    await producer.setQueueLimit('default', null);

    // The worker fires delayed jobs itself (worker.fireSchedules, on by default) as the leader.
    await until(() => worker.isLeader(), 15_000);
    const later = await producer.enqueueIn(300, 'echo', { later: true });
    expect(await producer.waitFor(later, { timeoutMs: 15_000 })).toEqual({ later: true });

    // Dedupe windows: a throttled key (its window read and opened), a debounced one (its job
    // moved by a second enqueue, then claimed and fired by the leading worker).
    const throttled = await producer.enqueue('echo', { n: 1 }, { dedupe: { key: 'perm.t', ttlMs: 60_000 } });
    expect(await producer.enqueue('echo', { n: 2 }, { dedupe: { key: 'perm.t', ttlMs: 60_000 } })).toBe(throttled);
    expect(await producer.waitFor(throttled, { timeoutMs: 15_000 })).toEqual({ n: 1 });
    const debounce = { key: 'perm.d', ttlMs: 300, mode: 'debounce' as const };
    const debounced = await producer.enqueue('echo', { n: 1 }, { dedupe: debounce });
    expect(await producer.enqueue('echo', { n: 2 }, { dedupe: debounce })).toBe(debounced);
    expect(await producer.waitFor(debounced, { timeoutMs: 15_000 })).toEqual({ n: 2 });

    // Priorities (a lane of its own) and groups (released by the leading worker, within a
    // group limit; the worker reports each grouped job's outcome).
    const urgent = await producer.enqueue('echo', { urgent: true }, { priority: 1 });
    expect(await producer.waitFor(urgent, { timeoutMs: 15_000 })).toEqual({ urgent: true });
    await producer.setGroupLimit('default', { concurrency: 1 });
    const grouped = await Promise.all([1, 2].map((n) => producer.enqueue('echo', { n }, { group: 'tenant-1' })));
    for (const id of grouped) expect(await producer.waitFor(id, { timeoutMs: 15_000 })).toMatchObject({ n: expect.any(Number) });
    await producer.setGroupLimit('default', null);

    expect(violations(server, 'naq-worker')).toEqual([]);
    expect(violations(server, 'naq-producer')).toEqual([]);
    for (const n of [worker, producer]) expect(n.lines.filter((l) => l.level >= 50)).toEqual([]);
  }, 90_000);

  it('two schedulers: one wins the leadership, the other stands by; schedules and delayed jobs fire', async () => {
    // The leading worker steps down for one that leaves firing to the schedulers.
    await worker.stop();
    worker = naqAs(server, 'naq-worker', { roles: ['worker'], worker: { fireSchedules: false } }, { handlers });
    await worker.start({ timeoutMs: 20_000 });
    const first = naqAs(server, 'naq-scheduler', { roles: ['scheduler'] });
    const second = naqAs(server, 'naq-scheduler', { roles: ['scheduler'] });
    await Promise.all([first.start({ timeoutMs: 20_000 }), second.start({ timeoutMs: 20_000 })]);
    await until(() => first.isLeader() || second.isLeader(), 15_000);
    // The follower keeps trying the lease (and reading it) for a while.
    await sleep(TUNING.scheduler.electionRetryMs * 3);
    expect([first.isLeader(), second.isLeader()].filter(Boolean)).toHaveLength(1);

    await producer.schedule('tick', { every: 400 }, 'echo', { tick: true }, { repeat: 2 });
    await until(async () => (await producer.getSchedule('tick'))?.runs === 2, 15_000);
    const at = await producer.enqueueIn(300, 'echo', { at: true });
    expect(await producer.waitFor(at, { timeoutMs: 15_000 })).toEqual({ at: true });
    // The leading scheduler releases grouped jobs.
    const grouped = await producer.enqueue('echo', { grouped: true }, { group: 'tenant-2' });
    expect(await producer.waitFor(grouped, { timeoutMs: 15_000 })).toEqual({ grouped: true });
    // ... and the parents of flows.
    const flow = await producer.enqueueFlow({ name: 'echo', data: 'by the scheduler', children: [{ name: 'echo', data: 1 }] });
    expect(await producer.waitFor(flow.id, { timeoutMs: 15_000 })).toBe('by the scheduler');

    expect(violations(server, 'naq-scheduler')).toEqual([]);
    for (const n of [first, second]) expect(n.lines.filter((l) => l.level >= 50)).toEqual([]);
  }, 60_000);

  it('the read-only user reads jobs, queues, workers, schedules, events and streams; a write fails at once with a PermissionDeniedError', async () => {
    const reader = naqAs(server, 'naq-reader', { jobs: { publishTimeoutMs: 30_000 } }, { services: ['streams', 'kv', 'events', 'jobs'] });
    await reader.start({ timeoutMs: 20_000 });

    expect(await reader.getJob(ids.ok!)).toMatchObject({ status: 'completed', result: { n: 1 } });
    expect(await reader.getJob(ids.pending!)).toMatchObject({ status: 'pending' });
    // Listings of every kind of source: the index, the dead letters, the jobs stream, the buckets.
    expect((await reader.listJobs({ state: 'completed', limit: 1000 })).jobs.map((j) => j.id)).toContain(ids.ok);
    expect((await reader.listJobs({ state: 'failed' })).jobs.map((j) => j.id)).toEqual([ids.boom]);
    expect((await reader.listJobs({ state: 'dead' })).jobs.map((j) => j.id)).toEqual([ids.boom]);
    expect((await reader.listJobs({ state: 'cancelled' })).jobs.map((j) => j.id)).toEqual(expect.arrayContaining([ids.parked]));
    expect((await reader.listJobs({ queue: 'parked', state: 'pending' })).jobs.map((j) => j.id)).toEqual([ids.pending]);
    expect((await reader.listJobs({ limit: 5 })).jobs).toHaveLength(5);
    expect(await reader.jobData(ids.pending!)).toEqual({ data: 'for the reader' });
    expect((await reader.getFlow(ids.flow!)).children!.map((c) => c.state)).toEqual(['completed']);
    expect(await reader.getBatch(ids.batch!)).toMatchObject({ state: 'completed', total: 2, completed: 1, failed: 1, failedIds: ['batch-parked'] });
    expect(await reader.getBatch(ids.openBatch!)).toMatchObject({ state: 'running', total: 2, completed: 1, pending: 1 });
    expect(await reader.jobData(ids.boom!)).toEqual({ data: null });
    expect((await reader.listQueues()).map((q) => q.queue)).toEqual(expect.arrayContaining(['default', 'parked']));
    expect((await reader.listWorkers()).length).toBeGreaterThan(0);
    expect((await reader.listSchedules()).map((s) => s.id)).toContain('tick');
    expect(await reader.getSchedule('tick')).toMatchObject({ runs: 2 });
    const story = await reader.events.history({ jobId: ids.ok! });
    expect(story.map((e) => e.type)).toEqual(expect.arrayContaining(['job.enqueued', 'job.started', 'job.completed']));
    expect((await reader.events.stats({ since: 0 })).total).toBeGreaterThan(0);
    const tail = await reader.events.subscribe({ queue: 'default' });
    let tailed = '';
    const next = (async () => {
      for await (const e of tail) if (e.type === 'job.completed' && e.jobId === tailed) return e;
      return undefined;
    })();
    tailed = await producer.enqueue('echo', 'tailed');
    expect(await within(next, 15_000)).toMatchObject({ type: 'job.completed', jobId: tailed });
    tail.stop();
    expect((await reader.streams.list()).map((s) => s.config.name)).toEqual(expect.arrayContaining(['NAQ_JOBS', 'NAQ_EVENTS']));
    expect((await reader.streams.info('NAQ_JOBS')).config.name).toBe('NAQ_JOBS');
    expect(violations(server, 'naq-reader')).toEqual([]);

    // Writes: refused by the server, reported at once as what they are.
    const started = Date.now();
    const enqueued = await reader.enqueue('echo', 'nope').catch((e: unknown) => e);
    expect(enqueued).toBeInstanceOf(PermissionDeniedError);
    expect(enqueued).toMatchObject({ code: 'PERMISSION_DENIED', operation: 'publish', subject: expect.stringMatching(/^naq\.jobs\.default\./) });
    // A publish timeout would take jobs.publishTimeoutMs (30 s here).
    expect(Date.now() - started).toBeLessThan(10_000);
    const scheduled = await reader.schedule('nope', { every: 1000 }, 'echo', null).catch((e: unknown) => e);
    expect(scheduled).toBeInstanceOf(PermissionDeniedError);
    expect(scheduled).toMatchObject({ subject: '$KV.naq_schedules.nope' });
    const cancelled = await reader.cancel(ids.pending!).catch((e: unknown) => e);
    // The first write of a cancel is removing the pending message: refused, it ends the cancel.
    expect(cancelled).toMatchObject({ code: 'PERMISSION_DENIED', subject: '$JS.API.STREAM.MSG.DELETE.NAQ_JOBS' });
    // Each refusal is an error in the log, naming the subject.
    await until(() => reader.lines.some((l) => l.level === 50 && l.code === 'PERMISSION_DENIED' && /^naq\.jobs\.default\./.test(l.subject ?? '')), 5000);
    expect(reader.lines.filter((l) => l.level === 50).map((l) => l.msg).join('\n')).toContain('may not publish to "naq.jobs.default.');
    expect(violations(server, 'naq-reader').length).toBeGreaterThan(0);
    expect(violations(server, 'naq-reader').every((s) => /^naq\.jobs\.|^\$KV\.naq_schedules\.|^\$KV\.naq_jobs\.|^\$JS\.API\.STREAM\.MSG\.DELETE\.NAQ_JOBS$/.test(s))).toBe(true);
    expect((await reader.getJob(ids.pending!))?.status).toBe('pending');
  }, 60_000);

  it('a read-only user whose config wants other stream settings starts anyway, with a warning naming the setting, both values and the refused update', async () => {
    const reader = naqAs(server, 'naq-reader', { events: { maxAgeMs: 3_600_000 }, jobs: { resultTtlMs: 60_000 } }, { services: ['streams', 'kv', 'events', 'jobs'] });
    await reader.start({ timeoutMs: 20_000 });
    expect(await reader.getJob(ids.ok!)).toMatchObject({ status: 'completed' });
    const warnings = reader.lines.filter((l) => l.level === 40);
    for (const [stream, setting] of [
      ['NAQ_EVENTS', 'max_age'],
      ['KV_naq_jobs', 'max_age'],
    ]) {
      const warning = warnings.find((l) => l.stream === stream && l.setting === setting);
      expect(warning, JSON.stringify(warnings)).toMatchObject({ want: expect.any(Number), have: expect.any(Number) });
      expect(warning!.msg).toContain(`${stream}: ${setting} is`);
      expect(warning!.err).toMatchObject({ subject: `$JS.API.STREAM.UPDATE.${stream}` });
    }
  });

  it('the read-only CLI commands work with the read-only user; naq enqueue exits 1 naming the refused subject', async () => {
    const reads = await Promise.all([
      cli(server, 'naq-reader', ['job', ids.ok!, '--json']),
      cli(server, 'naq-reader', ['queue', 'ls', '--json']),
      cli(server, 'naq-reader', ['workers', '--json']),
      cli(server, 'naq-reader', ['schedule', 'ls', '--json']),
      cli(server, 'naq-reader', ['schedule', 'show', 'tick']),
      cli(server, 'naq-reader', ['events', 'history', '--job', ids.ok!, '--json']),
      cli(server, 'naq-reader', ['events', 'stats', '--json']),
      cli(server, 'naq-reader', ['streams', 'ls']),
      cli(server, 'naq-reader', ['streams', 'info', 'NAQ_EVENTS']),
      cli(server, 'naq-reader', ['jobs', 'ls', '--state', 'dead', '--json']),
    ]);
    for (const r of reads) expect(r, r.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(reads[0]!.stdout)).toMatchObject({ id: ids.ok, status: 'completed' });
    expect(JSON.parse(reads[3]!.stdout).map((s: { id: string }) => s.id)).toContain('tick');
    expect(reads[7]!.stdout).toContain('NAQ_JOBS');
    expect(JSON.parse(reads[9]!.stdout).jobs.map((j: { id: string }) => j.id)).toEqual([ids.boom]);

    const write = await cli(server, 'naq-reader', ['enqueue', 'echo', '--data', '"x"']);
    expect(write.code).toBe(1);
    expect(write.stderr).toMatch(/may not publish to "naq\.jobs\.default\.[^"]+"/);
    expect(write.stderr).toMatch(/"level":50.*PERMISSION_DENIED/);
  }, 60_000);
});

describe('a missing permission fails loudly and at once', () => {
  let server: TestServer;
  let producer: ReturnType<typeof naqAs>;

  /** The documented worker without one subject. */
  const workerWithout = (subject: string): Allow => {
    const allow = documented.get('naq-worker')!;
    expect(allow.publish).toContain(subject);
    return { ...allow, publish: allow.publish.filter((s) => s !== subject) };
  };

  it('setup: a producer with the documented permissions creates the layout on an empty server', async () => {
    const users = new Map<string, Allow>([
      ['naq-producer', documented.get('naq-producer')!],
      ['worker-noack', workerWithout('$JS.ACK.NAQ_JOBS.>')],
      ['worker-norecord', workerWithout('$KV.naq_jobs.>')],
      ['no-inbox', { publish: documented.get('naq-producer')!.publish, subscribe: ['naq.none'] }],
    ]);
    server = await startServer({ configText: renderBlock(users) });
    producer = naqAs(server, 'naq-producer');
    await producer.start({ timeoutMs: 20_000 });
    expect((await producer.streams.list()).map((s) => s.config.name).sort()).toEqual(
      ['KV_naq_dedupe', 'KV_naq_flows', 'KV_naq_jobs', 'KV_naq_leader', 'KV_naq_queues', 'KV_naq_rates', 'KV_naq_schedules', 'KV_naq_waiting', 'KV_naq_workers', 'NAQ_DEAD', 'NAQ_EVENTS', 'NAQ_FLOWS', 'NAQ_INDEX', 'NAQ_JOBS'].sort(),
    );
    expect(violations(server, 'naq-producer')).toEqual([]);
  }, 30_000);

  it('a publish to a refused subject, and a JetStream request, reject at once with PermissionDeniedError; so does every write once the ack inbox is refused', async () => {
    const nc = await connectTo(server, { user: 'worker-norecord', pass: password('worker-norecord') });
    const reported: PermissionDeniedError[] = [];
    const publisher = new AsyncPublisher(nc, { timeoutMs: 30_000, onPermissionError: (e) => reported.push(e) });
    const results = await Promise.allSettled([
      publisher.publish('$KV.naq_jobs.a', '{}'),
      publisher.publish('naq.dead.default', '{}'),
      publisher.publish('$KV.naq_jobs.a', '{}'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(PermissionDeniedError);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ subject: '$KV.naq_jobs.a', operation: 'publish' });
    expect(publisher.pending).toBe(0);
    expect(reported.map((e) => e.subject)).toContain('$KV.naq_jobs.a');

    // A JetStream API request the user may not make: not retried until the deadline.
    const jsm = await jetstreamManager(nc, { timeout: 2000 });
    const started = Date.now();
    const purge = await withRetry('purge', { timeoutMs: 20_000, initialDelayMs: 50, maxDelayMs: 500 }, () => jsm.streams.purge('NAQ_JOBS')).catch((e: unknown) => e);
    expect(purge).toBeInstanceOf(PermissionDeniedError);
    expect(purge).toMatchObject({ subject: '$JS.API.STREAM.PURGE.NAQ_JOBS', operation: 'publish' });
    expect(Date.now() - started).toBeLessThan(5000);
    publisher.close();

    // No subscribe on _INBOX.>: no ack can ever come back.
    const blind = await connectTo(server, { user: 'no-inbox', pass: password('no-inbox') });
    const blindPublisher = new AsyncPublisher(blind, { timeoutMs: 30_000 });
    const first = await blindPublisher.publish('naq.events.default', '{}').catch((e: unknown) => e);
    expect(first).toBeInstanceOf(PermissionDeniedError);
    expect(first).toMatchObject({ operation: 'subscribe', subject: expect.stringMatching(/^_INBOX\..+\.\*$/) });
    const later = await blindPublisher.publish('naq.events.default', '{}').catch((e: unknown) => e);
    expect(later).toBe(first);
    blindPublisher.close();
  }, 30_000);

  it('a user without _INBOX.> cannot start naq: it fails naming the refused inbox, not after a timeout', async () => {
    const blind = naqAs(server, 'no-inbox', { supervisor: { maxRestarts: 1, restartDelayMs: 50 } });
    const error = await within(blind.start({ timeoutMs: 25_000 }).catch((e: unknown) => e as Error), 20_000);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/may not subscribe to "_INBOX\./);
  }, 30_000);

  it('a worker that may not write job records: the refusal names $KV.naq_jobs.<id> at once, and the worker fails instead of running the job again and again', async () => {
    const before = calls.echo;
    const worker = naqAs(
      server,
      'worker-norecord',
      { roles: ['worker'], jobs: { publishTimeoutMs: 30_000 }, supervisor: { maxRestarts: 1, restartDelayMs: 100 } },
      { handlers },
    );
    await worker.start({ timeoutMs: 20_000 });
    const id = await producer.enqueue('echo', 'unrecordable');
    const subject = `$KV.naq_jobs.${id}`;

    // Logged as an error naming the subject, as a permission refusal: not a publish timeout.
    await until(() => worker.lines.some((l) => l.level === 50 && l.subject === subject), 10_000);
    const line = worker.lines.find((l) => l.level === 50 && l.subject === subject)!;
    expect(line).toMatchObject({ code: 'PERMISSION_DENIED', err: { type: 'PermissionDeniedError' } });
    expect(line.msg).toContain(`may not publish to "${subject}"`);
    expect(worker.lines.filter((l) => JSON.stringify(l).includes(subject) && JSON.stringify(l).includes('TIMEOUT'))).toEqual([]);
    expect(violations(server, 'worker-norecord')).toContain(subject);

    // Loud, not endless: the worker stops (queue-worker.ts wiring) and the process fails.
    const output = await within(worker.done, 20_000);
    expect(output, 'the worker kept running (and redelivering) the job whose record it may not write').not.toBe('timed out');
    expect(output).toMatchObject({ status: 'failed', failure: { error: { code: 'PERMISSION_DENIED' } } });
    expect(JSON.stringify(output)).toContain('$KV.naq_jobs.');
    expect(calls.echo - before).toBeLessThanOrEqual(2);
  }, 60_000);

  it('a worker that may not ack: the refused $JS.ACK subject is logged as an error at once, and the worker process exits 1', async () => {
    const child = spawn(process.execPath, [CLI, 'worker', '--handlers', HANDLERS, '--queue', 'acks', '--nats-url', server.url], {
      env: cleanEnv({
        NAQ_NATS_USER: 'worker-noack',
        NAQ_NATS_PASSWORD: password('worker-noack'),
        NAQ_SUPERVISOR__MAX_RESTARTS: '1',
        NAQ_SUPERVISOR__RESTART_DELAY_MS: '100',
        ...TUNING_ENV,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await until(() => /worker handlers loaded/.test(stderr) || child.exitCode !== null, 20_000);
    await until(async () => (await producer.listWorkers()).some((w) => w.queues.includes('acks')), 20_000);

    const id = await producer.enqueue('echo', 'unackable', { queue: 'acks' });
    // The outcome is recorded; only the ack is refused.
    expect(await producer.waitFor(id, { timeoutMs: 15_000 })).toBe('unackable');
    await until(() => /"level":50[^\n]*\$JS\.ACK\.NAQ_JOBS\.naq-acks\./.test(stderr), 10_000);
    const line = stderr.split('\n').find((l) => /"level":50/.test(l) && l.includes('$JS.ACK.NAQ_JOBS.naq-acks.'))!;
    expect(JSON.parse(line)).toMatchObject({ code: 'PERMISSION_DENIED', operation: 'publish' });
    // The server's own line may reach us a moment after the client's error did.
    await until(() => violations(server, 'worker-noack').some((s) => s.startsWith('$JS.ACK.NAQ_JOBS.naq-acks.')), 10_000);

    // Loud, not endless: a worker that cannot ack stops (queue-worker.ts wiring) and the process fails.
    const code = await within(exited, 20_000);
    const refusals = stderr.split('\n').filter((l) => l.includes('$JS.ACK.NAQ_JOBS.naq-acks.')).length;
    expect(code, `the worker kept running without being able to ack (${refusals} log lines about refused acks so far)`).toBe(1);
  }, 90_000);
});

describe('another prefix, rewritten as docs/security.md says', () => {
  it('a producer and a worker with prefix acme run a job with the rewritten permissions, refused nothing', async () => {
    const users = new Map(['naq-producer', 'naq-worker'].map((u) => [u, withPrefix(documented.get(u)!, 'acme')] as const));
    expect(users.get('naq-worker')!.publish).toContain('$JS.ACK.ACME_JOBS.>');
    expect(users.get('naq-worker')!.publish).toContain('$KV.acme_jobs.>');
    const server = await startServer({ configText: renderBlock(users) });
    const worker = naqAs(server, 'naq-worker', { prefix: 'acme', roles: ['worker'] }, { handlers });
    await worker.start({ timeoutMs: 20_000 });
    const producer = naqAs(server, 'naq-producer', { prefix: 'acme' });
    await producer.start({ timeoutMs: 20_000 });
    const id = await producer.enqueue('echo', 'prefixed', { dependsOn: [await producer.enqueue('echo', 'first')] });
    expect(await producer.waitFor(id, { timeoutMs: 15_000 })).toBe('prefixed');
    expect((await producer.listQueues()).map((q) => q.queue)).toContain('default');
    expect(violations(server, 'naq-worker')).toEqual([]);
    expect(violations(server, 'naq-producer')).toEqual([]);
  }, 60_000);
});
