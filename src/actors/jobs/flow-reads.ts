/**
 * Reading flows and batches: the tree with each node's state (`getFlow`), a batch's progress
 * (`getBatch`), and what a flow's parent reads of its children (`ctx.childResults()`).
 */
import { NotFoundError, type ErrorInfo } from '../../core/errors.js';
import { MAX_FAILED_IDS, type BatchSummary, type ChildNotice, type ChildOutcomes, type FlowRecord, type OnFailure } from '../../model/flow.js';
import { validateJobId } from '../../model/layout.js';
import type { JobRecord, JobStatus } from '../../model/job.js';
import type { NaqContext } from '../nats/context.js';
import { scanForward } from '../nats/stream-scan.js';
import { getJob } from './reads.js';

/** Reads in flight at once when a tree or a parent's children are looked up. */
const WINDOW = 500;

/** One node of `getFlow`. */
export interface FlowNode {
  id: string;
  name: string;
  queue: string;
  /** The job's status; `waiting` while a parent waits for its children; `unknown` when no record is left. */
  state: JobStatus | 'unknown';
  /** What its parent does if it fails (absent: `fail`). */
  onFailure?: Exclude<OnFailure, 'fail'>;
  error?: string;
  children?: FlowNode[];
  /** Children left out (`getFlow(id, { maxChildren, maxNodes })`). */
  more?: number;
}

/** `getBatch`: a batch's progress, then its outcome. */
export interface BatchStatus {
  id: string;
  /** `running` until every job finished; then the completion job's status. */
  state: 'running' | 'failed' | 'cancelled' | JobStatus | 'unknown';
  total: number;
  completed: number;
  failed: number;
  pending: number;
  failedIds: string[];
  /** The completion job (its id is the batch's). */
  completion: { id: string; name: string; queue: string };
  createdAt: number;
}

export async function flowRecord(ctx: NaqContext, id: string): Promise<FlowRecord | null> {
  const entry = await (await ctx.storage.flowsKv()).get(id);
  return entry && entry.operation === 'PUT' ? entry.json<FlowRecord>() : null;
}

async function inWindows<T, R>(items: T[], read: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += WINDOW) out.push(...(await Promise.all(items.slice(i, i + WINDOW).map(read))));
  return out;
}

/** The flow under `id` (any node of it), each node with its state. */
export async function getFlow(ctx: NaqContext, id: string, options: { maxChildren?: number; maxNodes?: number } = {}): Promise<FlowNode> {
  validateJobId(id);
  const limits = { maxChildren: options.maxChildren ?? Number.POSITIVE_INFINITY, nodesLeft: options.maxNodes ?? Number.POSITIVE_INFINITY };
  const node = await flowNode(ctx, id, undefined, limits);
  if (!node) throw new NotFoundError(`flow ${id}`);
  return node;
}

/** How many children a node shows, and how many nodes are left to read in the whole tree. */
interface Limits {
  maxChildren: number;
  nodesLeft: number;
}

async function flowNode(ctx: NaqContext, id: string, onFailure: FlowNode['onFailure'], limits: Limits): Promise<FlowNode | null> {
  const [record, job] = await Promise.all([flowRecord(ctx, id), getJob(ctx, id)]);
  if (!record && !job) return null;
  const node: FlowNode = {
    id,
    name: job?.name ?? record!.job.name,
    queue: job?.queue ?? record!.job.queue,
    state: job?.status ?? (record?.state === 'waiting' ? 'waiting' : 'unknown'),
  };
  if (onFailure) node.onFailure = onFailure;
  if (job?.error) node.error = job.error.message;
  else if (record?.reason) node.error = record.reason;
  if (record?.kind === 'flow' && record.children) {
    const shown = record.children.slice(0, Math.max(0, Math.min(limits.maxChildren, limits.nodesLeft)));
    limits.nodesLeft -= shown.length;
    const children = await inWindows(shown, (c) => flowNode(ctx, c, record.onFailure?.[c], limits));
    node.children = children.map((c, i) => c ?? { id: shown[i]!, name: '?', queue: '?', state: 'unknown' });
    if (shown.length < record.children.length) node.more = record.children.length - shown.length;
  }
  return node;
}

/** The notices of a parent's finished children, by child id. */
export async function childNotices(ctx: NaqContext, parent: string): Promise<Map<string, ChildNotice>> {
  const notices = new Map<string, ChildNotice>();
  await scanForward(ctx, ctx.layout.flowsStream, ctx.layout.flowNoticeSubject(parent, '*'), async (window) => {
    for (const m of window) {
      try {
        const notice = JSON.parse(new TextDecoder().decode(m.data)) as ChildNotice;
        notices.set(notice.id, notice);
      } catch {
        // Not a notice naq wrote: not counted.
      }
    }
    return true;
  });
  return notices;
}

