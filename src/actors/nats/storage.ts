/**
 * The job layer's streams and buckets on one connection: made to match the config on start,
 * recreated when something finds one missing, and the handles the job path reads and writes.
 */
import {
  AckPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KV, Kvm } from '@nats-io/kv';
import type { NaqConfig } from '../../config/index.js';
import type { Logger } from '../../core/log.js';
import type { JobRecord } from '../../model/job.js';
import { DEFAULT_PRIORITY, PRIORITIES, type Layout } from '../../model/layout.js';
import { encodeRecord } from '../../model/record-codec.js';
import { encodeIndexBatch, indexSubject, isIndexedState, type IndexEntry } from '../../model/job-index.js';
import { isPermissionDenied, toPermissionDenied } from '../../core/permissions.js';
import { withRetry, type RetryOptions } from '../../core/retry.js';
import { apiTimeoutMs, ensureStream, missingConsumers, reportDrift } from './jetstream.js';
import type { AsyncPublisher, PubAck } from './publisher.js';

/** nats-server's default max_payload, for the moment before the server said its own. */
const DEFAULT_MAX_PAYLOAD = 1_048_576;
/** A layout check after a missing stream is noticed runs at most this often, */
const REPAIR_EVERY_MS = 1000;
/** and this long after it was noticed (see repairLayout). */
const REPAIR_AFTER_MS = 500;
/** At most this many entries in one index message (~40 bytes each). */
const INDEX_BATCH = 1000;
/** How long index entries wait to go out together, as one batch. */
const INDEX_FLUSH_MS = 20;
/** One subject's waiting entries, as two arrays (no tuple per job). */
interface IndexBatch {
  subject: string;
  ids: string[];
  times: number[];
}
/** A queue consumer as #ensureConsumer wants it. */
interface LaneConsumer {
  name: string;
  filter: string;
  maxAckPending: number;
}
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface JobStorageDeps {
  /** For the consumers' names (jetstream.ts consumerNames). */
  nc: Pick<NatsConnection, 'request'>;
  config: NaqConfig;
  layout: Layout;
  log: Logger;
  retry: RetryOptions;
  jsm(): Promise<JetStreamManager>;
  kvm(): Kvm;
  publisher: AsyncPublisher;
  /** The server's max_payload, once the connection knows it. */
  maxPayload(): number | undefined;
}

function isStreamNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}

export class JobStorage {
  readonly #d: JobStorageDeps;
  #jobsKv: Promise<KV> | undefined;
  #workersKv: Promise<KV> | undefined;
  #waitingKv: Promise<KV> | undefined;
  #schedulesKv: Promise<KV> | undefined;
  #queuesKv: Promise<KV> | undefined;
  #ratesKv: Promise<KV> | undefined;
  #leaderKv: Promise<KV> | undefined;
  #dedupeKv: Promise<KV> | undefined;
  #flowsKv: Promise<KV> | undefined;
  #ready: Promise<void> | undefined;
  #repairing: Promise<void> | undefined;
  #lastRepair = 0;
  /** What the last ensureLayout created. */
  #created: string[] = [];
  readonly #afterRepair = new Set<() => void>();

  constructor(deps: JobStorageDeps) {
    this.#d = deps;
  }

  /** The largest message the server takes (its max_payload). */
  get maxMessageBytes(): number {
    return this.#d.maxPayload() ?? DEFAULT_MAX_PAYLOAD;
  }

