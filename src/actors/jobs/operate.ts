/**
 * Operator actions on one job: run a delayed job now (`promote`), and remove a job that has
 * not started, or whose outcome is recorded, from wherever it is (`removeJob`).
 */
import type { FlowRecord } from '../../model/flow.js';
import { InvalidArgumentError, NotFoundError } from '../../core/errors.js';
import { toPermissionDenied } from '../../core/permissions.js';
import { buildJob, encodeJson } from '../../model/job.js';
import { validateDuration } from '../../core/duration.js';
import { parseLane, validateJobId } from '../../model/layout.js';
import type { ScheduleRecord } from '../../model/schedule.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { NaqContext } from '../nats/context.js';
import { publishJob } from './enqueue.js';
import { getJob, pendingMessage } from './reads.js';

/** A delayed job (`enqueueAt` / `enqueueIn`): its one-shot schedule, by the job id. */
export async function delayed(ctx: NaqContext, id: string): Promise<{ record: ScheduleRecord; revision: number } | null> {
  const entry = await (await ctx.storage.schedulesKv()).get(id);
  if (!entry || entry.operation !== 'PUT') return null;
  const record = entry.json<ScheduleRecord>();
  return record.kind === 'at' && record.status === 'active' ? { record, revision: entry.revision } : null;
}

/**
 * Runs a delayed job now. Its one-shot schedule is removed first, revision-checked, so the
 * scheduler leader can no longer fire it; the job is then published under the leader's own
 * Nats-Msg-Id for that fire time, so a fire already on its way is the same message.
 */
export async function promote(ctx: NaqContext, id: string): Promise<{ id: string; promoted: true }> {
  validateJobId(id);
  const found = await delayed(ctx, id);
  if (!found) {
    const record = await getJob(ctx, id);
    if (!record) throw new NotFoundError(`job ${id}`);
    throw new InvalidArgumentError(`job ${id} is ${record.status}, not delayed: only a delayed job can be promoted`);
  }
  const { record, revision } = found;
  const jobId = record.opts.jobId ?? record.id;
  const { message, bytes } = buildJob(record.name, record.data, { ...record.opts, queue: record.queue, jobId }, jobId, ctx.defaults);
  try {
    await (await ctx.storage.schedulesKv()).delete(id, { previousSeq: revision });
  } catch (error) {
    if (isWrongLastSequence(error)) throw new InvalidArgumentError(`job ${id} was fired or changed meanwhile; it is no longer delayed`);
    throw error;
  }
  await publishJob(ctx, message, bytes, `${record.id}:${record.nextRunAt}`);
  ctx.events.emit({ type: 'job.promoted', queue: record.queue, jobId, data: { name: record.name, wasDueAt: record.nextRunAt } });
  return { id, promoted: true };
}

/**
 * Moves a delayed job to run `delayMs` from now (0: at the scheduler leader's next look),
 * revision-checked against a fire on its way.
 */
export async function changeDelay(ctx: NaqContext, id: string, delayMs: number): Promise<{ id: string; runAt: number }> {
  validateJobId(id);
  validateDuration('delayMs', delayMs, 0);
  const found = await delayed(ctx, id);
  if (!found) {
    const record = await getJob(ctx, id);
    if (!record) throw new NotFoundError(`job ${id}`);
    throw new InvalidArgumentError(`job ${id} is ${record.status}, not delayed: only a delayed job's delay can change`);
  }
  const runAt = Date.now() + delayMs;
  const moved: ScheduleRecord = { ...found.record, nextRunAt: runAt, ...(found.record.startAt !== undefined ? { startAt: runAt } : {}) };
  try {
    await (await ctx.storage.schedulesKv()).update(id, encodeJson(moved), found.revision);
  } catch (error) {
    if (isWrongLastSequence(error)) throw new InvalidArgumentError(`job ${id} was fired or changed meanwhile; look again`);
    throw error;
  }
  ctx.events.emit({ type: 'job.delayed', queue: found.record.queue, jobId: id, data: { name: found.record.name, runAt, wasDueAt: found.record.nextRunAt } });
  return { id, runAt };
}

/**
 * Removes a job that is delayed, waiting on dependencies or pending, and its record; or the
 * record of a finished job. A job that runs now is refused: cancel it (its worker stops it
 * and records why), then remove it.
 */
export async function removeJob(ctx: NaqContext, id: string): Promise<{ id: string; removed: string }> {
  validateJobId(id);
  const schedule = await delayed(ctx, id);
  if (schedule) {
    await (await ctx.storage.schedulesKv()).delete(id, { previousSeq: schedule.revision }).catch((error: unknown) => {
      if (isWrongLastSequence(error)) throw new InvalidArgumentError(`job ${id} was fired or changed meanwhile; look again`);
      throw error;
    });
    ctx.events.emit({ type: 'job.removed', queue: schedule.record.queue, jobId: id, data: { was: 'delayed' } });
    return { id, removed: 'delayed' };
  }
  const record = await getJob(ctx, id);
  if (!record) throw new NotFoundError(`job ${id}`);
  if (record.status === 'active') throw new InvalidArgumentError(`job ${id} is running; cancel it first (naq job cancel ${id})`);
  if (record.status === 'waiting') {
    await (await ctx.storage.waitingKv()).delete(id);
    await removeWaitingParent(ctx, id);
  }
  const pending = await pendingMessage(ctx, id);
  if (pending) {
    const jsm = await ctx.jsm();
    // In a work-queue stream, a message the queue's consumer has delivered is still there until
    // it is acked: it may be running on a worker now. A grouped job still in its staging lane
    // has not started, whether the group dispatcher holds it or not: it checks before it
    // releases one that the message is still there.
    const staged = parseLane(pending.subject.split('.').at(-2) ?? '').staged === true;
    const consumer = staged ? null : await jsm.consumers.info(ctx.layout.jobsStream, ctx.layout.consumerName(pending.job.queue, pending.job.priority)).catch(() => null);
    if (consumer && pending.seq <= consumer.delivered.stream_seq) {
      throw new InvalidArgumentError(`job ${id} was delivered to a worker and may be running; cancel it first (naq job cancel ${id})`);
    }
    const deleted = await jsm.streams.deleteMessage(ctx.layout.jobsStream, pending.seq, false).catch((error: unknown) => {
      const denied = toPermissionDenied(error);
      if (denied) throw denied;
      return false;
    });
    // Gone between the look and the delete: a worker took it, so it runs now.
    if (!deleted) throw new InvalidArgumentError(`job ${id} was just taken by a worker; cancel it first (naq job cancel ${id})`);
  }
  await (await ctx.storage.jobsKv()).delete(id);
  ctx.events.emit({ type: 'job.removed', queue: record.queue, jobId: id, data: { was: record.status } });
  return { id, removed: record.status };
}

/**
 * A flow parent or batch completion waiting for its children goes with its record
 * (revision-checked: one released meanwhile is refused); its children go on, and the leader's
 * tracker drops their notices.
 */
async function removeWaitingParent(ctx: NaqContext, id: string): Promise<void> {
  const kv = await ctx.storage.flowsKv();
  const entry = await kv.get(id);
  if (!entry || entry.operation !== 'PUT' || entry.json<FlowRecord>().state !== 'waiting') return;
  await kv.delete(id, { previousSeq: entry.revision }).catch((error: unknown) => {
    if (isWrongLastSequence(error)) throw new InvalidArgumentError(`job ${id} was released or closed meanwhile; look again`);
    throw error;
  });
}
