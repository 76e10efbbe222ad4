/**
 * A job that waited (for its dependencies, or for its children) and will never run: failed
 * (its dead letter, record, events) or cancelled (its record, event), and — in a flow or
 * batch — the notice to its parent. Every write can be made again: the dead letter carries a Nats-Msg-Id, the record and
 * the notice replace themselves.
 */
import type { ErrorInfo } from '../../core/errors.js';
import { recordFromMessage, WIRE_VERSION, type DeadLetter, type JobMessage } from '../../model/job.js';
import { encodeDeadLetter } from '../../model/record-codec.js';
import type { NaqContext } from '../nats/context.js';
import { tellParent } from './flow-notice.js';

export async function failUnstarted(ctx: NaqContext, job: JobMessage, error: ErrorInfo & { code: string }, data: Record<string, unknown>): Promise<void> {
  const dead: DeadLetter = {
    v: WIRE_VERSION,
    reason: error.message,
    error,
    queue: job.queue,
    subject: ctx.layout.jobSubject(job.queue, job.id, job.priority),
    jobId: job.id,
    job,
    ts: Date.now(),
  };
  const ack = await ctx.publisher.publish(ctx.layout.deadSubject(job.queue), encodeDeadLetter(dead, ctx.storage.maxMessageBytes), {
    msgId: `${job.id}:${job.ts}:${error.code.toLowerCase().replace(/_/g, '-')}`,
  });
  await ctx.storage.putRecord({ ...recordFromMessage(job, 'failed'), error, finishedAt: Date.now(), deadSeq: ack.seq });
  if (job.parent !== undefined) await tellParent(ctx, job.parent, job.id, 'failed', error);
  ctx.events.emit({ type: 'job.failed', queue: job.queue, jobId: job.id, data: { name: job.name, error: error.message, code: error.code, ...data } });
  ctx.events.emit({ type: 'job.dead', queue: job.queue, jobId: job.id, data: { reason: dead.reason, deadSeq: ack.seq } });
}

/** The record and event of a job cancelled before it started; in a flow or batch, its parent is told. */
export async function cancelUnstarted(ctx: NaqContext, job: JobMessage, data: Record<string, unknown>): Promise<void> {
  await ctx.storage.putRecord({ ...recordFromMessage(job, 'cancelled'), finishedAt: Date.now() });
  if (job.parent !== undefined) await tellParent(ctx, job.parent, job.id, 'cancelled');
  ctx.events.emit({ type: 'job.cancelled', queue: job.queue, jobId: job.id, data: { name: job.name, ...data } });
}
