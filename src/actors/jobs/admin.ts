/** Operating jobs and queues: cancel, re-run a dead job, purge, stats, live workers. */
import { JetStreamApiError } from '@nats-io/jetstream';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { encodeJson, recordFromMessage, TERMINAL_STATUSES, WIRE_VERSION, type DeadLetter, type JobMessage, type JobRecord, type QueueStats, type WorkerInfo } from '../../model/job.js';
import { isPausedEntry, type QueueSettings } from '../../model/queue-settings.js';
import { validateJobId, validateQueue } from '../../model/layout.js';
import { toPermissionDenied } from '../../core/permissions.js';
import { withRetry } from '../../core/retry.js';
import type { NaqContext } from '../nats/context.js';
import { publishJob } from './enqueue.js';
import { getJob, pendingMessage } from './reads.js';

const decoder = new TextDecoder();

/**
 * Cancels a job: a waiting job is dropped; a pending one is removed from the queue; a running
 * one is told to abort (its worker records the cancellation). Returns what it did.
 */
export async function cancel(ctx: NaqContext, id: string): Promise<{ id: string; status: 'cancelled' | 'cancelling' | JobRecord['status'] }> {
  validateJobId(id);
  const waitingKv = await ctx.storage.waitingKv();
  const waiting = await waitingKv.get(id);
  if (waiting && waiting.operation === 'PUT') {
    const job = waiting.json<JobMessage>();
    await waitingKv.delete(id);
    await ctx.storage.putRecord({ ...recordFromMessage(job, 'cancelled'), finishedAt: Date.now() });
    ctx.events.emit({ type: 'job.cancelled', queue: job.queue, jobId: id, data: { name: job.name, waiting: true } });
    return { id, status: 'cancelled' };
  }
  const pending = await pendingMessage(ctx, id);
  if (pending) {
    const jsm = await ctx.jsm();
    await jsm.streams.deleteMessage(ctx.layout.jobsStream, pending.seq, false).catch((error: unknown) => {
      // Gone already (a worker took it) is fine; a refused delete is not.
      const denied = toPermissionDenied(error);
      if (denied) throw denied;
      return false;
    });
    await ctx.storage.putRecord({ ...recordFromMessage(pending.job, 'cancelled'), finishedAt: Date.now() });
    ctx.events.emit({ type: 'job.cancelled', queue: pending.job.queue, jobId: id, data: { name: pending.job.name, pending: true } });
    // A worker may already hold it (delivered, not started, or running): tell it.
    ctx.nc.publish(ctx.layout.cancelSubject(pending.job.queue), id);
    return { id, status: 'cancelled' };
  }
  const record = await getJob(ctx, id);
  if (!record) throw new NotFoundError(`job ${id}`);
  if (TERMINAL_STATUSES.has(record.status)) return { id, status: record.status };
  ctx.nc.publish(ctx.layout.cancelSubject(record.queue), id);
  return { id, status: 'cancelling' };
}

/** Re-enqueues a dead job with fresh attempts; the record keeps its history. */
export async function retryDead(ctx: NaqContext, id: string): Promise<{ id: string }> {
  const record = await getJob(ctx, id);
  if (!record) throw new NotFoundError(`job ${id}`);
  if (record.status !== 'failed' || record.deadSeq === undefined) {
    throw new InvalidArgumentError(`job ${id} is ${record.status}, not dead: only a dead job can be retried`);
  }
  return retryDeadLetter(ctx, record.deadSeq, record);
}

/**
 * Re-enqueues the job of the dead letter at `seq`; `record` is the job's record when it still
 * has one (its history is kept), absent once the bucket's TTL removed it.
 */
export async function retryDeadLetter(ctx: NaqContext, seq: number, record: JobRecord | null): Promise<{ id: string }> {
  const jsm = await ctx.jsm();
  const msg = await jsm.streams.getMessage(ctx.layout.deadStream, { seq });
  if (!msg) throw new NotFoundError(`dead letter ${seq}${record ? ` of job ${record.id}` : ''}`);
  const dead = JSON.parse(decoder.decode(msg.data)) as DeadLetter;
  const id = dead.jobId ?? record?.id ?? `(dead letter ${seq})`;
  if (!dead.job) throw new InvalidArgumentError(`job ${id} was never readable (${dead.reason}); it cannot be retried`);
  if (dead.dataTruncated) {
    throw new InvalidArgumentError(`job ${id}'s data (${dead.dataTruncated.bytes} bytes) did not fit in its dead letter; enqueue it again with its data instead`);
  }
  const job: JobMessage = { ...dead.job, ts: Date.now() };
  delete job.dependsOn;
  if (record) {
    const { error: _error, finishedAt: _finishedAt, ...kept } = record;
    await ctx.storage.putRecord({ ...kept, status: 'pending' });
  } else {
    await ctx.storage.putRecord({ ...recordFromMessage(dead.job, 'pending'), deadSeq: seq });
  }
  await publishJob(ctx, job, encodeJson(job), `${job.id}:retry:${seq}`);
  return { id: job.id };
}

