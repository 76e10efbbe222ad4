/**
 * Flows and batches: a parent job that waits for a set of children (docs/wire-format.md 3.9).
 * A flow's parent runs after its children finished and reads their results; a batch's
 * completion job runs once after every job of the batch finished, with the counts. Both are one
 * record in the flows bucket, keyed by the parent's id, and one notice per finished child.
 */
import { InvalidArgumentError, type ErrorInfo } from '../core/errors.js';
import { WIRE_VERSION, type BatchSummary, type JobMessage, type JobOptions } from './job.js';

/** What a flow does when a child fails for good (or is cancelled). */
export const ON_FAILURE = ['fail', 'ignore', 'continue'] as const;
export type OnFailure = (typeof ON_FAILURE)[number];

/** One node of `enqueueFlow`: a job, and the children it waits for. */
export interface FlowSpec {
  name: string;
  data?: unknown;
  queue?: string;
  opts?: Omit<JobOptions, 'dependsOn' | 'dedupe' | 'queue'>;
  /**
   * When this node fails for good or is cancelled, what its parent does: `fail` (default: the
   * parent fails at once, naming it), `ignore` (the parent runs without its result) or
   * `continue` (the parent runs and sees its error in `ctx.childFailures()`).
   */
  onFailure?: OnFailure;
  children?: FlowSpec[];
}

/** The ids `enqueueFlow` gave the tree, in its shape. */
export interface FlowIds {
  id: string;
  children?: FlowIds[];
}

/** The job a batch runs once all its jobs finished. */
export interface BatchCompletion {
  name: string;
  data?: unknown;
  queue?: string;
  opts?: Omit<JobOptions, 'dependsOn' | 'dedupe' | 'queue'>;
}

export interface BatchOptions {
  onComplete: BatchCompletion;
  /** The batch's id, which is also its completion job's id (generated when absent). */
  batchId?: string;
}

/** What a batch's completion job is given as `ctx.batch` (defined with the job message it travels in). */
export type { BatchSummary } from './job.js';

/** At most this many failed ids travel in a completion job's summary (the count is exact). */
export const MAX_FAILED_IDS = 1000;

export type FlowState = 'waiting' | 'released' | 'failed' | 'cancelled';

/** The record of a parent waiting for children, in the flows bucket by the parent's id. */
export interface FlowRecord {
  v: typeof WIRE_VERSION;
  kind: 'flow' | 'batch';
  id: string;
  state: FlowState;
  /** The parent job, as it is published once its children finished. */
  job: JobMessage;
  /** How many children must finish. */
  total: number;
  /** A flow's children, by id (a batch's jobs are counted, not listed). */
  children?: string[];
  /** Children whose onFailure is not `fail`. */
  onFailure?: Record<string, Exclude<OnFailure, 'fail'>>;
  createdAt: number;
  /** When the parent was released, failed or cancelled. */
  closedAt?: number;
  /** Why the parent failed (a child that failed with onFailure `fail`), and which child. */
  reason?: string;
  failedBy?: string;
  /** A batch's counts, once released. */
  summary?: BatchSummary;
}

/** A finished child, on `<prefix>.flows.<parentId>.<childId>`. */
export interface ChildNotice {
  v: typeof WIRE_VERSION;
  id: string;
  status: 'completed' | 'failed' | 'cancelled';
  error?: Pick<ErrorInfo, 'name' | 'code' | 'message'>;
}

/** What a flow's parent reads of its children (`ctx.childResults()`, `ctx.childFailures()`). */
export interface ChildOutcomes {
  results: Record<string, unknown>;
  failures: Record<string, ErrorInfo>;
}

export function checkOnFailure(value: unknown, at: string): OnFailure {
  if (value === undefined) return 'fail';
  if (typeof value !== 'string' || !(ON_FAILURE as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`${at}: onFailure must be one of ${ON_FAILURE.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as OnFailure;
}

/** Options a flow node or batch job may not have: a parent waits for its children, nothing else. */
export function checkChildOptions(opts: JobOptions | undefined, at: string): void {
  if (!opts) return;
  if (opts.dependsOn !== undefined) throw new InvalidArgumentError(`${at}: dependsOn cannot be used in a flow or batch (the tree says what waits for what)`);
  if (opts.dedupe !== undefined) throw new InvalidArgumentError(`${at}: dedupe cannot be used in a flow or batch`);
}
