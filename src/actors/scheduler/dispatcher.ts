import type { KvEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import { backoffDelay } from '../../core/backoff.js';
import type { NaqConfig } from '../../config/index.js';
import { errorInfo, NotConnectedError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { buildJob, encodeJson } from '../../model/job.js';
import { isClaimed, nextRun, runJobId, type ScheduleRecord } from '../../model/schedule.js';
import { isTransient, withRetry } from '../../core/retry.js';
import { publishJob } from '../jobs/enqueue.js';
import type { NaqContext } from '../nats/context.js';
import { isWrongLastSequence } from '../nats/jetstream.js';

/** Wait before firing a schedule again whose advance the bucket did not take. */
const ADVANCE_RETRY_MS = 500;
/** Pause before reopening a schedules watch that ended. */
const WATCH_REOPEN_MS = 1000;
const EMPTY = new Uint8Array(0);

/**
 * Fires due schedules while this process leads. It keeps every schedule in memory from a
 * watch of the bucket (no scans), one timer for the earliest run, and advances a schedule
 * with a revision-checked update after firing. Each run is published with
 * `Nats-Msg-Id: <scheduleId>:<fireTime>` and a job id made from both, so two leaders
 * overlapping for a moment still enqueue a run once.
 */
export class ScheduleDispatcher {
  readonly #ctx: NaqContext;
  readonly #config: NaqConfig;
  readonly #log: Logger;
  readonly #schedules = new Map<string, { record: ScheduleRecord; revision: number }>();
  readonly #firing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #refusals = new Map<string, number>();
  readonly #retryAt = new Map<string, number>();
  /** One-shots fired and deleted here, by the revision deleted: a late watch entry of that revision (or older) is not news. */
  readonly #gone = new Map<string, number>();
  #watch: QueuedIterator<KvEntry> | null = null;
  #unfollowRepairs: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #armQueued = false;
  #stopped = false;
  fired = 0;

  constructor(ctx: NaqContext, config: NaqConfig, log: Logger) {
    this.#ctx = ctx;
    this.#config = config;
    this.#log = log;
  }

  /** Resolves once the watch is open; fails only if it cannot be opened within `ops.timeoutMs`. */
  async start(): Promise<void> {
    // A recreated bucket: the watch on the old one sees nothing more; stopping it reopens it.
    this.#unfollowRepairs ??= this.#ctx.storage.onRepair(() => this.#watch?.stop());
    const watch = await withRetry('watch schedules', this.#ctx.retry, async () => (await this.#ctx.storage.schedulesKv()).watch());
    if (this.#stopped) {
      watch.stop();
      return;
    }
    this.#watch = watch;
    void (async () => {
      for await (const e of watch) {
        if (this.#stopped) break;
        if (e.operation === 'PUT') {
          if ((this.#gone.get(e.key) ?? 0) >= e.revision) continue;
          this.#schedules.set(e.key, { record: e.json<ScheduleRecord>(), revision: e.revision });
        } else {
          this.#schedules.delete(e.key);
          this.#gone.delete(e.key);
        }
        this.#armSoon();
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
    // A debounced job claimed and not deleted: its leader stopped mid-fire; the fire is finished.
    if (isClaimed(record)) return Math.max(record.lastRunAt, this.#retryAt.get(id) ?? 0);
    if (record.status !== 'active' || record.nextRunAt === null) return null;
    return Math.max(record.nextRunAt, this.#retryAt.get(id) ?? 0);
  }

  /**
   * Re-arms once per turn of the event loop, however many schedules changed in it: a scan per
   * change made 10,000 delayed jobs due together cost 10,000² steps (seconds late).
   */
  #armSoon() {
    if (this.#armQueued) return;
    this.#armQueued = true;
    setImmediate(() => {
      this.#armQueued = false;
      this.#arm();
    });
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
    let { record, revision } = entry;
    try {
      if (record.debounceKey !== undefined && record.kind === 'at') {
        const claimed = await this.#claim(record, revision);
        // Moved by an enqueue of its key meanwhile: the watch brings the new version.
        if (!claimed) return;
        ({ record, revision } = claimed);
      }
      const fireTime = isClaimed(record) ? record.lastRunAt : record.nextRunAt!;
      const jobId = runJobId(record, fireTime);
      const { message, bytes } = buildJob(record.name, record.data, { ...record.opts, queue: record.queue, jobId }, jobId, this.#ctx.defaults);
      await publishJob(this.#ctx, message, bytes, `${record.id}:${fireTime}`);
      this.fired++;
      this.#ctx.events.emit({ type: 'schedule.fired', queue: record.queue, jobId, data: { id: record.id, fireTime } });
      this.#failures.delete(id);
      this.#refusals.delete(id);
      this.#retryAt.delete(id);
      await this.#advance(record, revision, fireTime);
    } catch (error) {
      await this.#failed(id, record, revision, error);
    } finally {
      this.#firing.delete(id);
      this.#armSoon();
    }
  }

  /**
   * A debounced job is claimed before it is published: written as fired (status `completed`,
   * `lastRunAt` = the fire time), revision-checked, so an enqueue of its key that would move it
   * either lands first (the claim fails; the job fires later with its new data) or finds it
   * claimed and starts a new one. Without it, an enqueue landing between the publish and the
   * delete would move a job already sent. A claim left behind (the leader stopped) is finished
   * by the next leader (`#dueAt`). Returns null when the claim lost.
   */
  async #claim(record: ScheduleRecord, revision: number): Promise<{ record: ScheduleRecord; revision: number } | null> {
    if (isClaimed(record)) return { record, revision };
    const claimed: ScheduleRecord = { ...record, status: 'completed', nextRunAt: null, lastRunAt: record.nextRunAt!, runs: record.runs + 1, updatedAt: Date.now() };
    try {
      const kv = await this.#ctx.storage.schedulesKv();
      const claimedRevision = await kv.update(record.id, encodeJson(claimed), revision);
      this.#schedules.set(record.id, { record: claimed, revision: claimedRevision });
      return { record: claimed, revision: claimedRevision };
    } catch (error) {
      if (!isWrongLastSequence(error)) throw error;
      // Not due any more as held here: the watch brings what it is now.
      if (this.#schedules.get(record.id)?.revision === revision) this.#schedules.delete(record.id);
      return null;
    }
  }

  async #advance(record: ScheduleRecord, revision: number, fireTime: number) {
    const kv = await this.#ctx.storage.schedulesKv();
    const now = Date.now();
    const runs = record.runs + 1;
    // Downtime policy: the overdue run fired once; the next is the first one after now.
    const next = record.kind === 'at' ? null : nextRun({ ...record, runs }, Math.max(now, fireTime));
    try {
      if (record.kind === 'at') {
        // As kv.delete does it, but on the publish-async path: 10,000 delayed jobs due together
        // are 10,000 of these, and a request each (with its error objects) made them late.
        await this.#ctx.publisher.publish(`$KV.${this.#ctx.layout.schedulesBucket}.${record.id}`, EMPTY, {
          expectedLastSubjectSequence: revision,
          headers: { 'KV-Operation': 'DEL' },
        });
        this.#schedules.delete(record.id);
        // The watch may still bring this revision (a claim is written here): not news then.
        if (this.#gone.size > 10_000) this.#gone.clear();
        this.#gone.set(record.id, revision);
        return;
      }
      const updated: ScheduleRecord = { ...record, runs, lastRunAt: fireTime, nextRunAt: next, status: next === null ? 'completed' : record.status, updatedAt: now };
      const newRevision = await kv.update(record.id, encodeJson(updated), revision);
      this.#schedules.set(record.id, { record: updated, revision: newRevision });
    } catch (error) {
      // Someone else moved it on (another leader, or an update): the watch brings the new version.
      if (isWrongLastSequence(error)) return;
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
    this.#ctx.events.emit({ type: 'schedule.failed', queue: record.queue, data: { id, error: message, attempts: n } });
    try {
      const kv = await this.#ctx.storage.schedulesKv();
      await kv.update(id, encodeJson({ ...record, status: 'failed', error: message, updatedAt: Date.now() }), revision);
    } catch (e) {
      this.#log.warn({ err: e, schedule: id }, 'could not mark the schedule failed');
    }
  }
}
