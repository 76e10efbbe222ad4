import { hostname } from 'node:os';
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KvEntry } from '@nats-io/kv';
import { nuid, type QueuedIterator } from '@nats-io/transport-node';
import { fromCallback, fromPromise } from 'xstate';
import { backoffDelay } from '../backoff.js';
import type { NaqConfig } from '../config.js';
import { errorInfo, InvalidArgumentError, NotConnectedError, NotFoundError, RevisionMismatchError } from '../errors.js';
import { buildJob, type JobOptions } from '../job.js';
import type { Logger } from '../log.js';
import { leaderMachine, type LeaderSettings } from '../machines/leader.js';
import { schedulerMachine, type SchedulerInput } from '../machines/scheduler.js';
import { buildOneShot, buildSchedule, nextRun, runJobId, type ScheduleOptions, type ScheduleRecord, type ScheduleSpec } from '../schedule.js';
import { encodeJson, jobsRuntimeFor, type JobsRuntime } from './jobs-runtime.js';
import { natsOf } from './nats-connection.js';
import { isTransient, withRetry } from '../retry.js';
import { retryOptions } from './streams.js';

const LEADER_KEY = 'scheduler';
/** Wait before firing a schedule again whose advance the bucket did not take. */
const ADVANCE_RETRY_MS = 500;
/** Pause before reopening a schedules watch that ended. */
const WATCH_REOPEN_MS = 1000;
const WRONG_LAST_SEQUENCE = [10071, 10164];

function isRevisionConflict(error: unknown) {
  return error instanceof JetStreamApiError && WRONG_LAST_SEQUENCE.includes(error.code);
}

/** Schedule CRUD on the schedules bucket; any process can manage schedules, only the leader fires them. */
export class ScheduleStore {
  constructor(private readonly rt: JobsRuntime) {}

  async #kv() {
    return this.rt.schedulesKv();
  }

  /** Idempotent bucket operations ride out a reconnect or a cluster electing a leader. */
  #retry<T>(operation: string, fn: (kv: Awaited<ReturnType<JobsRuntime['schedulesKv']>>) => Promise<T>): Promise<T> {
    return withRetry(operation, retryOptions(this.rt.config), async () => fn(await this.#kv()));
  }

  async add(id: string, spec: ScheduleSpec, name: string, data: unknown, options?: ScheduleOptions): Promise<ScheduleRecord> {
    const record = buildSchedule(id, spec, name, data, options);
    // Validate the job each run will be (data, options, size) now, not at every fire.
    buildJob(name, data, { ...record.opts, queue: record.queue }, runJobId(record, record.nextRunAt ?? 0), this.rt.defaults);
    await this.#retry(`add schedule ${id}`, (kv) => kv.put(id, encodeJson(record)));
    this.#emit('schedule.added', record);
    return record;
  }

  /** Enqueues a job at a time: kept as a one-shot schedule until then. Returns the job id. */
  async enqueueAt(at: Date | number, name: string, data: unknown, options: Omit<JobOptions, 'dependsOn'> = {}): Promise<string> {
    const when = at instanceof Date ? at.getTime() : at;
    const id = options.jobId ?? nuid.next();
    // Validate the job now (size, options), not when it fires.
    buildJob(name, data, { ...options, jobId: id }, id, this.rt.defaults);
    const record = buildOneShot(id, when, name, data, { ...options, jobId: id });
    await this.#retry(`enqueue ${id} at ${when}`, (kv) => kv.put(id, encodeJson(record)));
    return id;
  }

  async get(id: string): Promise<(ScheduleRecord & { revision: number }) | null> {
    const e = await this.#retry(`get schedule ${id}`, (kv) => kv.get(id));
    return e && e.operation === 'PUT' ? { ...e.json<ScheduleRecord>(), revision: e.revision } : null;
  }

  async list(): Promise<ScheduleRecord[]> {
    return this.#retry('list schedules', async (kv) => {
      const out: ScheduleRecord[] = [];
      for await (const key of await kv.keys()) {
        const e = await kv.get(key);
        if (e && e.operation === 'PUT') out.push(e.json<ScheduleRecord>());
      }
      return out.sort((a, b) => a.id.localeCompare(b.id));
    });
  }

  /** Changes a schedule only if it is still at `expectedRevision` (the one you read). */
  async update(id: string, change: (current: ScheduleRecord) => ScheduleRecord, expectedRevision?: number): Promise<ScheduleRecord> {
    const current = await this.get(id);
    if (!current) throw new NotFoundError(`schedule ${id}`);
    const revision = expectedRevision ?? current.revision;
    if (revision !== current.revision) throw new RevisionMismatchError(this.rt.layout.schedulesBucket, id, revision);
    const { revision: _r, ...record } = current;
    const next = { ...change(record), updatedAt: Date.now() };
    try {
      await (await this.#kv()).update(id, encodeJson(next), revision);
    } catch (error) {
      if (isRevisionConflict(error)) throw new RevisionMismatchError(this.rt.layout.schedulesBucket, id, revision, { cause: error });
      throw error;
    }
    return next;
  }

  async pause(id: string) {
    const r = await this.update(id, (s) => {
      if (s.status !== 'active') throw new InvalidArgumentError(`schedule ${id} is ${s.status}; only an active schedule can be paused`);
      return { ...s, status: 'paused' };
    });
    this.#emit('schedule.paused', r);
    return r;
  }

  #emit(type: 'schedule.added' | 'schedule.paused' | 'schedule.resumed' | 'schedule.removed', s: ScheduleRecord) {
    this.rt.events.emit({ type, queue: s.queue, data: { id: s.id, name: s.name, nextRunAt: s.nextRunAt } });
  }

  async resume(id: string) {
    const r = await this.update(id, (s) => {
      if (s.status !== 'paused' && s.status !== 'failed') throw new InvalidArgumentError(`schedule ${id} is ${s.status}; only a paused or failed schedule can be resumed`);
      // Runs missed while paused are skipped: the next one is after now.
      const nextRunAt = s.kind === 'at' ? s.nextRunAt : nextRun(s, Date.now());
      const { error: _e, ...rest } = s;
      return { ...rest, status: nextRunAt === null ? 'completed' : 'active', nextRunAt };
    });
    this.#emit('schedule.resumed', r);
    return r;
  }

  async remove(id: string): Promise<boolean> {
    const e = await this.#retry(`get schedule ${id}`, (kv) => kv.get(id));
    if (!e || e.operation !== 'PUT') return false;
    await this.#retry(`remove schedule ${id}`, (kv) => kv.delete(id));
    this.#emit('schedule.removed', e.json<ScheduleRecord>());
    return true;
  }
}

