/** Operating jobs and queues: cancel, re-run a dead job, purge, stats, live workers. */
import { JetStreamApiError } from '@nats-io/jetstream';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { encodeJson, recordFromMessage, TERMINAL_STATUSES, type DeadLetter, type JobMessage, type JobRecord, type QueueStats, type WorkerInfo } from '../../model/job.js';
import { settingsOf, type GroupLimit, type RateLimit } from '../../model/queue-settings.js';
import { updateQueueSettings } from '../nats/queue-settings.js';
import { parseLane, PRIORITIES, validateJobId, validateQueue } from '../../model/layout.js';
import { toPermissionDenied } from '../../core/permissions.js';
import { withRetry } from '../../core/retry.js';
import type { NaqContext } from '../nats/context.js';
import { publishJob } from './enqueue.js';
import { getJob, pendingMessage } from './reads.js';
import { delayed } from './operate.js';
import { cancelUnstarted } from './fail-unstarted.js';
import type { FlowRecord } from '../../model/flow.js';
import { apiTimeoutMs, consumerNames, isWrongLastSequence } from '../nats/jetstream.js';

const decoder = new TextDecoder();

/**
 * Cancels a job: a waiting job is dropped; a pending one is removed from the queue; a running
 * one is told to abort (its worker records the cancellation). Returns what it did.
 */
