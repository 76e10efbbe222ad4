/**
 * Operator actions on many jobs at once, chosen by queue, state and name: retry the dead or
 * failed ones; clean finished records and dead letters older than a duration.
 */
import { InvalidArgumentError, describeValue } from '../../core/errors.js';
import { validateDuration } from '../../core/duration.js';
import { indexSubject, parseIndexBatch, type IndexedState } from '../../model/job-index.js';
import type { DeadLetter, JobRecord } from '../../model/job.js';
import { validateQueue } from '../../model/layout.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { NaqContext } from '../nats/context.js';
import { scanForward, type Stored } from '../nats/stream-scan.js';
import { retryDeadLetter } from './admin.js';
import { listJobs } from './listing.js';

/** Jobs retried or removed in parallel, per round. */
const PARALLEL = 64;
/** How many skipped jobs an answer names (the count is always whole). */
const NAMED_SKIPS = 20;

export interface RetryFilter {
  queue: string;
  state: 'dead' | 'failed';
  name?: string;
}

export interface RetryOutcome {
  retried: number;
  /** Jobs that matched but could not be retried, and why (the first few). */
  skipped: Array<{ id: string; reason: string }>;
  skippedCount: number;
}

/**
 * Re-enqueues every dead (or failed) job of a queue, with fresh attempts. A dead letter whose
 * job ran again since is not retried twice: the listing shows only current outcomes.
 */
export async function retryJobs(ctx: NaqContext, filter: RetryFilter): Promise<RetryOutcome> {
  const queue = validateQueue(filter.queue);
  if (filter.state !== 'dead' && filter.state !== 'failed') throw new InvalidArgumentError(`invalid state ${JSON.stringify(filter.state)}: only dead or failed jobs can be retried`);
  const out: RetryOutcome = { retried: 0, skipped: [], skippedCount: 0 };
  const kv = await ctx.storage.jobsKv();
  let cursor: string | undefined;
  do {
    const page = await listJobs(ctx, { queue, state: filter.state, ...(filter.name !== undefined ? { name: filter.name } : {}), limit: 500, ...(cursor ? { cursor } : {}) });
    for (let i = 0; i < page.jobs.length; i += PARALLEL) {
      await Promise.all(
        page.jobs.slice(i, i + PARALLEL).map(async (row) => {
          try {
            if (row.deadSeq === undefined) throw new InvalidArgumentError('it has no dead letter');
            const entry = row.id ? await kv.get(row.id) : null;
            const record = entry && entry.operation === 'PUT' ? entry.json<JobRecord>() : null;
            await retryDeadLetter(ctx, row.deadSeq, record && record.deadSeq === row.deadSeq ? record : null);
            out.retried++;
          } catch (error) {
            out.skippedCount++;
            if (out.skipped.length < NAMED_SKIPS) out.skipped.push({ id: row.id, reason: error instanceof Error ? error.message : describeValue(error) });
          }
        }),
      );
    }
    cursor = page.cursor ?? undefined;
  } while (cursor);
  return out;
}

export interface CleanFilter {
  queue: string;
  state: IndexedState | 'dead';
  olderThanMs: number;
  name?: string;
}

/**
 * Removes the records of a queue's finished jobs (or its dead letters) that finished more than
 * `olderThanMs` ago. Both streams it reads are in finishing order, so it reads from the oldest
 * and stops at the first one young enough to keep.
 */
export async function cleanJobs(ctx: NaqContext, filter: CleanFilter): Promise<{ removed: number }> {
  const queue = validateQueue(filter.queue);
  const olderThanMs = validateDuration('olderThanMs', filter.olderThanMs, 0);
  const cutoff = Date.now() - olderThanMs;
  if (filter.state === 'dead') return cleanDead(ctx, queue, cutoff, filter.name);
  if (filter.state !== 'completed' && filter.state !== 'failed' && filter.state !== 'cancelled') {
    throw new InvalidArgumentError(`invalid state ${JSON.stringify(filter.state)}: only completed, failed, cancelled or dead jobs can be cleaned`);
  }
  const subject = indexSubject(ctx.config.prefix, { queue, state: filter.state, name: filter.name });
  const kv = await ctx.storage.jobsKv();
  let removed = 0;
  let purgeBelow = 0;
  await scanForward(ctx, ctx.layout.indexStream, subject, async (window) => {
    const old = window.filter((m) => m.time < cutoff);
    const entries = old.flatMap((m) => parseIndexBatch(m.subject, m.data));
    for (let i = 0; i < entries.length; i += PARALLEL) {
      const counts = await Promise.all(
        entries.slice(i, i + PARALLEL).map(async (e) => {
          const entry = await kv.get(e.id);
          if (!entry || entry.operation !== 'PUT') return 0;
          const r = entry.json<JobRecord>();
          // A later run of the id wrote this record: it is not the one being cleaned.
          if (r.status !== e.state || r.enqueuedAt !== e.enqueuedAt) return 0;
          try {
            await kv.delete(e.id, { previousSeq: entry.revision });
            return 1;
          } catch (error) {
            if (isWrongLastSequence(error)) return 0;
            throw error;
          }
        }),
      );
      removed += counts.reduce((a: number, b: number) => a + b, 0);
    }
    if (old.length) purgeBelow = old.at(-1)!.seq + 1;
    return old.length === window.length;
  });
  // The batches read (stale entries too) go in one purge: everything on the subject below the last.
  if (purgeBelow) await (await ctx.jsm()).streams.purge(ctx.layout.indexStream, { filter: subject, seq: purgeBelow });
  return { removed };
}

async function cleanDead(ctx: NaqContext, queue: string, cutoff: number, name: string | undefined): Promise<{ removed: number }> {
  const jsm = await ctx.jsm();
  const subject = ctx.layout.deadSubject(queue);
  // Sequences only: dead letters carry their jobs' data, and there may be many.
  const doomed: number[] = [];
  await scanForward(ctx, ctx.layout.deadStream, subject, async (window) => {
    for (const m of window) {
      if (m.time >= cutoff) return false;
      if (name === undefined || deadName(m) === name) doomed.push(m.seq);
    }
    return true;
  });
  if (doomed.length === 0) return { removed: 0 };
  if (name === undefined) {
    const r = await jsm.streams.purge(ctx.layout.deadStream, { filter: subject, seq: doomed.at(-1)! + 1 });
    return { removed: r.purged };
  }
  let removed = 0;
  for (let i = 0; i < doomed.length; i += PARALLEL) {
    const done = await Promise.all(doomed.slice(i, i + PARALLEL).map((seq) => jsm.streams.deleteMessage(ctx.layout.deadStream, seq, false).catch(() => false)));
    removed += done.filter(Boolean).length;
  }
  return { removed };
}

function deadName(m: Stored): string {
  try {
    return (JSON.parse(Buffer.from(m.data).toString('utf8')) as DeadLetter).job?.name ?? '(undecodable)';
  } catch {
    return '(undecodable)';
  }
}
