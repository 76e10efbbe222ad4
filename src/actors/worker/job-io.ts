/**
 * The job path's collaborators, as types (job-path.ts): what it reads and writes, as functions
 * the worker gives it (NATS-backed in nats-job-io.ts, in memory in the unit tests), and its
 * settings.
 */
import type { Clock } from '../../core/clock.js';
import type { ErrorInfo, PermissionDeniedError } from '../../core/errors.js';
import type { ChildNotice, ChildOutcomes } from '../../model/flow.js';
import type { Logger } from '../../core/log.js';
import type { JobMetrics } from '../../metrics/metrics.js';
import type { NaqEventInput } from '../../model/event.js';
import type { IndexEntry } from '../../model/job-index.js';
import type { JobMessage, JobRecord } from '../../model/job.js';
import type { Delivery } from './delivery.js';
import type { Handlers } from './handler.js';

/** What the job path reads and writes, as functions (the worker gives it NATS-backed ones). */
export interface JobIO {
  /** The job's record, or null (none, or deleted). */
  readRecord(id: string): Promise<JobRecord | null>;
  /** One record write; resolves once the server stored it. */
  writeRecord(id: string, bytes: Uint8Array): Promise<unknown>;
  /** A finished job's entry in the job index, queued for its next batch (not awaited), before its record is written. */
  index(entry: IndexEntry): void;
  /** A dead letter for `queue`; resolves with its stream sequence. */
  deadLetter(queue: string, bytes: Uint8Array): Promise<number>;
  /** Acks the delivery together with the next batch of writes. */
  ackLater(msg: Delivery): void;
  emit(event: NaqEventInput): void;
  /** The largest message the server takes. */
  maxMessageBytes(): number;
  /**
   * No job of the queue starts, on any worker, for `ms` (a handler was rate limited); with a
   * group, no job of that group (the group dispatcher holds it).
   */
  hold(ms: number, group?: string): void;
  /** A job with a group reached its final outcome: the group dispatcher frees its slot. */
  groupDone(job: JobMessage): void;
  /** A child of a flow or batch reached its final outcome (recorded): its parent is told, durably. */
  tellParent(parent: string, child: string, status: ChildNotice['status'], error?: ErrorInfo): Promise<unknown>;
  /** What a flow parent's children ended with (`ctx.childResults()`). */
  children(parentId: string): Promise<ChildOutcomes>;
}

export interface JobPathOptions {
  queue: string;
  workerId: string;
  handlers: Handlers;
  ackWaitMs: number;
  /** A job running this long gets an 'active' record (0: never). */
  activeAfterMs: number;
  clock: Clock;
  io: JobIO;
  log: Logger;
  /** A write the server refused for permissions: the worker must stop, not redeliver for ever. */
  onRefused(error: PermissionDeniedError): void;
  /** Counts and times attempts for Prometheus, when the process serves metrics. */
  metrics?: JobMetrics;
  /** Lines of ctx.log kept with a job's record (jobs.maxLogLines; default 100). */
  maxLogLines?: number;
  /**
   * Once per process() call: the delivery's handler settled, or it will not run. Its outcome
   * may still be on its way to the server; the worker may start another handler meanwhile.
   */
  onHandlerDone?(): void;
}