  #storage() {
    return this.#d.config.storage.storage === 'memory' ? StorageType.Memory : StorageType.File;
  }

  /**
   * Streams and buckets of the job layer: created when missing, updated to match the config
   * where they differ (a setting the server will not change is left, with a warning naming it
   * and both values). Runs once, and again after repairLayout().
   */
  ensureLayout(): Promise<void> {
    this.#ready ??= this.#ensure().catch((error: unknown) => {
      // A refused subject reaches the caller as naq's error naming it, not the client's RequestError.
      throw toPermissionDenied(error) ?? error;
    });
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
  }

  async #ensure(): Promise<void> {
    const { config, layout, log } = this.#d;
    const jsm = await this.#d.jsm();
    const replicas = config.storage.replicas;
    const storage = this.#storage();
    const created: string[] = [];
    this.#created = created;
    const drift = { ...reportDrift(log), onCreated: (name: string) => created.push(name) };
    await ensureStream(
      jsm,
      {
        name: layout.jobsStream,
        subjects: [layout.allJobs],
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
    await ensureStream(jsm, { name: layout.deadStream, subjects: [layout.allDead], storage, num_replicas: replicas }, drift);
    // The job index lives as long as the records it points to.
    await ensureStream(
      jsm,
      {
        name: layout.indexStream,
        subjects: [layout.allIndex],
        storage,
        num_replicas: replicas,
        max_age: config.jobs.resultTtlMs * 1_000_000,
        discard: DiscardPolicy.Old,
      },
      drift,
    );
    // One notice per finished child of a flow or batch, until its parent is released.
    await ensureStream(
      jsm,
      {
        name: layout.flowsStream,
        subjects: [layout.allFlowNotices],
        storage,
        num_replicas: replicas,
        max_msgs_per_subject: 1,
        max_age: config.jobs.flowTtlMs * 1_000_000,
      },
      drift,
    );
    const kvm = this.#d.kvm();
    // A heartbeat TTL belongs to the workers that write those keys: a producer with another
    // worker.heartbeatMs must not change it under them. The leader bucket's TTL is the lease
    // a running leader renews against, so it is never changed under it: a scheduler follows
    // the bucket's TTL and says so (scheduler/logic.ts). Each process creates a missing bucket.
    const roles = config.roles;
    const bucket = async (name: string, ttlMs: number, ownsTtl = true) => {
      const existed = await jsm.streams.info(`KV_${name}`).then(
        () => true,
        (error: unknown) => {
          if (isStreamNotFound(error)) return false;
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
    this.#jobsKv = bucket(layout.jobsBucket, config.jobs.resultTtlMs);
    this.#workersKv = bucket(layout.workersBucket, config.worker.heartbeatMs * 3, roles.includes('worker'));
    this.#waitingKv = bucket(layout.waitingBucket, 0);
    this.#schedulesKv = bucket(layout.schedulesBucket, 0);
    this.#queuesKv = bucket(layout.queuesBucket, 0);
    this.#ratesKv = bucket(layout.ratesBucket, 0);
    this.#leaderKv = bucket(layout.leaderBucket, config.scheduler.leaderTtlMs, false);
    // A dedupe key lives this long after its last write, so no window may be longer (model/dedupe.ts).
    this.#dedupeKv = bucket(layout.dedupeBucket, config.jobs.dedupeMaxTtlMs);
    this.#flowsKv = bucket(layout.flowsBucket, config.jobs.flowTtlMs);
    await Promise.all([this.#jobsKv, this.#workersKv, this.#waitingKv, this.#schedulesKv, this.#queuesKv, this.#ratesKv, this.#leaderKv, this.#dedupeKv, this.#flowsKv]);
  }

  /**
   * Something naq needs was missing (a stream or bucket deleted by an operator, `naq streams
   * rm`): check the whole layout again and recreate what is gone. At most one check at a time,
   * and one every REPAIR_EVERY_MS, however many writes noticed. A loss noticed sooner after
   * the last check waits for its turn: skipped, it left its callers on the check made before
   * the loss, and a worker whose stream was deleted twice in a second failed instead of
   * making it again.
   */
  repairLayout(why: string): Promise<void> {
    if (this.#repairing) return this.#repairing;
    const now = Date.now();
    // What noticed it may be early: the server tells a pull its consumer is gone while it is
    // still deleting the stream, and a stream and consumer made again within those
    // milliseconds were seen (nats-server 2.9.10) to hold a job and a waiting pull and never
    // deliver. So the layout is checked a moment later.
    const at = Math.max(now + REPAIR_AFTER_MS, this.#lastRepair + REPAIR_EVERY_MS);
    this.#lastRepair = at;
    this.#ready = undefined;
    const { log } = this.#d;
    const repairing = delay(at - now)
      .then(() => this.ensureLayout())
      .then(
        () => {
          // Also noticed while a server restarts (nothing answers yet): only a real loss is news.
          if (this.#created.length) log.warn({ why, recreated: this.#created }, `recreated ${this.#created.join(', ')}: it had disappeared`);
          for (const fn of this.#afterRepair) fn();
        },
        (error: unknown) => log.warn({ err: error, why }, 'could not check the streams and buckets naq needs; trying again when next noticed'),
      );
    this.#repairing = repairing.finally(() => (this.#repairing = undefined));
    return this.#repairing;
  }

  /** Runs `fn` after each repair (watches reopen, the events stream is ensured by its service). */
  onRepair(fn: () => void): () => void {
    this.#afterRepair.add(fn);
    return () => this.#afterRepair.delete(fn);
  }

  /**
   * `withRetry`, and a bucket found missing (deleted under a running process) is recreated
   * and the operation tried once more, instead of failing every read until someone writes.
   */
  async withLayout<T>(operation: string, attempt: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(operation, this.#d.retry, attempt);
    } catch (error) {
      if (!isStreamNotFound(error)) throw error;
      await this.repairLayout(`${operation}: ${(error as Error).message}`);
      await this.ensureLayout();
      return withRetry(operation, this.#d.retry, attempt);
    }
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
  /** Per-queue settings an operator sets (paused), by queue name. */
  async queuesKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#queuesKv!;
  }
  /** The shared windows of rate limits, by queue name (src/model/rate-window.ts). */
  async ratesKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#ratesKv!;
  }
  async leaderKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#leaderKv!;
  }
  /** Dedupe windows by `<mode>.<key>` (src/actors/jobs/dedupe.ts). */
  async dedupeKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#dedupeKv!;
  }

  /** Parents waiting for children (flows, batches), by the parent's id (src/model/flow.ts). */
  async flowsKv(): Promise<KV> {
    await this.ensureLayout();
    return this.#flowsKv!;
  }

  /**
   * A KV put through the publish-async path: one pipelined write, acked by the server. The
   * record is cut down to fit one message if it has to be (record-codec.ts), never refused.
   */
  putRecord(record: JobRecord): Promise<PubAck> {
    if (isIndexedState(record.status)) this.indexFinal({ id: record.id, queue: record.queue, name: record.name, state: record.status, enqueuedAt: record.enqueuedAt });
    return this.putRecordBytes(record.id, encodeRecord(record, this.maxMessageBytes));
  }

  /**
   * A finished job's index entry (src/model/job-index.ts). Entries wait up to INDEX_FLUSH_MS
   * and go out as one batch per queue, state and name: batches of one event-loop turn cost
   * the worker ~12 % more CPU per job in paired runs here, batches of 20 ms ~2.5 %. The acks do
   * not wait for them (a held ack keeps a finished job's message in the stream, where it
   * blocks the next enqueue of its id), so a listing shows a job up to INDEX_FLUSH_MS after its
   * record, and a worker killed within that time leaves those jobs out of listings (getJob
   * still answers; a stopping worker flushes first). A batch that failed is logged.
   */
  indexFinal(entry: IndexEntry): void {
    if (!this.#d.config.jobs.index) return;
    // Found by queue, then name and state, without building the subject (measured: the
    // subject, its regex and a tuple per job were most of ~1.5 µs per job).
    let byName = this.#index.get(entry.queue);
    if (!byName) this.#index.set(entry.queue, (byName = new Map()));
    const key = entry.state === 'completed' ? entry.name : `${entry.state}\u0000${entry.name}`;
    let batch = byName.get(key);
    if (!batch) byName.set(key, (batch = { subject: indexSubject(this.#d.config.prefix, entry), ids: [], times: [] }));
    batch.ids.push(entry.id);
    batch.times.push(entry.enqueuedAt);
    // A full batch waits for the flush too, which cuts it into messages of INDEX_BATCH: a send
    // from here first ran when a window held more than INDEX_BATCH jobs, by then in optimized
    // code, and V8 threw the optimized job path away for it (--trace-deopt: `indexFinal`,
    // "insufficient type feedback for generic keyed access", bytecode offset 238, in about one
    // 100,000-job drain of six). What waits is bounded by the jobs finished in one window.
    this.#indexTimer ??= setTimeout(this.flushIndex, INDEX_FLUSH_MS);
  }

  /** Waiting entries: queue → (state and) name → batch. */
  readonly #index = new Map<string, Map<string, IndexBatch>>();
  #indexTimer: NodeJS.Timeout | undefined;

  /** Sends the waiting index batches now (a worker that stops calls it). */
  readonly flushIndex = (): void => {
    clearTimeout(this.#indexTimer);
    this.#indexTimer = undefined;
    for (const byName of this.#index.values()) for (const batch of byName.values()) this.#publishIndex(batch);
    this.#index.clear();
  };

  /** One message per INDEX_BATCH entries, oldest first. */
  #publishIndex({ subject, ids, times }: IndexBatch) {
    for (let from = 0; from < ids.length; from += INDEX_BATCH) {
      const to = Math.min(ids.length, from + INDEX_BATCH);
      this.#d.publisher.publish(subject, encodeIndexBatch(ids, times, from, to)).catch((error: unknown) => {
        this.#d.log.warn({ err: error, subject, jobs: to - from }, 'job index batch not written: these jobs are missing from listings');
      });
    }
  }

  /** A record already encoded (and known to fit). */
  putRecordBytes(id: string, bytes: Uint8Array): Promise<PubAck> {
    return this.#d.publisher.publish(`$KV.${this.#d.layout.jobsBucket}.${id}`, bytes);
  }

  /** The durable consumers a queue's workers share; its stream is recreated if it is gone. */
  async ensureConsumer(queue: string, maxAckPending: number): Promise<void> {
    try {
      await this.#ensureConsumer(queue, maxAckPending);
    } catch (error) {
      if (!isStreamNotFound(error)) throw error;
      await this.repairLayout(`stream ${this.#d.layout.jobsStream} not found`);
      await this.ensureLayout();
      await this.#ensureConsumer(queue, maxAckPending);
    }
  }

  /**
   * One consumer per priority level (Layout.laneToken), made or brought up to date. A consumer's
   * info makes nats-server count its backlog by matching its filter against every job's subject:
   * reading the 11 consumers of a queue twice over 100,000 waiting jobs took 420–540 ms of server
   * CPU at each worker start. So names say which exist, and of those only the default lane's config (and
   * the staging lane's, which differs) is read: the other lanes are changed before the default
   * one, so a default lane as wanted means they were brought up to date with it.
   */
  async #ensureConsumer(queue: string, maxAckPending: number): Promise<void> {
    const jsm = await this.#d.jsm();
    const { layout, config } = this.#d;
    const lane = (p: number): LaneConsumer => ({ name: layout.consumerName(queue, p), filter: layout.queueFilter(queue, p), maxAckPending });
    const main = lane(DEFAULT_PRIORITY);
    const others = PRIORITIES.filter((p) => p !== DEFAULT_PRIORITY).map(lane);
    // The group dispatcher's: it holds up to the lookahead, in enqueue order, to let groups take turns.
    const staging: LaneConsumer = { name: layout.stagingConsumer(queue), filter: layout.stagedSubject(queue, '>'), maxAckPending: config.jobs.groupLookahead };
    // Refused both the names and the list (a deployment that allows only what older
    // docs/security.md listed), which exist is not known: every lane is looked at by its info.
    const missing = await missingConsumers(this.#d.nc, jsm, layout.jobsStream, [main, ...others, staging].map((l) => l.name), apiTimeoutMs(config)).then(
      (names) => new Set(names),
      (error: unknown) => {
        if (isPermissionDenied(error)) return null;
        throw error;
      },
    );
    const exists = (name: string) => !missing?.has(name);
    const mainInfo = exists(main.name) ? await this.#consumerInfo(jsm, main.name) : null;
    const upToDate = mainInfo !== null && this.#asWanted(mainInfo.config, main);
    await Promise.all([
      ...others.map((l) => (upToDate && missing !== null && !missing.has(l.name) ? undefined : this.#ensureLane(jsm, l, exists(l.name)))),
      this.#ensureLane(jsm, staging, exists(staging.name)),
    ]);
    if (!upToDate) await this.#ensureLane(jsm, main, mainInfo !== null, mainInfo ?? undefined);
  }

  /** A consumer's info, or null when it is gone. */
  async #consumerInfo(jsm: JetStreamManager, name: string): Promise<ConsumerInfo | null> {
    try {
      return await jsm.consumers.info(this.#d.layout.jobsStream, name);
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return null;
      throw error;
    }
  }

  /** The ack wait the consumers are made with, in ns as JetStream counts it. */
  get #ackWaitNs(): number {
    return this.#d.config.worker.ackWaitMs * 1_000_000;
  }

  #asWanted(config: ConsumerConfig, lane: LaneConsumer): boolean {
    return config.ack_wait === this.#ackWaitNs && config.max_ack_pending === lane.maxAckPending;
  }

  /** Made when missing; its ack wait and max ack pending changed when they differ. */
  async #ensureLane(jsm: JetStreamManager, lane: LaneConsumer, exists: boolean, known?: ConsumerInfo): Promise<void> {
    const { layout } = this.#d;
    const info = known ?? (exists ? await this.#consumerInfo(jsm, lane.name) : null);
    const ackWait = this.#ackWaitNs;
    if (!info) {
      await jsm.consumers.add(layout.jobsStream, {
        durable_name: lane.name,
        filter_subject: lane.filter,
        ack_policy: AckPolicy.Explicit,
        ack_wait: ackWait,
        max_ack_pending: lane.maxAckPending,
        max_deliver: -1,
      });
      return;
    }
    if (!this.#asWanted(info.config, lane)) {
      await jsm.consumers.update(layout.jobsStream, lane.name, { ack_wait: ackWait, max_ack_pending: lane.maxAckPending });
    }
  }
}
