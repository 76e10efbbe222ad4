/**
 * The job path's I/O (job-io.ts) on a naq connection: records, the job index, dead letters,
 * batched acks, events and flow notices, through the connection's context.
 */
import type { JobRecord } from '../../model/job.js';
import type { NaqContext } from '../nats/context.js';
import { tellParent } from '../jobs/flow-notice.js';
import { childOutcomes } from '../jobs/flow-reads.js';
import type { JobIO } from './job-io.js';

/** `hold` asks every worker of the queue to start nothing before a time (the worker's own). */
export function natsJobIO(ctx: NaqContext, hold: JobIO['hold']): JobIO {
  return {
    hold,
    readRecord: async (id) => {
      const entry = await (await ctx.storage.jobsKv()).get(id);
      return entry && entry.operation === 'PUT' ? entry.json<JobRecord>() : null;
    },
    writeRecord: (id, bytes) => ctx.storage.putRecordBytes(id, bytes),
    index: (entry) => ctx.storage.indexFinal(entry),
    deadLetter: async (queue, bytes) => (await ctx.publisher.publish(ctx.layout.deadSubject(queue), bytes)).seq,
    ackLater: (msg) => ctx.publisher.ackLater(msg),
    emit: (event) => ctx.events.emit(event),
    groupDone: (job) => ctx.nc.publish(ctx.layout.groupNoticeSubject(job.queue, 'done'), `${job.id} ${job.group}`),
    tellParent: (parent, child, status, error) => tellParent(ctx, parent, child, status, error),
    children: (parentId) => childOutcomes(ctx, parentId),
    maxMessageBytes: () => ctx.storage.maxMessageBytes,
  };
}