/**
 * Fires due schedules while this process leads. It keeps every schedule in memory from a
 * watch of the bucket (no scans), one timer for the earliest run, and advances a schedule
 * with a revision-checked update after firing. Each run is published with
 * `Nats-Msg-Id: <scheduleId>:<fireTime>` and a job id made from both, so two leaders
 * overlapping for a moment still enqueue a run once.
 */
export class ScheduleDispatcher {
  readonly #rt: JobsRuntime;
  readonly #config: NaqConfig;
  readonly #log: Logger;
  readonly #schedules = new Map<string, { record: ScheduleRecord; revision: number }>();
  readonly #firing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #refusals = new Map<string, number>();
  readonly #retryAt = new Map<string, number>();
  #watch: QueuedIterator<KvEntry> | null = null;
  #unfollowRepairs: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  fired = 0;

  constructor(rt: JobsRuntime, config: NaqConfig, log: Logger) {
    this.#rt = rt;
    this.#config = config;
    this.#log = log;
  }

  /** Resolves once the watch is open; fails only if it cannot be opened within `ops.timeoutMs`. */
  async start(): Promise<void> {
    // A recreated bucket: the watch on the old one sees nothing more; stopping it reopens it.
    this.#unfollowRepairs ??= this.#rt.onRepair(() => this.#watch?.stop());
    const watch = await withRetry('watch schedules', retryOptions(this.#config), async () => (await this.#rt.schedulesKv()).watch());
    if (this.#stopped) {
      watch.stop();
      return;
    }
    this.#watch = watch;
    void (async () => {
      for await (const e of watch) {
        if (this.#stopped) break;
        if (e.operation === 'PUT') this.#schedules.set(e.key, { record: e.json<ScheduleRecord>(), revision: e.revision });
        else this.#schedules.delete(e.key);
        this.#arm();
      }
    })()
      .catch((error: unknown) => this.#log.warn({ err: error }, 'schedules watch ended'))
      .finally(() => this.#reopen());
  }

  /**
   * The schedules in memory still fire without the watch, but it brings other processes'
   * changes, so it is reopened (its replay of the bucket refreshes what is held) until that
   * works or the connection is gone for good.
   */
  #reopen() {
    if (this.#stopped) return;
    setTimeout(() => {
      this.start().catch((error: unknown) => {
        if (error instanceof NotConnectedError) {
          this.#log.warn({ err: error }, 'schedules watch not reopened: the connection is closed');
          return;
        }
        this.#log.error({ err: error }, 'could not reopen the schedules watch; trying again');
        this.#reopen();
      });
    }, WATCH_REOPEN_MS).unref();
  }

  stop(): void {
    this.#stopped = true;
    this.#unfollowRepairs?.();
    clearTimeout(this.#timer);
    this.#watch?.stop();
  }

  #dueAt(id: string, record: ScheduleRecord): number | null {
    if (record.status !== 'active' || record.nextRunAt === null) return null;
    return Math.max(record.nextRunAt, this.#retryAt.get(id) ?? 0);
  }

  /** One timer, for the earliest due schedule; re-armed whenever anything changes. */
  #arm() {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    let earliest = Infinity;
    for (const [id, { record }] of this.#schedules) {
      const due = this.#dueAt(id, record);
      if (due !== null && due < earliest) earliest = due;
    }
    if (earliest === Infinity) return;
    // Long waits are re-checked every minute (timers cap at ~24 days; clocks drift).
    const delay = Math.min(Math.max(0, earliest - Date.now()), 60_000);
    this.#timer = setTimeout(() => this.#fireDue(), delay);
  }

  #fireDue() {
    const now = Date.now();
    for (const [id, { record }] of this.#schedules) {
      const due = this.#dueAt(id, record);
      if (due !== null && due <= now) void this.#fire(id);
    }
    this.#arm();
  }

  async #fire(id: string): Promise<void> {
    const entry = this.#schedules.get(id);
    if (!entry || this.#firing.has(id)) return;
    this.#firing.add(id);
    const { record, revision } = entry;
    const fireTime = record.nextRunAt!;
    try {
      const jobId = runJobId(record, fireTime);
      const { message, bytes } = buildJob(record.name, record.data, { ...record.opts, queue: record.queue, jobId }, jobId, this.#rt.defaults);
      await this.#rt.publishJob(message, bytes, `${record.id}:${fireTime}`);
      this.fired++;
      this.#rt.events.emit({ type: 'schedule.fired', queue: record.queue, jobId, data: { id: record.id, fireTime } });
      this.#failures.delete(id);
      this.#refusals.delete(id);
      this.#retryAt.delete(id);
      await this.#advance(record, revision, fireTime);
    } catch (error) {
      await this.#failed(id, record, revision, error);
    } finally {
      this.#firing.delete(id);
      this.#arm();
    }
  }

  async #advance(record: ScheduleRecord, revision: number, fireTime: number) {
    const kv = await this.#rt.schedulesKv();
    const now = Date.now();
    const runs = record.runs + 1;
    // Downtime policy: the overdue run fired once; the next is the first one after now.
    const next = record.kind === 'at' ? null : nextRun({ ...record, runs }, Math.max(now, fireTime));
    try {
      if (record.kind === 'at') {
        await kv.delete(record.id, { previousSeq: revision });
        this.#schedules.delete(record.id);
        return;
      }
      const updated: ScheduleRecord = { ...record, runs, lastRunAt: fireTime, nextRunAt: next, status: next === null ? 'completed' : record.status, updatedAt: now };
      const newRevision = await kv.update(record.id, encodeJson(updated), revision);
      this.#schedules.set(record.id, { record: updated, revision: newRevision });
    } catch (error) {
      // Someone else moved it on (another leader, or an update): the watch brings the new version.
      if (isRevisionConflict(error)) return;
      // The bucket did not answer (a cluster electing a leader): firing again is harmless (the
      // run's Nats-Msg-Id dedups it), but not in a tight loop, so wait before the next try.
      this.#log.warn({ err: error, schedule: record.id }, 'could not advance the schedule');
      this.#retryAt.set(record.id, Date.now() + ADVANCE_RETRY_MS);
    }
  }

  async #failed(id: string, record: ScheduleRecord, revision: number, error: unknown) {
    // Consecutive failures drive the backoff; only refusals count towards maxFireFailures. An
    // outage (no ack in time, a stream between leaders) is retried for as long as it lasts,
    // or a cluster election would fail a cron schedule for good.
    const n = (this.#failures.get(id) ?? 0) + 1;
    this.#failures.set(id, n);
    const refusals = (this.#refusals.get(id) ?? 0) + (isTransient(error) ? 0 : 1);
    this.#refusals.set(id, refusals);
    const message = errorInfo(error).message;
    if (refusals < this.#config.scheduler.maxFireFailures) {
      const delay = backoffDelay(n, { initialDelayMs: 200, maxDelayMs: 10_000, jitter: 0.2 });
      this.#retryAt.set(id, Date.now() + delay);
      this.#log.warn({ schedule: id, attempt: n, delay, err: message }, 'schedule fire failed; retrying');
      return;
    }
    this.#failures.delete(id);
    this.#refusals.delete(id);
    this.#retryAt.delete(id);
    this.#log.error({ schedule: id, err: message }, `schedule failed after ${n} attempts`);
    this.#rt.events.emit({ type: 'schedule.failed', queue: record.queue, data: { id, error: message, attempts: n } });
    try {
      const kv = await this.#rt.schedulesKv();
      await kv.update(id, encodeJson({ ...record, status: 'failed', error: message, updatedAt: Date.now() }), revision);
    } catch (e) {
      this.#log.warn({ err: e, schedule: id }, 'could not mark the schedule failed');
    }
  }
}

export function candidateId(): string {
  return `${hostname()}-${process.pid}-${nuid.next().slice(-6)}`.replace(/[^A-Za-z0-9_=-]/g, '_');
}

/** The scheduler machine with its leader election and dispatcher on NATS. */
export function schedulerLogic(config: NaqConfig, log: Logger) {
  const leader = leaderMachine.provide({
    actors: {
      acquire: fromPromise<number, { candidateId: string }>(async ({ input }) => {
        const rt = current;
        if (!rt) throw new Error('scheduler not started');
        const kv = await rt.leaderKv();
        try {
          return await kv.create(LEADER_KEY, encodeJson({ candidateId: input.candidateId, host: hostname(), pid: process.pid, ts: Date.now() }));
        } catch (error) {
          // Someone holding the lease is the normal case for a follower; anything else is worth seeing.
          if (!isRevisionConflict(error)) log.debug({ err: error, candidate: input.candidateId }, 'leader lease not acquired');
          throw error;
        }
      }),
      renew: fromPromise<number, { candidateId: string; revision: number }>(async ({ input }) => {
        const kv = await current!.leaderKv();
        try {
          return await kv.update(LEADER_KEY, encodeJson({ candidateId: input.candidateId, host: hostname(), pid: process.pid, ts: Date.now() }), input.revision);
        } catch (error) {
          log.warn({ err: error, candidate: input.candidateId }, 'leader lease not renewed; this process stops firing schedules');
          throw error;
        }
      }),
      release: fromPromise<void, { revision: number }>(async ({ input }) => {
        const kv = await current!.leaderKv();
        await kv.delete(LEADER_KEY, { previousSeq: input.revision });
      }),
    },
  });
  // The leader's actors need this process's runtime; the scheduler's setup sets it.
  let current: JobsRuntime | null = null;
  return schedulerMachine.provide({
    actors: {
      setup: fromPromise<LeaderSettings | void, SchedulerInput>(async ({ input }) => {
        current = jobsRuntimeFor(natsOf(input.connection), config, log);
        await current.ensureLayout();
        // The lease is the leader bucket's TTL, set by whichever process created the bucket:
        // renew well inside it, whatever this process's config says.
        const ttlMs = (await (await current.leaderKv()).status()).ttl || input.leader.ttlMs;
        if (ttlMs !== input.leader.ttlMs) {
          log.warn(
            { setting: 'scheduler.leaderTtlMs', bucketTtlMs: ttlMs, configured: input.leader.ttlMs },
            `scheduler.leaderTtlMs is ${input.leader.ttlMs} but the ${current.layout.leaderBucket} bucket's TTL is ${ttlMs}: the lease follows the bucket (a running leader's lease is never changed under it)`,
          );
        }
        return { ttlMs, renewMs: Math.min(input.leader.renewMs, Math.floor(ttlMs / 3)), retryMs: Math.min(input.leader.retryMs, Math.floor(ttlMs / 3)) };
      }),
      leader,
      dispatcher: fromCallback<{ type: string }, SchedulerInput>(({ input, sendBack }) => {
        const rt = jobsRuntimeFor(natsOf(input.connection), config, log);
        const dispatcher = new ScheduleDispatcher(rt, config, log.child({ actor: 'scheduler' }));
        log.info({ candidate: input.candidateId }, 'elected scheduler leader; firing schedules');
        rt.events.emit({ type: 'leader.elected', queue: '_system', data: { candidateId: input.candidateId } });
        dispatcher.start().catch((error: unknown) => sendBack({ type: 'DISPATCHER.FAILED', error: errorInfo(error) }));
        return () => {
          dispatcher.stop();
          rt.events.emit({ type: 'leader.lost', queue: '_system', data: { candidateId: input.candidateId } });
        };
      }),
    },
  });
}