/** A batch's counts from its children's notices. */
export function summarize(id: string, total: number, notices: Iterable<ChildNotice>, maxFailedIds: number): BatchSummary {
  const summary: BatchSummary = { id, total, completed: 0, failed: 0, failedIds: [] };
  for (const n of notices) {
    if (n.status === 'completed') summary.completed++;
    else {
      summary.failed++;
      if (summary.failedIds.length < maxFailedIds) summary.failedIds.push(n.id);
    }
  }
  return summary;
}

/** A flow child (onFailure `fail`, the default) that failed for good or was cancelled: its parent fails. */
export function isFatal(record: FlowRecord, notice: ChildNotice): boolean {
  return record.kind === 'flow' && notice.status !== 'completed' && !record.onFailure?.[notice.id];
}

/**
 * How a waiting parent closes, or null while it waits: failed, naming the first fatal child;
 * or released once `count` children finished (a batch's with its counts). The flow tracker
 * (src/actors/scheduler/flows.ts) and the test mode decide with it.
 */
export function closedRecord(record: FlowRecord, fatal: ChildNotice | null, count: number, finished: Iterable<ChildNotice>, now: number): FlowRecord | null {
  if (fatal) {
    const why = fatal.status === 'cancelled' ? 'was cancelled' : `failed: ${fatal.error?.message ?? 'no error given'}`;
    return { ...record, state: 'failed', reason: `child ${fatal.id} ${why}`, failedBy: fatal.id, closedAt: now };
  }
  if (count < record.total) return null;
  const summary = record.kind === 'batch' ? summarize(record.id, record.total, finished, MAX_FAILED_IDS) : undefined;
  return { ...record, state: 'released', closedAt: now, ...(summary ? { summary } : {}) };
}

export async function getBatch(ctx: NaqContext, id: string): Promise<BatchStatus> {
  validateJobId(id);
  const record = await flowRecord(ctx, id);
  if (!record || record.kind !== 'batch') throw new NotFoundError(`batch ${id}`);
  const notices = record.summary ? [] : (await childNotices(ctx, id)).values();
  const job = record.state === 'released' ? await getJob(ctx, id) : null;
  return batchStatus(record, notices, job?.status);
}

/** A batch's status from its record, its jobs' notices (until it is released) and its completion job's status. */
export function batchStatus(record: FlowRecord, notices: Iterable<ChildNotice>, completionStatus: JobStatus | undefined): BatchStatus {
  const { id } = record;
  const summary = record.summary ?? summarize(id, record.total, notices, Number.POSITIVE_INFINITY);
  const state: BatchStatus['state'] = record.state === 'waiting' ? 'running' : record.state === 'released' ? (completionStatus ?? 'unknown') : record.state;
  return {
    id,
    state,
    total: record.total,
    completed: summary.completed,
    failed: summary.failed,
    pending: Math.max(0, record.total - summary.completed - summary.failed),
    failedIds: summary.failedIds,
    completion: { id, name: record.job.name, queue: record.job.queue },
    createdAt: record.createdAt,
  };
}

/**
 * What a flow's parent reads of its children: the results of those that completed, and the
 * errors of those that failed with onFailure `continue` (an `ignore`d failure is in neither).
 */
export async function childOutcomes(ctx: NaqContext, parentId: string): Promise<ChildOutcomes> {
  const record = await flowRecord(ctx, parentId);
  if (!record || record.kind !== 'flow' || !record.children) return { results: {}, failures: {} };
  const kv = await ctx.storage.jobsKv();
  const records = await inWindows(record.children, async (c) => {
    const entry = await kv.get(c);
    return entry && entry.operation === 'PUT' ? entry.json<JobRecord>() : null;
  });
  return outcomesOf(record, records);
}

/** A flow parent's children's outcomes from their records (in the order of `record.children`). */
export function outcomesOf(record: FlowRecord, records: Array<JobRecord | null>): ChildOutcomes {
  const outcomes: ChildOutcomes = { results: {}, failures: {} };
  records.forEach((r, i) => {
    const id = record.children![i]!;
    if (r?.status === 'completed') outcomes.results[id] = r.result ?? null;
    else if (record.onFailure?.[id] === 'continue') outcomes.failures[id] = r?.error ?? ({ name: 'ChildFailedError', message: r ? `child ${id} ${r.status}` : `child ${id}: no record left` } as ErrorInfo);
  });
  return outcomes;
}
