import { AckPolicy, DiscardPolicy, JetStreamApiError, jetstream, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { nuid, type NatsConnection } from '@nats-io/transport-node';
import type { NaqConfig } from '../config.js';
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
import { isTransient, withRetry } from '../retry.js';
import { AsyncPublisher, ERR_MAX_MSGS_PER_SUBJECT, PublishRejectedError, type PubAck } from './publisher.js';
import { eventLogFor, type EventLog } from '../event-log.js';
import { apiTimeoutMs, ensureStream, managerFor, retryOptions } from './streams.js';

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
  ts: number;
}

const encoder = new TextEncoder();
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

  constructor(
    readonly nc: NatsConnection,
    readonly config: NaqConfig,
  ) {
    this.layout = makeLayout(config.prefix);
    this.publisher = new AsyncPublisher(nc, { timeoutMs: config.jobs.publishTimeoutMs });
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

  /** Streams and buckets of the job layer: created, or updated to match. Idempotent. */
  ensureLayout(): Promise<void> {
    this.#ready ??= (async () => {
      const jsm = await this.jsm();
      const replicas = this.config.storage.replicas;
      await ensureStream(jsm, {
        name: this.layout.jobsStream,
        subjects: [this.layout.allJobs],
        retention: RetentionPolicy.Workqueue,
        storage: this.#storage(),
        num_replicas: replicas,
        // One pending message per job id: a second enqueue of a pending id is refused by the
        // server, which makes enqueue idempotent beyond the Nats-Msg-Id window.
        max_msgs_per_subject: 1,
        discard: DiscardPolicy.New,
        discard_new_per_subject: true,
      });
      await ensureStream(jsm, {
        name: this.layout.deadStream,
        subjects: [this.layout.allDead],
        storage: this.#storage(),
        num_replicas: replicas,
      });
      const kvm = this.#kvm();
      const storage = this.#storage();
      this.#jobsKv = kvm.create(this.layout.jobsBucket, { ttl: this.config.jobs.resultTtlMs, history: 1, storage, replicas });
      this.#workersKv = kvm.create(this.layout.workersBucket, { ttl: this.config.worker.heartbeatMs * 3, history: 1, storage, replicas });
      this.#waitingKv = kvm.create(this.layout.waitingBucket, { history: 1, storage, replicas });
      this.#schedulesKv = kvm.create(this.layout.schedulesBucket, { history: 1, storage, replicas });
      this.#leaderKv = kvm.create(this.layout.leaderBucket, { ttl: this.config.scheduler.leaderTtlMs, history: 1, storage, replicas });
      await Promise.all([this.#jobsKv, this.#workersKv, this.#waitingKv, this.#schedulesKv, this.#leaderKv]);
    })();
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
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

  /** A KV put through the publish-async path: one pipelined write, acked by the server. */
  putRecord(record: JobRecord): Promise<PubAck> {
    return this.publisher.publish(`$KV.${this.layout.jobsBucket}.${record.id}`, encodeJson(record));
  }

  #retry() {
    return retryOptions(this.config);
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
    if (message.dependsOn?.length) await this.#park(message);
    else await this.publishJob(message, bytes, opts.jobId);
    return id;
  }

  /** Validates every job first (nothing is sent if one is bad), then pipelines the publishes. */
  async enqueueBulk(items: EnqueueItem[]): Promise<string[]> {
    const built = items.map((item) => buildJob(item.name, item.data, item.opts ?? {}, item.opts?.jobId ?? nuid.next(), this.defaults));
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
    const entry = await withRetry(`get job ${id}`, this.#retry(), () => kv.get(id));
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
    const kv = await this.jobsKv();
    const timeoutMs = options.timeoutMs ?? 30_000;
    // A watch delivers the current value first, then every change: no polling, no gap.
    // Retried: just after a server restart the watch's consumer may not be creatable yet.
    const watch = await withRetry(`watch job ${id}`, this.#retry(), () => kv.watch({ key: id }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new OperationTimeoutError(`waiting for job ${id}`, timeoutMs)), timeoutMs);
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
      clearTimeout(timer);
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
      await jsm.streams.deleteMessage(this.layout.jobsStream, pending.seq, false).catch(() => false);
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

  async listWorkers(): Promise<WorkerInfo[]> {
    const kv = await this.workersKv();
    // Retried as a whole: listing keys creates a consumer, which can time out under load.
    return withRetry('list workers', this.#retry(), async () => {
      const workers: WorkerInfo[] = [];
      for await (const key of await kv.keys()) {
        const e = await kv.get(key);
        if (e && e.operation === 'PUT') workers.push(e.json<WorkerInfo>());
      }
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

  /** The durable consumer a queue's workers share. */
  async ensureConsumer(queue: string, maxAckPending: number): Promise<void> {
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
    try {
      const info = await jsm.consumers.info(this.layout.jobsStream, name);
      if (info.config.ack_wait !== wanted.ack_wait || info.config.max_ack_pending !== wanted.max_ack_pending) {
        await jsm.consumers.update(this.layout.jobsStream, name, { ack_wait: wanted.ack_wait, max_ack_pending: wanted.max_ack_pending });
      }
    } catch (error) {
      if (!(error instanceof JetStreamApiError)) throw error;
      await jsm.consumers.add(this.layout.jobsStream, wanted);
    }
  }

  close() {
    this.publisher.close();
  }
}


const runtimes = new WeakMap<NatsConnection, JobsRuntime>();

/** The one runtime of a connection (created on first use). */
export function jobsRuntimeFor(nc: NatsConnection, config: NaqConfig): JobsRuntime {
  let rt = runtimes.get(nc);
  if (!rt) {
    rt = new JobsRuntime(nc, config);
    runtimes.set(nc, rt);
    void nc.closed().then(() => rt!.close());
  }
  return rt;
}