export async function purgeQueue(ctx: NaqContext, queue: string): Promise<{ purged: number }> {
  validateQueue(queue);
  const jsm = await ctx.jsm();
  const r = await jsm.streams.purge(ctx.layout.jobsStream, { filter: ctx.layout.queueFilter(queue) });
  return { purged: r.purged };
}

/**
 * Live workers, from their heartbeats. The keys come from the bucket stream's subject counts,
 * not a KV key listing: that one opens a consumer and waits for the last key, and a heartbeat
 * expiring (TTL) between its count and its delivery left it waiting for the next idle
 * heartbeat, past any deadline.
 */
export async function listWorkers(ctx: NaqContext): Promise<WorkerInfo[]> {
  const kv = await ctx.storage.workersKv();
  const jsm = await ctx.jsm();
  const prefix = `$KV.${ctx.layout.workersBucket}.`;
  return withRetry('list workers', ctx.retry, async () => {
    const info = await jsm.streams.info(`KV_${ctx.layout.workersBucket}`, { subjects_filter: `${prefix}>` });
    const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
    const entries = await Promise.all(keys.map((key) => kv.get(key)));
    const workers: WorkerInfo[] = [];
    for (const e of entries) if (e && e.operation === 'PUT') workers.push(e.json<WorkerInfo>());
    return workers.sort((a, b) => a.id.localeCompare(b.id));
  });
}

/**
 * Pauses (or resumes) a queue for every worker, persisted in the queues bucket: each worker
 * follows its key and stops pulling within a moment (running jobs finish); a worker started
 * later reads it before its first pull.
 */
export async function setQueuePaused(ctx: NaqContext, queue: string, paused: boolean): Promise<{ queue: string; paused: boolean }> {
  validateQueue(queue);
  const kv = await ctx.storage.queuesKv();
  const settings: QueueSettings = { v: WIRE_VERSION, paused, updatedAt: Date.now() };
  await withRetry(`${paused ? 'pause' : 'resume'} queue ${queue}`, ctx.retry, () => kv.put(queue, encodeJson(settings)));
  ctx.events.emit({ type: paused ? 'queue.paused' : 'queue.resumed', queue });
  return { queue, paused };
}

async function isPaused(ctx: NaqContext, queue: string): Promise<boolean> {
  const entry = await (await ctx.storage.queuesKv()).get(queue);
  return isPausedEntry(entry);
}

export async function queueStats(ctx: NaqContext, queue: string): Promise<QueueStats> {
  validateQueue(queue);
  const jsm = await ctx.jsm();
  let pending = 0;
  let inFlight = 0;
  try {
    const c = await jsm.consumers.info(ctx.layout.jobsStream, ctx.layout.consumerName(queue));
    pending = c.num_pending;
    inFlight = c.num_ack_pending;
  } catch (error) {
    if (!(error instanceof JetStreamApiError)) throw error;
    // No worker ever consumed the queue: count its messages in the stream.
    const info = await jsm.streams.info(ctx.layout.jobsStream, { subjects_filter: ctx.layout.queueFilter(queue) });
    pending = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  }
  const dead = await jsm.streams.info(ctx.layout.deadStream, { subjects_filter: ctx.layout.deadSubject(queue) });
  const deadCount = Object.values(dead.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const workers = (await listWorkers(ctx)).filter((w) => w.queues.includes(queue)).length;
  return { queue, pending, inFlight, dead: deadCount, workers, paused: await isPaused(ctx, queue) };
}

/** Queues that have a consumer (every queue a worker ever served) and their stats. */
export async function listQueues(ctx: NaqContext): Promise<QueueStats[]> {
  const jsm = await ctx.jsm();
  const queues = new Set<string>();
  const prefix = `${ctx.config.prefix}-`;
  for await (const c of jsm.consumers.list(ctx.layout.jobsStream)) {
    if (c.name.startsWith(prefix)) queues.add(c.name.slice(prefix.length));
  }
  // A paused queue is listed even when it has neither a consumer nor jobs yet.
  await ctx.storage.queuesKv();
  const settingsPrefix = `$KV.${ctx.layout.queuesBucket}.`;
  const settings = await jsm.streams.info(`KV_${ctx.layout.queuesBucket}`, { subjects_filter: `${settingsPrefix}>` });
  for (const subject of Object.keys(settings.state.subjects ?? {})) queues.add(subject.slice(settingsPrefix.length));
  const info = await jsm.streams.info(ctx.layout.jobsStream, { subjects_filter: ctx.layout.allJobs });
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const queue = subject.split('.')[2];
    if (queue) queues.add(queue);
  }
  return Promise.all([...queues].sort().map((q) => queueStats(ctx, q)));
}
