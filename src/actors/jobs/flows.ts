/**
 * Creating flows and batches (model/flow.ts). Every job is built and checked first; then the
 * parents' records go into the flows bucket (a child cannot finish before its parent waits for
 * it), then the jobs without children are published, pipelined. If a step fails, what was
 * created is taken back (records deleted, published jobs cancelled) and the call rejects: the
 * caller sees all or nothing.
 */
import { nuid } from '@nats-io/transport-node';
import { InvalidArgumentError, toError } from '../../core/errors.js';
import { withRetry } from '../../core/retry.js';
import { checkChildOptions, checkOnFailure, type BatchOptions, type FlowIds, type FlowRecord, type FlowSpec, type OnFailure } from '../../model/flow.js';
import { buildJob, encodeJson, WIRE_VERSION, type EnqueueItem, type JobMessage } from '../../model/job.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { NaqContext } from '../nats/context.js';
import { cancel } from './admin.js';
import { isQueued, publishJob } from './enqueue.js';

/** Publishes (and record creations) of one flow or batch in flight at once. */
const WINDOW = 1000;

interface Node {
  message: JobMessage;
  onFailure: OnFailure;
  children: Node[];
}

/** A job of a flow or batch, built and checked; `parent` set when it has one. */
function built(ctx: NaqContext, name: string, data: unknown, opts: FlowSpec['opts'], queue: string | undefined, id: string, parent: string | undefined, at: string): JobMessage {
  checkChildOptions(opts, at);
  const { message } = buildJob(name, data, { ...opts, ...(queue !== undefined ? { queue } : {}) }, id, ctx.defaults);
  if (parent !== undefined) message.parent = parent;
  return message;
}

function buildTree(ctx: NaqContext, spec: FlowSpec, parent: string | undefined, at: string, seen: Set<string>, chosen: string[]): Node {
  if (!spec || typeof spec !== 'object') throw new InvalidArgumentError(`${at}: a flow node must be an object { name, data?, queue?, opts?, children? }`);
  const id = spec.opts?.jobId ?? nuid.next();
  if (spec.opts?.jobId !== undefined) chosen.push(id);
  if (seen.has(id)) throw new InvalidArgumentError(`${at}: job id ${id} appears twice in the flow`);
  seen.add(id);
  const message = built(ctx, spec.name, spec.data, spec.opts, spec.queue, id, parent, at);
  const onFailure = checkOnFailure(spec.onFailure, at);
  if (spec.children !== undefined && !Array.isArray(spec.children)) throw new InvalidArgumentError(`${at}: children must be an array`);
  const children = (spec.children ?? []).map((child, i) => buildTree(ctx, child, id, `${at}.children[${i}]`, seen, chosen));
  return { message, onFailure, children };
}

function recordOf(kind: FlowRecord['kind'], job: JobMessage, total: number, children?: Node[]): FlowRecord {
  const record: FlowRecord = { v: WIRE_VERSION, kind, id: job.id, state: 'waiting', job, total, createdAt: job.ts };
  if (children) {
    record.children = children.map((c) => c.message.id);
    const lenient = children.filter((c) => c.onFailure !== 'fail');
    if (lenient.length) record.onFailure = Object.fromEntries(lenient.map((c) => [c.message.id, c.onFailure as Exclude<OnFailure, 'fail'>]));
  }
  return record;
}

/** What was created so far, to take back if a later step fails. */
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
      if (isWrongLastSequence(error)) throw new InvalidArgumentError(`${record.id} is already the parent of a flow or batch: choose another id`);
      throw error;
    }
    this.records.push(record.id);
  }

  async publish(message: JobMessage): Promise<void> {
    await publishJob(this.ctx, message, encodeJson(message), `${message.id}:${message.ts}`);
    this.jobs.push(message.id);
  }

  /** Records first, so no parent is released by the cancellations that follow. */
  async undo(): Promise<void> {
    const kv = await this.ctx.storage.flowsKv();
    await Promise.allSettled(this.records.map((id) => kv.delete(id)));
    for (let i = 0; i < this.jobs.length; i += WINDOW) await Promise.allSettled(this.jobs.slice(i, i + WINDOW).map((id) => cancel(this.ctx, id)));
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

async function create(ctx: NaqContext, records: FlowRecord[], jobs: JobMessage[], chosen: string[]): Promise<void> {
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
  const chosen: string[] = [];
  const root = buildTree(ctx, spec, undefined, 'flow', new Set(), chosen);
  if (root.children.length === 0) throw new InvalidArgumentError('flow: the root has no children (enqueue a single job with enqueue())');
  const records: FlowRecord[] = [];
  const leaves: JobMessage[] = [];
  const walk = (node: Node) => {
    if (node.children.length === 0) return void leaves.push(node.message);
    records.push(recordOf('flow', node.message, node.children.length, node.children));
    node.children.forEach(walk);
  };
  walk(root);
  await create(ctx, records, leaves, chosen);
  const ids = (node: Node): FlowIds => (node.children.length ? { id: node.message.id, children: node.children.map(ids) } : { id: node.message.id });
  return ids(root);
}

/**
 * Enqueues jobs as one batch: once every one of them finished (completed, or failed for good,
 * or cancelled), the completion job runs once, with the counts as `ctx.batch`. Returns the
 * batch's id, which is its completion job's id.
 */
export async function enqueueBatch(ctx: NaqContext, items: EnqueueItem[], options: BatchOptions): Promise<string> {
  if (!Array.isArray(items) || items.length === 0) throw new InvalidArgumentError('enqueueBatch needs at least one job');
  const done = options?.onComplete;
  if (!done || typeof done !== 'object') throw new InvalidArgumentError('enqueueBatch needs onComplete: { name, data?, queue?, opts? }');
  const id = options.batchId ?? nuid.next();
  const completion = built(ctx, done.name, done.data, done.opts, done.queue, id, undefined, 'onComplete');
  const seen = new Set<string>([id]);
  const chosen = options.batchId !== undefined ? [id] : [];
  const jobs = items.map((item, i) => {
    const at = `jobs[${i}]`;
    const jobId = item.opts?.jobId ?? nuid.next();
    if (item.opts?.jobId !== undefined) chosen.push(jobId);
    if (seen.has(jobId)) throw new InvalidArgumentError(`${at}: job id ${jobId} appears twice in the batch`);
    seen.add(jobId);
    const { queue, ...opts } = item.opts ?? {};
    return built(ctx, item.name, item.data, opts, queue, jobId, id, at);
  });
  await create(ctx, [recordOf('batch', completion, jobs.length)], jobs, chosen);
  return id;
}