export async function cancel(ctx: NaqContext, id: string): Promise<{ id: string; status: 'cancelled' | 'cancelling' | JobRecord['status'] }> {
  validateJobId(id);
  // Delayed: its one-shot schedule goes (revision-checked: a fire on its way wins, and the
  // job is then cancelled as a pending or running one below).
  const later = await delayed(ctx, id);
  if (later) {
    const removed = await (await ctx.storage.schedulesKv()).delete(id, { previousSeq: later.revision }).then(
      () => true,
      (error: unknown) => {
        if (isWrongLastSequence(error)) return false;
        throw error;
      },
    );
    if (removed) {
      const s = later.record;
      const job = { id, name: s.name, queue: s.queue, attempts: s.opts.attempts ?? ctx.defaults.attempts, ts: s.createdAt };
      await ctx.storage.putRecord({ ...recordFromMessage(job, 'cancelled'), finishedAt: Date.now() });
      ctx.events.emit({ type: 'job.cancelled', queue: s.queue, jobId: id, data: { name: s.name, delayed: true } });
      return { id, status: 'cancelled' };
    }
  }
  const waitingKv = await ctx.storage.waitingKv();
  const waiting = await waitingKv.get(id);
  if (waiting && waiting.operation === 'PUT') {
    const job = waiting.json<JobMessage>();
    await waitingKv.delete(id);
    await cancelUnstarted(ctx, job, { waiting: true });
    return { id, status: 'cancelled' };
  }
  if (await cancelWaitingParent(ctx, id)) return { id, status: 'cancelled' };
  const pending = await pendingMessage(ctx, id);
  if (pending) {
    const jsm = await ctx.jsm();
    await jsm.streams.deleteMessage(ctx.layout.jobsStream, pending.seq, false).catch((error: unknown) => {
      // Gone already (a worker took it) is fine; a refused delete is not.
      const denied = toPermissionDenied(error);
      if (denied) throw denied;
      return false;
    });
    await cancelUnstarted(ctx, pending.job, { pending: true });
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

/**
 * A flow parent (or batch completion) still waiting for its children: its record is closed
 * (revision-checked: a release on its way wins). Its children go on; their outcomes are not
 * waited for any more.
 */
async function cancelWaitingParent(ctx: NaqContext, id: string): Promise<boolean> {
  const kv = await ctx.storage.flowsKv();
  const entry = await kv.get(id);
  if (!entry || entry.operation !== 'PUT') return false;
  const record = entry.json<FlowRecord>();
  if (record.state === 'cancelled') {
    // Closed by a cancel that did not get to write its record: finished now.
    const existing = await (await ctx.storage.jobsKv()).get(id);
    if (existing?.operation === 'PUT' && existing.json<JobRecord>().enqueuedAt === record.job.ts) return false;
    await cancelUnstarted(ctx, record.job, { waitingChildren: true });
    return true;
  }
  if (record.state !== 'waiting') return false;
  try {
    await kv.update(id, encodeJson({ ...record, state: 'cancelled', closedAt: Date.now() }), entry.revision);
  } catch (error) {
    if (isWrongLastSequence(error)) return false;
    throw error;
  }
  await cancelUnstarted(ctx, record.job, { waitingChildren: true });
  return true;
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
  // Run on its own it would not wait for its children, nor read their results.
  if (dead.error?.code === 'CHILD_FAILED') throw new InvalidArgumentError(`job ${id} is a flow parent that failed because ${dead.reason}: it cannot be retried on its own; enqueue the flow again`);
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
  // One purge per priority lane: a filter cannot take the queue token with a wildcard suffix.
  const purged = await Promise.all(ctx.layout.queueFilters(queue).map((filter) => jsm.streams.purge(ctx.layout.jobsStream, { filter })));
  return { purged: purged.reduce((sum, r) => sum + r.purged, 0) };
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
  await updateQueueSettings(ctx, queue, `${paused ? 'pause' : 'resume'} queue ${queue}`, (s) => ({ ...s, paused }));
  ctx.events.emit({ type: paused ? 'queue.paused' : 'queue.resumed', queue });
  return { queue, paused };
}

/** A rate limit must be whole numbers the window can hold: refused here, naming the field. */
function validateLimit(limit: RateLimit): RateLimit {
  for (const key of ['max', 'durationMs'] as const) {
    const v = (limit as unknown as Record<string, unknown>)?.[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`limit.${key} must be an integer >= 1, got ${JSON.stringify(v)}`);
  }
  if (limit.max > 100_000) throw new InvalidArgumentError(`limit.max must be at most 100000, got ${limit.max}`);
  if (limit.durationMs > 24 * 3600_000) throw new InvalidArgumentError(`limit.durationMs must be at most 86400000 (a day), got ${limit.durationMs}`);
  return { max: limit.max, durationMs: limit.durationMs };
}

/**
 * Sets (or, with null, clears) a queue's rate limit: at most `max` job starts in any window of
 * `durationMs`, across every worker of the queue. Persisted beside the pause setting; workers
 * follow it within a moment.
 */
export async function setQueueLimit(ctx: NaqContext, queue: string, limit: RateLimit | null): Promise<{ queue: string; limit: RateLimit | null }> {
  validateQueue(queue);
  const checked = limit === null ? null : validateLimit(limit);
  await updateQueueSettings(ctx, queue, `limit queue ${queue}`, (s) => {
    const { limit: _old, ...rest } = s;
    return checked ? { ...rest, limit: checked } : rest;
  });
  ctx.events.emit({ type: 'queue.limited', queue, data: { limit: checked } });
  return { queue, limit: checked };
}

/**
 * Sets (or, with null, clears) the limits every group of a queue gets: at most `concurrency`
 * of a group's jobs released and not finished, and at most `rate.max` released per
 * `rate.durationMs`, across every worker. The group dispatcher follows it within a moment.
 */
export async function setGroupLimit(ctx: NaqContext, queue: string, limit: GroupLimit | null): Promise<{ queue: string; groups: GroupLimit | null }> {
  validateQueue(queue);
  let checked: GroupLimit | null = null;
  if (limit !== null) {
    checked = {};
    const c = (limit as { concurrency?: unknown })?.concurrency;
    if (c !== undefined) {
      if (typeof c !== 'number' || !Number.isInteger(c) || c < 1 || c > 100_000) throw new InvalidArgumentError(`groups.concurrency must be an integer from 1 to 100000, got ${JSON.stringify(c)}`);
      checked.concurrency = c;
    }
    if (limit.rate !== undefined) checked.rate = validateLimit(limit.rate);
    if (checked.concurrency === undefined && !checked.rate) throw new InvalidArgumentError('a group limit needs concurrency or rate (or null to clear it)');
  }
  await updateQueueSettings(ctx, queue, `limit the groups of queue ${queue}`, (s) => {
    const { groups: _old, ...rest } = s;
    return checked ? { ...rest, groups: checked } : rest;
  });
  ctx.events.emit({ type: 'queue.limited', queue, data: { groups: checked } });
  return { queue, groups: checked };
}

async function queueSettings(ctx: NaqContext, queue: string) {
  return settingsOf(await (await ctx.storage.queuesKv()).get(queue));
}

export async function queueStats(ctx: NaqContext, queue: string): Promise<QueueStats> {
  validateQueue(queue);
  const jsm = await ctx.jsm();
  let pending = 0;
  let inFlight = 0;
  const lanes = await Promise.all(
    PRIORITIES.map(async (p) => {
      try {
        const c = await jsm.consumers.info(ctx.layout.jobsStream, ctx.layout.consumerName(queue, p));
        return { pending: c.num_pending, inFlight: c.num_ack_pending };
      } catch (error) {
        if (!(error instanceof JetStreamApiError)) throw error;
        // No worker ever consumed the lane: count its messages in the stream.
        const info = await jsm.streams.info(ctx.layout.jobsStream, { subjects_filter: ctx.layout.queueFilter(queue, p) });
        return { pending: Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0), inFlight: 0 };
      }
    }),
  );
  for (const lane of lanes) {
    pending += lane.pending;
    inFlight += lane.inFlight;
  }
  // Grouped jobs the group dispatcher has not released yet wait, whether it holds them or not.
  try {
    const staging = await jsm.consumers.info(ctx.layout.jobsStream, ctx.layout.stagingConsumer(queue));
    pending += staging.num_pending + staging.num_ack_pending;
  } catch (error) {
    if (!(error instanceof JetStreamApiError)) throw error;
    const info = await jsm.streams.info(ctx.layout.jobsStream, { subjects_filter: ctx.layout.stagedSubject(queue, '>') });
    pending += Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  }
  const dead = await jsm.streams.info(ctx.layout.deadStream, { subjects_filter: ctx.layout.deadSubject(queue) });
  const deadCount = Object.values(dead.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const workers = (await listWorkers(ctx)).filter((w) => w.queues.includes(queue)).length;
  const settings = await queueSettings(ctx, queue);
  return {
    queue,
    pending,
    inFlight,
    dead: deadCount,
    workers,
    paused: settings.paused,
    limit: settings.limit,
    ...(settings.groups ? { groups: settings.groups } : {}),
    ...(settings.holdUntil > Date.now() ? { heldUntil: settings.holdUntil } : {}),
  };
}

/** Queues that have a consumer (every queue a worker ever served) and their stats. */
export async function listQueues(ctx: NaqContext): Promise<QueueStats[]> {
  const jsm = await ctx.jsm();
  const queues = new Set<string>();
  const prefix = `${ctx.config.prefix}-`;
  for (const name of await consumerNames(ctx.nc, jsm, ctx.layout.jobsStream, apiTimeoutMs(ctx.config))) {
    if (name.startsWith(prefix)) queues.add(parseLane(name.slice(prefix.length)).queue);
  }
  // A paused queue is listed even when it has neither a consumer nor jobs yet.
  await ctx.storage.queuesKv();
  const settingsPrefix = `$KV.${ctx.layout.queuesBucket}.`;
  const settings = await jsm.streams.info(`KV_${ctx.layout.queuesBucket}`, { subjects_filter: `${settingsPrefix}>` });
  for (const subject of Object.keys(settings.state.subjects ?? {})) queues.add(subject.slice(settingsPrefix.length));
  const info = await jsm.streams.info(ctx.layout.jobsStream, { subjects_filter: ctx.layout.allJobs });
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const lane = subject.split('.')[2];
    if (lane) queues.add(parseLane(lane).queue);
  }
  return Promise.all([...queues].sort().map((q) => queueStats(ctx, q)));
}
