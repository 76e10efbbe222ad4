import { AckPolicy, DiscardPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import type { NaqConfig } from '../config.js';
import type { Logger } from '../log.js';
import { InvalidArgumentError, NaqError, NotFoundError, OperationTimeoutError, type ErrorInfo } from '../errors.js';
import {
  buildJob,
  decodeJob,
  TERMINAL_STATUSES,
  WIRE_VERSION,
  type JobDefaults,
  type JobMessage,
  type JobOptions,
  type JobRecord,
  recordFromMessage,
} from '../job.js';
import { layout as makeLayout, validateJobId, validateQueue, type Layout } from '../layout.js';
import { setLongTimeout, validateDuration, type LongTimer } from '../duration.js';
import { encodeRecord } from '../record-codec.js';
import { isTransient, withRetry } from '../retry.js';
import { logPermissionDenied, toPermissionDenied } from '../permissions.js';
import { AsyncPublisher, ERR_MAX_MSGS_PER_SUBJECT, PublishRejectedError, type PubAck } from './publisher.js';
import { eventLogFor, type EventLog } from '../event-log.js';
import { apiTimeoutMs, ensureStream, managerFor, reportDrift, retryOptions } from './streams.js';

/** A job failed for good (or was cancelled); carries the record's error. */
export class JobFailedError extends NaqError {
  readonly jobId: string;
  readonly status: JobRecord['status'];
  readonly error: ErrorInfo | undefined;
  readonly record: JobRecord;
  constructor(record: JobRecord) {
    super(
      record.status === 'cancelled' ? 'JOB_CANCELLED' : 'JOB_FAILED',
      record.status === 'cancelled' ? `job ${record.id} was cancelled` : `job ${record.id} failed: ${record.error?.message ?? 'unknown error'}`,
    );
    this.jobId = record.id;
    this.status = record.status;
    this.error = record.error;
    this.record = record;
  }
}

export interface EnqueueItem<N extends string = string, D = unknown> {
  name: N;
  data?: D;
  opts?: JobOptions;
}

export interface QueueStats {
  queue: string;
  /** Waiting to be delivered to a worker. */
  pending: number;
  /** Delivered, not yet acknowledged. */
  inFlight: number;
  /** In the dead-letter stream. */
  dead: number;
  /** Live workers consuming the queue (by heartbeat). */
  workers: number;
}

export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  inFlight: number;
  processed: number;
  failed: number;
  status: string;
  concurrency: number;
  startedAt: number;
  ts: number;
}

/** What lands in the dead-letter stream: the job (or raw payload) and why. */
export interface DeadLetter {
  v: typeof WIRE_VERSION;
  reason: string;
  error?: ErrorInfo;
  queue: string;
  subject: string;
  jobId?: string;
  job?: JobMessage;
  /** The undecodable payload, as text, when the job could not be read at all. */
  raw?: string;
  /** Set when the job's data did not fit beside the reason: `job.data` is null, this says what it was. */
  dataTruncated?: { bytes: number; preview: string };
  ts: number;
}

const encoder = new TextEncoder();
/** nats-server's default max_payload, for the moment before the server said its own. */
const DEFAULT_MAX_PAYLOAD = 1_048_576;
/** A layout check after a missing stream is noticed runs at most this often, */
const REPAIR_EVERY_MS = 1000;
/** and this long after it was noticed (see repairLayout). */
const REPAIR_AFTER_MS = 500;
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** How many waiting jobs an enqueue looks through for a dependency cycle. */
const MAX_CYCLE_LOOKUPS = 10_000;
/** Publishes of one enqueueBulk in flight at once. */
const BULK_WINDOW = 1000;
const decoder = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/**
 * Everything the job path needs on one connection: the publisher, the buckets, the layout.
 * Shared by the jobs actor, the workers and the public API of one process (one per
 * connection), so there is one publish-async inbox and one set of bucket handles.
 */
export class JobsRuntime {
  readonly layout: Layout;
  readonly publisher: AsyncPublisher;
  readonly defaults: JobDefaults;
  #jobsKv: Promise<KV> | undefined;
  #workersKv: Promise<KV> | undefined;
  #waitingKv: Promise<KV> | undefined;
  #schedulesKv: Promise<KV> | undefined;
  #leaderKv: Promise<KV> | undefined;
  #ready: Promise<void> | undefined;
  #events: EventLog | undefined;

