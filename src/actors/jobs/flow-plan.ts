/**
 * The plan of a flow or batch: every job built and checked (the real `buildJob`), the parents'
 * records, the jobs to publish, and the ids the caller chose. No I/O: `flows.ts` carries it out
 * on NATS, the test mode (src/testing/) in memory.
 */
import { nuid } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../../core/errors.js';
import { checkChildOptions, checkOnFailure, type BatchOptions, type FlowIds, type FlowRecord, type FlowSpec, type OnFailure } from '../../model/flow.js';
import { buildJob, WIRE_VERSION, type EnqueueItem, type JobDefaults, type JobMessage } from '../../model/job.js';

export interface FlowPlan {
  /** Parents, top down: created before any job is published. */
  records: FlowRecord[];
  /** The jobs without children, published once the records exist. */
  jobs: JobMessage[];
  /** Ids the caller chose: an id already pending or waiting is refused. */
  chosen: string[];
}

interface Node {
  message: JobMessage;
  onFailure: OnFailure;
  children: Node[];
}

/** A job of a flow or batch, built and checked; `parent` set when it has one. */
function built(defaults: JobDefaults, name: string, data: unknown, opts: FlowSpec['opts'], queue: string | undefined, id: string, parent: string | undefined, at: string): JobMessage {
  checkChildOptions(opts, at);
  const { message } = buildJob(name, data, { ...opts, ...(queue !== undefined ? { queue } : {}) }, id, defaults);
  if (parent !== undefined) message.parent = parent;
  return message;
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

export function planFlow(defaults: JobDefaults, spec: FlowSpec): FlowPlan & { ids: FlowIds } {
  const chosen: string[] = [];
  const seen = new Set<string>();
  const tree = (node: FlowSpec, parent: string | undefined, at: string): Node => {
    if (!node || typeof node !== 'object') throw new InvalidArgumentError(`${at}: a flow node must be an object { name, data?, queue?, opts?, children? }`);
    const id = node.opts?.jobId ?? nuid.next();
    if (node.opts?.jobId !== undefined) chosen.push(id);
    if (seen.has(id)) throw new InvalidArgumentError(`${at}: job id ${id} appears twice in the flow`);
    seen.add(id);
    const message = built(defaults, node.name, node.data, node.opts, node.queue, id, parent, at);
    const onFailure = checkOnFailure(node.onFailure, at);
    if (node.children !== undefined && !Array.isArray(node.children)) throw new InvalidArgumentError(`${at}: children must be an array`);
    return { message, onFailure, children: (node.children ?? []).map((child, i) => tree(child, id, `${at}.children[${i}]`)) };
  };
  const root = tree(spec, undefined, 'flow');
  if (root.children.length === 0) throw new InvalidArgumentError('flow: the root has no children (enqueue a single job with enqueue())');
  const records: FlowRecord[] = [];
  const jobs: JobMessage[] = [];
  const walk = (node: Node) => {
    if (node.children.length === 0) return void jobs.push(node.message);
    records.push(recordOf('flow', node.message, node.children.length, node.children));
    node.children.forEach(walk);
  };
  walk(root);
  const ids = (node: Node): FlowIds => (node.children.length ? { id: node.message.id, children: node.children.map(ids) } : { id: node.message.id });
  return { records, jobs, chosen, ids: ids(root) };
}

export function planBatch(defaults: JobDefaults, items: EnqueueItem[], options: BatchOptions): FlowPlan & { id: string } {
  if (!Array.isArray(items) || items.length === 0) throw new InvalidArgumentError('enqueueBatch needs at least one job');
  const done = options?.onComplete;
  if (!done || typeof done !== 'object') throw new InvalidArgumentError('enqueueBatch needs onComplete: { name, data?, queue?, opts? }');
  if (done.opts?.jobId !== undefined) throw new InvalidArgumentError('onComplete.opts.jobId: the completion job\'s id is the batch\'s; give it as batchId');
  const id = options.batchId ?? nuid.next();
  const completion = built(defaults, done.name, done.data, done.opts, done.queue, id, undefined, 'onComplete');
  const seen = new Set<string>([id]);
  const chosen = options.batchId !== undefined ? [id] : [];
  const jobs = items.map((item, i) => {
    const at = `jobs[${i}]`;
    const jobId = item.opts?.jobId ?? nuid.next();
    if (item.opts?.jobId !== undefined) chosen.push(jobId);
    if (seen.has(jobId)) throw new InvalidArgumentError(`${at}: job id ${jobId} appears twice in the batch`);
    seen.add(jobId);
    const { queue, ...opts } = item.opts ?? {};
    return built(defaults, item.name, item.data, opts, queue, jobId, id, at);
  });
  return { id, records: [recordOf('batch', completion, jobs.length)], jobs, chosen };
}
