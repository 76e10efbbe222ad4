/**
 * Flows and batches in the test mode: what the leader's flow tracker
 * (src/actors/scheduler/flows.ts) does, in memory. A child's final outcome (the engine's one
 * place for it) counts for its parent; a parent is published once all its children finished,
 * or failed at once when a flow child with onFailure `fail` failed. The plans, summaries and
 * the reading of children's results are the real ones (flow-plan.ts, flow-reads.ts).
 */
import { NotFoundError, type ErrorInfo } from '../core/errors.js';
import { batchStatus, closedRecord, isFatal, outcomesOf, type BatchStatus, type FlowNode } from '../actors/jobs/flow-reads.js';
import type { ChildNotice, ChildOutcomes, FlowRecord } from '../model/flow.js';
import type { JobMessage, JobRecord } from '../model/job.js';
import { validateJobId } from '../model/layout.js';

export interface FlowHost {
  now(): number;
  /** The stored record of a job, if any. */
  record(id: string): JobRecord | undefined;
  /** A job as getJob reads it. */
  getJob(id: string): JobRecord | null;
  /** Into its queue. */
  publish(job: JobMessage): void;
  /** Its dead letter, failed record and events (a job that waited and will never run). */
  fail(job: JobMessage, error: ErrorInfo & { code: string }, data: Record<string, unknown>): void;
}

interface Parent {
  record: FlowRecord;
  finished: Map<string, ChildNotice>;
}

export class TestFlows {
  readonly #host: FlowHost;
  readonly #parents = new Map<string, Parent>();

  constructor(host: FlowHost) {
    this.#host = host;
  }

  /** A parent with this id, waiting or closed (the real bucket keeps a closed one until its TTL). */
  has(id: string): boolean {
    return this.#parents.has(id);
  }

  add(records: FlowRecord[]): void {
    for (const record of records) this.#parents.set(record.id, { record, finished: new Map() });
  }

  /** A parent (or batch completion) waiting for its children. */
  waiting(id: string): JobMessage | undefined {
    const parent = this.#parents.get(id);
    return parent?.record.state === 'waiting' ? parent.record.job : undefined;
  }

  /** Cancel of a waiting parent: it is closed; its children go on. Returns its job, to record cancelled. */
  cancel(id: string): JobMessage | undefined {
    const parent = this.#parents.get(id);
    if (parent?.record.state !== 'waiting') return undefined;
    parent.record = { ...parent.record, state: 'cancelled', closedAt: this.#host.now() };
    return parent.record.job;
  }

  /** A job's record first said completed, failed or cancelled: its parent counts it. */
  finished(record: JobRecord): void {
    if (record.parent === undefined) return;
    const parent = this.#parents.get(record.parent);
    if (!parent || parent.record.state !== 'waiting') return;
    const notice: ChildNotice = { v: 1, id: record.id, status: record.status as ChildNotice['status'] };
    if (record.error) notice.error = { name: record.error.name, message: record.error.message, ...(record.error.code !== undefined ? { code: record.error.code } : {}) };
    const { record: flow } = parent;
    if (flow.kind === 'flow' && !flow.children?.includes(record.id)) return;
    parent.finished.set(record.id, notice);
    const closed = closedRecord(flow, isFatal(flow, notice) ? notice : null, parent.finished.size, parent.finished.values(), this.#host.now());
    if (!closed) return;
    parent.record = closed;
    if (closed.state === 'failed') this.#host.fail(flow.job, { name: 'ChildFailedError', code: 'CHILD_FAILED', message: closed.reason! }, { child: record.id });
    else this.#host.publish(closed.summary ? { ...flow.job, batch: closed.summary } : flow.job);
  }

  /** What a flow parent reads of its children (`ctx.childResults()`, `ctx.childFailures()`). */
  children(parentId: string): ChildOutcomes {
    const record = this.#parents.get(parentId)?.record;
    if (!record || record.kind !== 'flow' || !record.children) return { results: {}, failures: {} };
    return outcomesOf(record, record.children.map((c) => this.#host.record(c) ?? null));
  }

  getFlow(id: string): FlowNode {
    validateJobId(id);
    const node = this.#node(id, undefined);
    if (!node) throw new NotFoundError(`flow ${id}`);
    return node;
  }

  #node(id: string, onFailure: FlowNode['onFailure']): FlowNode | null {
    const record = this.#parents.get(id)?.record;
    const job = this.#host.getJob(id);
    if (!record && !job) return null;
    const node: FlowNode = { id, name: job?.name ?? record!.job.name, queue: job?.queue ?? record!.job.queue, state: job?.status ?? (record?.state === 'waiting' ? 'waiting' : 'unknown') };
    if (onFailure) node.onFailure = onFailure;
    if (job?.error) node.error = job.error.message;
    else if (record?.reason) node.error = record.reason;
    if (record?.kind === 'flow' && record.children) {
      node.children = record.children.map((c) => this.#node(c, record.onFailure?.[c]) ?? { id: c, name: '?', queue: '?', state: 'unknown' });
    }
    return node;
  }

  getBatch(id: string): BatchStatus {
    validateJobId(id);
    const parent = this.#parents.get(id);
    if (!parent || parent.record.kind !== 'batch') throw new NotFoundError(`batch ${id}`);
    return batchStatus(parent.record, parent.finished.values(), parent.record.state === 'released' ? this.#host.getJob(id)?.status : undefined);
  }
}
