/**
 * Creating flows and batches (model/flow.ts) on NATS, from their plan (flow-plan.ts: every job
 * built and checked first). The parents' records go into the flows bucket first (a child
 * cannot finish before its parent waits for it), then the jobs without children are published,
 * pipelined. If a step fails, what was created is taken back (records deleted, published jobs
 * cancelled) and the call rejects: the caller sees all or nothing.
 */
import { InvalidArgumentError, toError } from '../../core/errors.js';
import { withRetry } from '../../core/retry.js';
import type { BatchOptions, FlowIds, FlowRecord, FlowSpec } from '../../model/flow.js';
import { encodeJson, type EnqueueItem, type JobMessage } from '../../model/job.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { NaqContext } from '../nats/context.js';
import { cancel } from './admin.js';
import { isQueued, publishJob } from './enqueue.js';
import { planBatch, planFlow, type FlowPlan } from './flow-plan.js';

/** Publishes (and record creations) of one flow or batch in flight at once. */
const WINDOW = 1000;

/**
 * What was tried so far, to take back if a later step fails. An id is noted before its write:
 * a write whose answer was lost may have landed, and taking back one that did not is harmless.
 */
class Created {
  readonly records: string[] = [];
  readonly jobs: string[] = [];

  constructor(private readonly ctx: NaqContext) {}

  async createRecord(record: FlowRecord): Promise<void> {
    const bytes = encodeJson(record);
    if (bytes.length > this.ctx.storage.maxMessageBytes) {
      throw new InvalidArgumentError(`the record of ${record.kind} parent ${record.id} would be ${bytes.length} bytes, over the server's max_payload (${this.ctx.storage.maxMessageBytes}): give it fewer children, or nest them`);
    }
    const kv = await this.ctx.storage.flowsKv();
    try {
      await withRetry(`create ${record.kind} ${record.id}`, this.ctx.retry, () => kv.create(record.id, bytes));
    } catch (error) {
      if (!isWrongLastSequence(error)) {
        // No answer: it may have landed, and is ours if it did (a key held before is refused
        // with wrong-last-sequence, never a timeout).
        this.records.push(record.id);
        throw error;
      }
      // A retry after a create that landed but whose answer was lost finds our own record.
      const entry = await kv.get(record.id);
      const ours = entry?.operation === 'PUT' && entry.json<FlowRecord>().job.ts === record.job.ts && entry.json<FlowRecord>().job.id === record.job.id;
      if (!ours) throw new InvalidArgumentError(`${record.id} is already the parent of a flow or batch: choose another id`);
    }
    this.records.push(record.id);
  }

  async publish(message: JobMessage): Promise<void> {
    this.jobs.push(message.id);
    // Strict: a copy of a chosen id pending already (enqueued by someone else since the check)
    // would stand in for this child and never tell its parent.
    try {
      await publishJob(this.ctx, message, encodeJson(message), `${message.id}:${message.ts}`, undefined, { strict: true });
    } catch (error) {
      // Refused because another job of that id is pending: that one is not ours to cancel.
      if (error instanceof InvalidArgumentError) this.jobs.splice(this.jobs.lastIndexOf(message.id), 1);
      throw error;
    }
  }

  /**
   * Records first, so no parent is released by the cancellations that follow; then the
   * notices those cancellations sent, so a parent id used again does not count them.
   */
  async undo(): Promise<void> {
    const kv = await this.ctx.storage.flowsKv();
    await Promise.allSettled(this.records.map((id) => kv.delete(id)));
    for (let i = 0; i < this.jobs.length; i += WINDOW) await Promise.allSettled(this.jobs.slice(i, i + WINDOW).map((id) => cancel(this.ctx, id)));
    const jsm = await this.ctx.jsm();
    await Promise.allSettled(this.records.map((id) => jsm.streams.purge(this.ctx.layout.flowsStream, { filter: this.ctx.layout.flowNoticeSubject(id, '>') })));
  }
}

/** Runs `step` on every item, WINDOW at a time; the first failure rejects once the window settled. */
async function inWindows<T>(items: T[], step: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += WINDOW) {
    const results = await Promise.allSettled(items.slice(i, i + WINDOW).map(step));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/**
 * An id the caller chose that is pending or waiting already would be taken for the idempotent
 * case and never tell the parent: refused before anything is created.
 */
async function refuseQueued(ctx: NaqContext, chosen: string[]): Promise<void> {
  for (let i = 0; i < chosen.length; i += WINDOW) {
    const queued = await Promise.all(chosen.slice(i, i + WINDOW).map(async (id) => ((await isQueued(ctx, id)) ? id : null)));
    const taken = queued.find((id) => id !== null);
    if (taken) throw new InvalidArgumentError(`job ${taken} is already pending or waiting: the jobs of a flow or batch must be new`);
  }
}

async function create(ctx: NaqContext, { records, jobs, chosen }: FlowPlan): Promise<void> {
  await refuseQueued(ctx, chosen);
  const created = new Created(ctx);
  try {
    // Parents top down, then the jobs that wait for nothing.
    await inWindows(records, (r) => created.createRecord(r));
    await inWindows(jobs, (j) => created.publish(j));
  } catch (error) {
    await created.undo();
    throw toError(error);
  }
}

/**
 * Enqueues a tree of jobs: each parent runs after all its children finished, and reads their
 * results with `ctx.childResults()`. Returns the ids, in the tree's shape.
 */
export async function enqueueFlow(ctx: NaqContext, spec: FlowSpec): Promise<FlowIds> {
  const plan = planFlow(ctx.defaults, spec);
  await create(ctx, plan);
  return plan.ids;
}

/**
 * Enqueues jobs as one batch: once every one of them finished (completed, or failed for good,
 * or cancelled), the completion job runs once, with the counts as `ctx.batch`. Returns the
 * batch's id, which is its completion job's id.
 */
export async function enqueueBatch(ctx: NaqContext, items: EnqueueItem[], options: BatchOptions): Promise<string> {
  const plan = planBatch(ctx.defaults, items, options);
  await create(ctx, plan);
  return plan.id;
}