  /** Where the runtime reports drift and repairs: the process logger (see jobsRuntimeFor). */
  readonly #log: Logger;

  constructor(
    readonly nc: NatsConnection,
    readonly config: NaqConfig,
    log: Logger = pino({ level: 'silent' }),
  ) {
    this.#log = log.child({ component: 'jobs-runtime' });
    this.layout = makeLayout(config.prefix);
    this.publisher = new AsyncPublisher(nc, {
      timeoutMs: config.jobs.publishTimeoutMs,
      // A write that no stream answered: a stream or bucket may have been deleted under us.
      onNoStream: (subject) => void this.repairLayout(`no stream answered a publish to ${subject}`),
    });
    this.publisher.onPermissionError(logPermissionDenied(this.#log));
    this.defaults = {
      attempts: config.jobs.attempts,
      backoff: { type: config.jobs.backoffType, delay: config.jobs.backoffDelayMs },
      maxPayloadBytes: config.jobs.maxPayloadBytes,
    };
  }

  /** This process's event buffer (batched; emitting never waits on the server). */
  get events(): EventLog {
    return (this.#events ??= eventLogFor(this.nc, this.config));
  }

  jsm(): Promise<JetStreamManager> {
    return managerFor(this.nc, this.config);
  }

  #kvm() {
    return new Kvm(jetstream(this.nc, { timeout: apiTimeoutMs(this.config) }));
  }

  #storage() {
    return this.config.storage.storage === 'memory' ? StorageType.Memory : StorageType.File;
  }

  /**
   * Streams and buckets of the job layer: created when missing, updated to match the config
   * where they differ (a setting the server will not change is left, with a warning naming it
   * and both values). Runs once, and again after repairLayout().
   */
  ensureLayout(): Promise<void> {
    this.#ready ??= (async () => {
      const jsm = await this.jsm();
      const replicas = this.config.storage.replicas;
      const storage = this.#storage();
      const created: string[] = [];
      this.#created = created;
      const drift = { ...reportDrift(this.#log), onCreated: (name: string) => created.push(name) };
      await ensureStream(
        jsm,
        {
          name: this.layout.jobsStream,
          subjects: [this.layout.allJobs],
          retention: RetentionPolicy.Workqueue,
          storage,
          num_replicas: replicas,
          // One pending message per job id: a second enqueue of a pending id is refused by the
          // server, which makes enqueue idempotent beyond the Nats-Msg-Id window.
          max_msgs_per_subject: 1,
          discard: DiscardPolicy.New,
          discard_new_per_subject: true,
        },
        drift,
      );
      await ensureStream(jsm, { name: this.layout.deadStream, subjects: [this.layout.allDead], storage, num_replicas: replicas }, drift);
      const kvm = this.#kvm();
      // A heartbeat TTL belongs to the workers that write those keys: a producer with another
      // worker.heartbeatMs must not change it under them. The leader bucket's TTL is the lease
      // a running leader renews against, so it is never changed under it: a scheduler follows
      // the bucket's TTL and says so (scheduler.ts). Each process creates a missing bucket.
      const roles = this.config.roles;
      const bucket = async (name: string, ttlMs: number, ownsTtl = true) => {
        const existed = await jsm.streams.info(`KV_${name}`).then(
          () => true,
          (error: unknown) => {
            if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return false;
            throw error;
          },
        );
        const kv = await kvm.create(name, { ...(ttlMs ? { ttl: ttlMs } : {}), history: 1, storage, replicas });
        // The client only creates a missing bucket; an existing one keeps whatever it had.
        const wanted = { name: `KV_${name}`, ...(ownsTtl ? { max_age: ttlMs * 1_000_000 } : {}), max_msgs_per_subject: 1, storage, num_replicas: replicas };
        if (existed) await ensureStream(jsm, wanted, drift);
        else created.push(`KV_${name}`);
        return kv;
      };
      this.#jobsKv = bucket(this.layout.jobsBucket, this.config.jobs.resultTtlMs);
      this.#workersKv = bucket(this.layout.workersBucket, this.config.worker.heartbeatMs * 3, roles.includes('worker'));
      this.#waitingKv = bucket(this.layout.waitingBucket, 0);
      this.#schedulesKv = bucket(this.layout.schedulesBucket, 0);
      this.#leaderKv = bucket(this.layout.leaderBucket, this.config.scheduler.leaderTtlMs, false);
      await Promise.all([this.#jobsKv, this.#workersKv, this.#waitingKv, this.#schedulesKv, this.#leaderKv]);
    })().catch((error: unknown) => {
      // A refused subject reaches the caller as naq's error naming it, not the client's RequestError.
      throw toPermissionDenied(error) ?? error;
    });
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
  }

  /**
   * Something naq needs was missing (a stream or bucket deleted by an operator, `naq streams
   * rm`): check the whole layout again and recreate what is gone. At most one check at a time,
   * and one every REPAIR_EVERY_MS, however many writes noticed.
   */
  repairLayout(why: string): Promise<void> {
    if (this.#repairing) return this.#repairing;
    if (Date.now() - this.#lastRepair < REPAIR_EVERY_MS) return Promise.resolve();
    this.#lastRepair = Date.now();
    this.#ready = undefined;
    // What noticed it may be early: the server tells a pull its consumer is gone while it is
    // still deleting the stream, and a stream and consumer made again within those
    // milliseconds were seen (nats-server 2.9.10) to hold a job and a waiting pull and never
    // deliver. So the layout is checked a moment later.
    const repairing = delay(REPAIR_AFTER_MS).then(() => this.ensureLayout()).then(
      () => {
        // Also noticed while a server restarts (nothing answers yet): only a real loss is news.
        if (this.#created.length) this.#log.warn({ why, recreated: this.#created }, `recreated ${this.#created.join(', ')}: it had disappeared`);
        for (const fn of this.#afterRepair) fn();
      },
      (error: unknown) => this.#log.warn({ err: error, why }, 'could not check the streams and buckets naq needs; trying again when next noticed'),
    );
    this.#repairing = repairing.finally(() => (this.#repairing = undefined));
    return this.#repairing;
  }
  #repairing: Promise<void> | undefined;
  #lastRepair = 0;
  /** What the last ensureLayout created. */
  #created: string[] = [];
  readonly #afterRepair = new Set<() => void>();

  /** Runs `fn` after each repair (the events stream is ensured by its own service). */
  onRepair(fn: () => void): () => void {
    this.#afterRepair.add(fn);
    return () => this.#afterRepair.delete(fn);
  }

  async jobsKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#jobsKv!;
  }
  async workersKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#workersKv!;
  }
  async waitingKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#waitingKv!;
  }
  async schedulesKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#schedulesKv!;
  }
  async leaderKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#leaderKv!;
  }

  /** The largest message the server takes (its max_payload). */
  get maxMessageBytes(): number {
    return this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  /**
   * A KV put through the publish-async path: one pipelined write, acked by the server. The
   * record is cut down to fit one message if it has to be (record-codec.ts), never refused.
   */
  putRecord(record: JobRecord): Promise<PubAck> {
    return this.putRecordBytes(record.id, encodeRecord(record, this.maxMessageBytes));
  }

  /** A record already encoded (and known to fit). */
  putRecordBytes(id: string, bytes: Uint8Array): Promise<PubAck> {
    return this.publisher.publish(`$KV.${this.layout.jobsBucket}.${id}`, bytes);
  }

  #retry() {
    return retryOptions(this.config);
  }

  /**
   * `withRetry`, and a bucket found missing (deleted under a running process) is recreated
   * and the operation tried once more, instead of failing every read until someone writes.
   */
  async #orRepair<T>(operation: string, attempt: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(operation, this.#retry(), attempt);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
      await this.repairLayout(`${operation}: ${error.message}`);
      await this.ensureLayout();
      return withRetry(operation, this.#retry(), attempt);
    }
  }

  /** Publishes a job; an id that is already pending is not an error — it is the idempotent case. */
  /**
   * `msgId` (Nats-Msg-Id) makes a retried publish safe within the server's 2-minute window;
   * it is sent for ids the caller chose. Generated ids skip it: a header costs both the
   * producer and every worker, and the one-message-per-subject rule already refuses a second
   * copy while the job is pending.
   */
  async publishJob(message: JobMessage, bytes: Uint8Array, msgId?: string): Promise<void> {
    const options = msgId !== undefined ? { msgId } : undefined;
    const once = async () => {
      try {
        await this.publisher.publish(this.layout.jobSubject(message.queue, message.id), bytes, options);
      } catch (error) {
        // Already pending: the idempotent case, not a new job (and not a new event).
        if (error instanceof PublishRejectedError && error.errCode === ERR_MAX_MSGS_PER_SUBJECT) return;
        throw error;
      }
      this.events.emit({ type: 'job.enqueued', queue: message.queue, jobId: message.id, data: { name: message.name, attempts: message.attempts } });
    };
    // The common case costs one publish; the retry loop (and its deadline timer) only starts
    // after a transient failure. The Nats-Msg-Id makes the retry safe.
    try {
      await once();
    } catch (error) {
      if (!isTransient(error)) throw error;
      await withRetry(`enqueue ${message.id}`, this.#retry(), once);
    }
  }

  async enqueue(name: string, data: unknown, opts: JobOptions = {}): Promise<string> {
    const id = opts.jobId ?? nuid.next();
    const { message, bytes } = buildJob(name, data, opts, id, this.defaults);
    if (message.dependsOn?.length) {
      await this.#refuseCycle(message);
      await this.#park(message);
    } else await this.publishJob(message, bytes, opts.jobId);
    return id;
  }

  /**
   * A job that depends, through jobs still waiting, on itself could never run: refused,
   * naming the cycle. Follows the waiting jobs' dependencies (and those of the jobs being
   * enqueued with it), one level at a time, up to MAX_CYCLE_LOOKUPS jobs. Two enqueues that
   * close a cycle at the same moment both pass here; the resolver fails such a cycle when it
   * sees it (dependencies.ts).
   */
  async #refuseCycle(message: JobMessage, batch?: ReadonlyMap<string, readonly string[]>): Promise<void> {
    const kv = await this.waitingKv();
    const dependenciesOf = async (id: string): Promise<readonly string[]> => {
      const inBatch = batch?.get(id);
      if (inBatch) return inBatch;
      const entry = await withRetry(`check dependencies of ${message.id}`, this.#retry(), () => kv.get(id));
      if (!entry || entry.operation !== 'PUT') return [];
      try {
        return entry.json<JobMessage>().dependsOn ?? [];
      } catch {
        return [];
      }
    };
    const via = new Map<string, string>();
    let frontier = [...(message.dependsOn ?? [])];
    for (const id of frontier) via.set(id, message.id);
    let looked = 0;
    while (frontier.length > 0 && looked < MAX_CYCLE_LOOKUPS) {
      looked += frontier.length;
      const next: string[] = [];
      const all = await Promise.all(frontier.map(async (id) => [id, await dependenciesOf(id)] as const));
      for (const [id, deps] of all) {
        for (const dep of deps) {
          if (dep === message.id) {
            const path = [id];
            for (let at = id; at !== message.id; ) path.unshift((at = via.get(at)!));
            throw new InvalidArgumentError(`job ${message.id} would wait for itself: dependency cycle ${[...path, message.id].join(' → ')}`);
          }
          if (!via.has(dep)) {
            via.set(dep, id);
            next.push(dep);
          }
        }
      }
      frontier = next;
    }
  }

  /** Validates every job first (nothing is sent if one is bad), then pipelines the publishes. */
  async enqueueBulk(items: EnqueueItem[]): Promise<string[]> {
    const built = items.map((item) => buildJob(item.name, item.data, item.opts ?? {}, item.opts?.jobId ?? nuid.next(), this.defaults));
    const waiting = new Map(built.filter((b) => b.message.dependsOn?.length).map((b) => [b.message.id, b.message.dependsOn!] as const));
    for (const { message } of built) if (waiting.has(message.id)) await this.#refuseCycle(message, waiting);
    // Pipelined in windows: a window keeps the socket busy, and a bound on what is in flight
    // keeps memory flat however large the bulk (measured, 100k jobs in calls of 5,000: peak
    // RSS 194 MiB with all of a call in flight at once, ~145 MiB with windows of 1,000).
    for (let start = 0; start < built.length; start += BULK_WINDOW) {
      await Promise.all(
        built
          .slice(start, start + BULK_WINDOW)
          .map(({ message, bytes }, i) =>
            message.dependsOn?.length ? this.#park(message) : this.publishJob(message, bytes, items[start + i]!.opts?.jobId),
          ),
      );
    }
    return built.map((b) => b.message.id);
  }

  /** A job with dependencies waits in the waiting bucket until the resolver releases it. */
  async #park(message: JobMessage): Promise<void> {
    await withRetry(`enqueue ${message.id}`, this.#retry(), () =>
      this.publisher.publish(`$KV.${this.layout.waitingBucket}.${message.id}`, encodeJson(message)),
    );
    this.events.emit({
      type: 'job.enqueued',
      queue: message.queue,
      jobId: message.id,
      data: { name: message.name, attempts: message.attempts, waiting: true, dependsOn: message.dependsOn },
    });
  }

  /** The record; for a job not yet started, one made from its pending (or waiting) message. */
  async getJob(id: string): Promise<JobRecord | null> {
    validateJobId(id);
    const kv = await this.jobsKv();
    const entry = await this.#orRepair(`get job ${id}`, () => kv.get(id));
    if (entry && entry.operation === 'PUT') {
      const record = entry.json<JobRecord>();
      if (record.expiresAt !== undefined && record.expiresAt < Date.now()) return null;
      return record;
    }
    const pending = await this.pendingMessage(id);
    if (pending) return recordFromMessage(pending.job, 'pending');
    const waiting = await (await this.waitingKv()).get(id);
    if (waiting && waiting.operation === 'PUT') return recordFromMessage(waiting.json<JobMessage>(), 'waiting');
    return null;
  }

  /** The pending message of a job, found by id alone (the queue is a wildcard in the subject). */
  async pendingMessage(id: string): Promise<{ job: JobMessage; seq: number } | null> {
    const jsm = await this.jsm();
    try {
      const msg = await jsm.streams.getMessage(this.layout.jobsStream, { last_by_subj: this.layout.jobSubject('*', id) });
      if (!msg) return null;
      try {
        return { job: decodeJob(msg.data), seq: msg.seq };
      } catch {
        return null;
      }
    } catch (error) {
      if (error instanceof JetStreamApiError && (error.code === 10037 || error.code === 10059)) return null;
      throw error;
    }
  }

  /** Resolves with the result once the job completed; throws JobFailedError if it failed or was cancelled. */
  async waitFor<T = unknown>(id: string, options: { timeoutMs?: number } = {}): Promise<T> {
    validateJobId(id);
    const timeoutMs = validateDuration('timeoutMs', options.timeoutMs ?? 30_000);
    const kv = await this.jobsKv();
    // A watch delivers the current value first, then every change: no polling, no gap.
    // Retried: just after a server restart the watch's consumer may not be creatable yet.
    const watch = await this.#orRepair(`watch job ${id}`, () => kv.watch({ key: id }));
    let timer: LongTimer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setLongTimeout(() => reject(new OperationTimeoutError(`waiting for job ${id}`, timeoutMs)), timeoutMs);
    });
    const result = (async () => {
      for await (const e of watch) {
        if (e.operation !== 'PUT') continue;
        const record = e.json<JobRecord>();
        if (record.status === 'completed') return record.result as T;
        if (TERMINAL_STATUSES.has(record.status)) throw new JobFailedError(record);
      }
      throw new NaqError('WATCH_ENDED', `the watch on job ${id} ended`);
    })();
    try {
      return await Promise.race([result, timeout]);
    } finally {
      timer?.clear();
      watch.stop();
    }
  }

  /**
   * Cancels a job: a waiting job is dropped; a pending one is removed from the queue; a
   * running one is told to abort (its worker records the cancellation). Returns what it did.
   */
  async cancel(id: string): Promise<{ id: string; status: 'cancelled' | 'cancelling' | JobRecord['status'] }> {
    validateJobId(id);
    const waitingKv = await this.waitingKv();
    const waiting = await waitingKv.get(id);
    if (waiting && waiting.operation === 'PUT') {
      const job = waiting.json<JobMessage>();
      await waitingKv.delete(id);
      await this.putRecord({ ...recordFromMessage(job, 'cancelled'), finishedAt: Date.now() });
      this.events.emit({ type: 'job.cancelled', queue: job.queue, jobId: id, data: { name: job.name, waiting: true } });
      return { id, status: 'cancelled' };
    }
    const pending = await this.pendingMessage(id);
    if (pending) {
      const jsm = await this.jsm();
      await jsm.streams.deleteMessage(this.layout.jobsStream, pending.seq, false).catch((error: unknown) => {
        // Gone already (a worker took it) is fine; a refused delete is not.
        const denied = toPermissionDenied(error);
        if (denied) throw denied;
        return false;
      });
      await this.putRecord({ ...recordFromMessage(pending.job, 'cancelled'), finishedAt: Date.now() });
      this.events.emit({ type: 'job.cancelled', queue: pending.job.queue, jobId: id, data: { name: pending.job.name, pending: true } });
      // A worker may already hold it (delivered, not started, or running): tell it.
      this.nc.publish(this.layout.cancelSubject(pending.job.queue), id);
      return { id, status: 'cancelled' };
    }
    const record = await this.getJob(id);
    if (!record) throw new NotFoundError(`job ${id}`);
    if (TERMINAL_STATUSES.has(record.status)) return { id, status: record.status };
    this.nc.publish(this.layout.cancelSubject(record.queue), id);
    return { id, status: 'cancelling' };
  }

  /** Re-enqueues a dead job with fresh attempts; the record keeps its history. */
  async retryDead(id: string): Promise<{ id: string }> {
    const record = await this.getJob(id);
    if (!record) throw new NotFoundError(`job ${id}`);
    if (record.status !== 'failed' || record.deadSeq === undefined) {
      throw new InvalidArgumentError(`job ${id} is ${record.status}, not dead: only a dead job can be retried`);
    }
    const jsm = await this.jsm();
    const msg = await jsm.streams.getMessage(this.layout.deadStream, { seq: record.deadSeq });
    if (!msg) throw new NotFoundError(`dead letter of job ${id}`);
    const dead = JSON.parse(decoder.decode(msg.data)) as DeadLetter;
    if (!dead.job) throw new InvalidArgumentError(`job ${id} was never readable (${dead.reason}); it cannot be retried`);
    if (dead.dataTruncated) {
      throw new InvalidArgumentError(`job ${id}'s data (${dead.dataTruncated.bytes} bytes) did not fit in its dead letter; enqueue it again with its data instead`);
    }
    const job: JobMessage = { ...dead.job, ts: Date.now() };
    delete job.dependsOn;
    await this.putRecord({ ...record, status: 'pending', error: undefined as never, finishedAt: undefined as never });
    await this.publishJob(job, encodeJson(job), `${id}:retry:${record.deadSeq}`);
    return { id };
  }

  async purgeQueue(queue: string): Promise<{ purged: number }> {
    validateQueue(queue);
    const jsm = await this.jsm();
    const r = await jsm.streams.purge(this.layout.jobsStream, { filter: this.layout.queueFilter(queue) });
    return { purged: r.purged };
  }

  /**
   * Live workers, from their heartbeats. The keys come from the bucket stream's subject
   * counts, not a KV key listing: that one opens a consumer and waits for the last key, and a
   * heartbeat expiring (TTL) between its count and its delivery left it waiting for the next
   * idle heartbeat, past any deadline.
   */
  async listWorkers(): Promise<WorkerInfo[]> {
    const kv = await this.workersKv();
    const jsm = await this.jsm();
    const prefix = `$KV.${this.layout.workersBucket}.`;
    return withRetry('list workers', this.#retry(), async () => {
      const info = await jsm.streams.info(`KV_${this.layout.workersBucket}`, { subjects_filter: `${prefix}>` });
      const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
      const entries = await Promise.all(keys.map((key) => kv.get(key)));
      const workers: WorkerInfo[] = [];
      for (const e of entries) if (e && e.operation === 'PUT') workers.push(e.json<WorkerInfo>());
      return workers.sort((a, b) => a.id.localeCompare(b.id));
    });
  }

  async queueStats(queue: string): Promise<QueueStats> {
    validateQueue(queue);
    const jsm = await this.jsm();
    let pending = 0;
    let inFlight = 0;
    try {
      const c = await jsm.consumers.info(this.layout.jobsStream, this.layout.consumerName(queue));
      pending = c.num_pending;
      inFlight = c.num_ack_pending;
    } catch (error) {
      if (!(error instanceof JetStreamApiError)) throw error;
      // No worker ever consumed the queue: count its messages in the stream.
      const info = await jsm.streams.info(this.layout.jobsStream, { subjects_filter: this.layout.queueFilter(queue) });
      pending = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    }
    const dead = await jsm.streams.info(this.layout.deadStream, { subjects_filter: this.layout.deadSubject(queue) });
    const deadCount = Object.values(dead.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    const workers = (await this.listWorkers()).filter((w) => w.queues.includes(queue)).length;
    return { queue, pending, inFlight, dead: deadCount, workers };
  }

  /** Queues that have a consumer (every queue a worker ever served) and their stats. */
  async listQueues(): Promise<QueueStats[]> {
    const jsm = await this.jsm();
    const queues = new Set<string>();
    const prefix = `${this.config.prefix}-`;
    for await (const c of jsm.consumers.list(this.layout.jobsStream)) {
      if (c.name.startsWith(prefix)) queues.add(c.name.slice(prefix.length));
    }
    const info = await jsm.streams.info(this.layout.jobsStream, { subjects_filter: this.layout.allJobs });
    for (const subject of Object.keys(info.state.subjects ?? {})) {
      const queue = subject.split('.')[2];
      if (queue) queues.add(queue);
    }
    return Promise.all([...queues].sort().map((q) => this.queueStats(q)));
  }

  /** The durable consumer a queue's workers share; its stream is recreated if it is gone. */
  async ensureConsumer(queue: string, maxAckPending: number): Promise<void> {
    try {
      await this.#ensureConsumer(queue, maxAckPending);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
      await this.repairLayout(`stream ${this.layout.jobsStream} not found`);
      await this.ensureLayout();
      await this.#ensureConsumer(queue, maxAckPending);
    }
  }

  async #ensureConsumer(queue: string, maxAckPending: number): Promise<void> {
    const jsm = await this.jsm();
    const name = this.layout.consumerName(queue);
    const wanted = {
      durable_name: name,
      filter_subject: this.layout.queueFilter(queue),
      ack_policy: AckPolicy.Explicit,
      ack_wait: this.config.worker.ackWaitMs * 1_000_000,
      max_ack_pending: maxAckPending,
      max_deliver: -1,
    };
    let info;
    try {
      info = await jsm.consumers.info(this.layout.jobsStream, name);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound)) throw error;
      await jsm.consumers.add(this.layout.jobsStream, wanted);
      return;
    }
    if (info.config.ack_wait !== wanted.ack_wait || info.config.max_ack_pending !== wanted.max_ack_pending) {
      await jsm.consumers.update(this.layout.jobsStream, name, { ack_wait: wanted.ack_wait, max_ack_pending: wanted.max_ack_pending });
    }
  }

  close() {
    this.publisher.close();
  }
}


const runtimes = new WeakMap<NatsConnection, JobsRuntime>();

/**
 * The one runtime of a connection (created on first use). Every caller inside naq passes the
 * process's logger; a caller without one (a test) gets a silent runtime.
 */
export function jobsRuntimeFor(nc: NatsConnection, config: NaqConfig, log?: Logger): JobsRuntime {
  let rt = runtimes.get(nc);
  if (!rt) {
    rt = new JobsRuntime(nc, config, log);
    runtimes.set(nc, rt);
    void nc.closed().then(() => rt!.close());
  }
  return rt;
}
