/** Schedule CRUD on the schedules bucket: any process manages schedules, only the leader fires them. */
import type { KV } from '@nats-io/kv';
import { nuid } from '@nats-io/transport-node';
import { InvalidArgumentError, NotFoundError, RevisionMismatchError } from '../../core/errors.js';
import { buildJob, encodeJson, type JobOptions } from '../../model/job.js';
import { buildOneShot, buildSchedule, nextRun, runJobId, type ScheduleOptions, type ScheduleRecord, type ScheduleSpec } from '../../model/schedule.js';
import { withRetry } from '../../core/retry.js';
import { checkDedupe } from '../../model/dedupe.js';
import { throttle } from '../jobs/dedupe.js';
import type { NaqContext } from '../nats/context.js';
import { isWrongLastSequence } from '../nats/jetstream.js';

export class ScheduleStore {
  constructor(private readonly ctx: NaqContext) {}

  async #kv() {
    return this.ctx.storage.schedulesKv();
  }

  /** Idempotent bucket operations ride out a reconnect or a cluster electing a leader. */
  #retry<T>(operation: string, fn: (kv: KV) => Promise<T>): Promise<T> {
    return withRetry(operation, this.ctx.retry, async () => fn(await this.#kv()));
  }

  async add(id: string, spec: ScheduleSpec, name: string, data: unknown, options?: ScheduleOptions): Promise<ScheduleRecord> {
    const record = buildSchedule(id, spec, name, data, options);
    // Validate the job each run will be (data, options, size) now, not at every fire.
    buildJob(name, data, { ...record.opts, queue: record.queue }, runJobId(record, record.nextRunAt ?? 0), this.ctx.defaults);
    await this.#retry(`add schedule ${id}`, (kv) => kv.put(id, encodeJson(record)));
    this.#emit('schedule.added', record);
    return record;
  }

  /**
   * Enqueues a job at a time: kept as a one-shot schedule until then. Returns the job id (with
   * a throttle window that is open, the id of the window's job, and nothing is enqueued).
   */
  async enqueueAt(at: Date | number, name: string, data: unknown, options: Omit<JobOptions, 'dependsOn'> = {}): Promise<string> {
    const when = at instanceof Date ? at.getTime() : at;
    const id = options.jobId ?? nuid.next();
    // Validate the job now (size, options), not when it fires.
    buildJob(name, data, { ...options, jobId: id }, id, this.ctx.defaults);
    const dedupe = options.dedupe === undefined ? undefined : checkDedupe(options.dedupe, this.ctx.config.jobs.dedupeMaxTtlMs, { delayed: true });
    const record = buildOneShot(id, when, name, data, { ...options, jobId: id });
    const put = async () => {
      await this.#retry(`enqueue ${id} at ${when}`, (kv) => kv.put(id, encodeJson(record)));
    };
    if (dedupe) return throttle(this.ctx, dedupe, record, put);
    await put();
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
    if (revision !== current.revision) throw new RevisionMismatchError(this.ctx.layout.schedulesBucket, id, revision);
    const { revision: _r, ...record } = current;
    const next = { ...change(record), updatedAt: Date.now() };
    try {
      await (await this.#kv()).update(id, encodeJson(next), revision);
    } catch (error) {
      if (isWrongLastSequence(error)) throw new RevisionMismatchError(this.ctx.layout.schedulesBucket, id, revision, { cause: error });
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
    this.ctx.events.emit({ type, queue: s.queue, data: { id: s.id, name: s.name, nextRunAt: s.nextRunAt } });
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
