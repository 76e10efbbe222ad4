/**
 * Dedupe windows (issue 12; docs/wire-format.md, 3.6).
 *
 * Throttle: the first enqueue of a key opens a window of `ttlMs` and is enqueued; every other
 * enqueue of the key within the window is dropped and answered with that job's id.
 * Debounce: a key has at most one delayed job (a one-shot schedule); each enqueue of the key
 * replaces its data and options and moves it to `ttlMs` from now; once it has fired (or was
 * cancelled, promoted, removed), the next enqueue starts a new one.
 *
 * Both keep one entry per key in the dedupe bucket (`<mode>.<key>`) and decide with
 * revision-checked writes, so producers racing on a key agree on one job: a write that lost
 * is followed by a fresh read, until the operation's deadline (`ops.timeoutMs`).
 */
import type { KV, KvEntry } from '@nats-io/kv';
import { nuid } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../../core/errors.js';
import { withRetry } from '../../core/retry.js';
import { decodeDedupeRecord, dedupeEntryKey, isOpenWindow, needsRefresh, type CheckedDedupe, type DedupeRecord } from '../../model/dedupe.js';
import { encodeJson, type JobOptions } from '../../model/job.js';
import { buildOneShot, isClaimed, type ScheduleRecord } from '../../model/schedule.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import { AGAIN, contended, LOST, revisionChecked } from '../nats/contended.js';
import type { NaqContext } from '../nats/context.js';

/** The job a throttled enqueue would enqueue if it opens the window. */
export interface ThrottledJob {
  id: string;
  name: string;
  queue: string;
}

/**
 * Throttle: returns the id of the window's job. `enqueueJob` enqueues `job` (a plain or a
 * delayed enqueue); it runs only for the enqueue that opens the window, after the window's
 * entry is written, so two producers racing can never both enqueue.
 */
export async function throttle(ctx: NaqContext, dedupe: CheckedDedupe, job: ThrottledJob, enqueueJob: () => Promise<void>): Promise<string> {
  const entryKey = dedupeEntryKey(dedupe);
  const known = ctx.openWindows.get(entryKey, Date.now());
  if (known) return dropped(ctx, dedupe, job.name, known);
  const kv = await ctx.storage.dedupeKv();
  // What this call wrote last: found there after a write whose answer was lost, it is ours.
  let written: DedupeRecord | undefined;
  type Outcome = { open: true; record: DedupeRecord } | { open: false; record: DedupeRecord; revision: number };
  const outcome = await contended<Outcome>(ctx, `throttle ${dedupe.key}`, async () => {
    const entry = await read(ctx, kv, entryKey);
    const current = recordOf(entry);
    const now = Date.now();
    if (current && written && current.jobId === written.jobId && current.ts === written.ts) return { open: false, record: current, revision: entry!.revision };
    if (isOpenWindow(current, now)) return { open: true, record: current };
    const record: DedupeRecord = { v: 1, jobId: job.id, queue: job.queue, until: now + dedupe.ttlMs, ts: now };
    written = record;
    const revision = await writeEntry(kv, entryKey, record, entry);
    return revision === LOST ? AGAIN : { open: false, record, revision };
  });
  if (outcome.open) {
    ctx.openWindows.remember(entryKey, outcome.record, Date.now());
    return dropped(ctx, dedupe, job.name, outcome.record);
  }
  try {
    await enqueueJob();
  } catch (error) {
    // Not enqueued: the window goes too, or the key's enqueues would be dropped onto no job.
    await kv.delete(entryKey, { previousSeq: outcome.revision }).catch((e: unknown) => {
      if (!isWrongLastSequence(e)) ctx.log.warn({ err: e, key: entryKey }, 'could not remove the dedupe window of a job that was not enqueued');
    });
    throw error;
  }
  ctx.openWindows.remember(entryKey, outcome.record, Date.now());
  return job.id;
}

function dropped(ctx: NaqContext, dedupe: CheckedDedupe, name: string, window: DedupeRecord): string {
  ctx.events.emit({ type: 'job.deduplicated', queue: window.queue, jobId: window.jobId, data: { name, key: dedupe.key, mode: 'throttle', until: window.until } });
  return window.jobId;
}

/**
 * Debounce: returns the id of the key's delayed job. `opts` are checked already (buildJob):
 * name, data and options become the job's, replacing those of earlier enqueues of the key.
 */
export async function debounce(ctx: NaqContext, dedupe: CheckedDedupe, name: string, data: unknown, opts: JobOptions): Promise<string> {
  const entryKey = dedupeEntryKey(dedupe);
  const [kv, schedules] = await Promise.all([ctx.storage.dedupeKv(), ctx.storage.schedulesKv()]);
  const { dedupe: _dedupe, dependsOn: _dependsOn, ...jobOpts } = opts;
  // The id of a new job, the same in every round of this call: a create whose answer was lost is found again.
  const newId = jobOpts.jobId ?? nuid.next();
  return contended(ctx, `debounce ${dedupe.key}`, async () => {
    const entry = await read(ctx, kv, entryKey);
    const current = recordOf(entry);
    const now = Date.now();
    const dueAt = now + dedupe.ttlMs;
    if (current) {
      const found = await read(ctx, schedules, current.jobId);
      const pending = scheduleOf(found);
      if (pending && pending.status === 'active' && pending.kind === 'at' && pending.debounceKey === dedupe.key) {
        // Still delayed: it takes this enqueue's data and due time, unless the leader claimed it meanwhile.
        const moved: ScheduleRecord = { ...buildOneShot(current.jobId, dueAt, name, data, { ...jobOpts, jobId: current.jobId }, pending.createdAt), debounceKey: dedupe.key, updatedAt: now };
        if ((await revisionChecked(() => schedules.update(current.jobId, encodeJson(moved), found!.revision))) === LOST) return AGAIN;
        if (needsRefresh(current, dueAt, ctx.config.jobs.dedupeMaxTtlMs)) await refresh(ctx, kv, entryKey, { ...current, ts: now }, entry!);
        ctx.events.emit({
          type: 'job.deduplicated',
          queue: moved.queue,
          jobId: current.jobId,
          data: { name, key: dedupe.key, mode: 'debounce', runAt: dueAt, wasDueAt: pending.nextRunAt },
        });
        return current.jobId;
      }
    }
    // None, or it fired (or was cancelled): a new delayed job, then the entry that points to it.
    // In that order: an entry always points to a job that was written, so a racer that reads
    // it and finds no delayed job knows it fired.
    const job: ScheduleRecord = { ...buildOneShot(newId, dueAt, name, data, { ...jobOpts, jobId: newId }, now), debounceKey: dedupe.key };
    const jobRevision = await revisionChecked(() => schedules.create(newId, encodeJson(job)));
    if (jobRevision === LOST) return adopt(ctx, kv, schedules, dedupe, entryKey, entry, newId);
    const written = await writeEntry(kv, entryKey, { v: 1, jobId: newId, queue: job.queue, ts: now }, entry);
    if (written !== LOST) return newId;
    // Another enqueue started the key's job first: this one goes (or it would run too), and the
    // next round joins that one.
    await withRetry(`debounce ${dedupe.key}: remove job ${newId}`, ctx.retry, () =>
      schedules.delete(newId, { previousSeq: jobRevision }).catch((error: unknown) => {
        if (!isWrongLastSequence(error)) throw error;
      }),
    );
    return AGAIN;
  });
}

/**
 * A delayed job already has the id a new debounced job was to get (a caller's `jobId`, or this
 * call's own create whose answer was lost). One of this key's, still delayed: the key's entry
 * points to it, and the next round moves it. Being fired: the next round starts a new one once
 * it is gone. Anything else keeps its id: refused.
 */
async function adopt(ctx: NaqContext, kv: KV, schedules: KV, dedupe: CheckedDedupe, entryKey: string, entry: KvEntry | null, id: string): Promise<typeof AGAIN> {
  const other = scheduleOf(await read(ctx, schedules, id));
  if (!other || isClaimed(other)) return AGAIN;
  if (other.debounceKey === dedupe.key && other.kind === 'at' && other.status === 'active') {
    await writeEntry(kv, entryKey, { v: 1, jobId: id, queue: other.queue, ts: Date.now() }, entry);
    return AGAIN;
  }
  throw new InvalidArgumentError(`invalid jobId ${JSON.stringify(id)}: a schedule or delayed job of that id exists that is not dedupe key ${JSON.stringify(dedupe.key)}'s debounced job`);
}

/** The entry is rewritten before the bucket's TTL could drop it while its job is still delayed. */
async function refresh(ctx: NaqContext, kv: KV, entryKey: string, record: DedupeRecord, entry: KvEntry): Promise<void> {
  // Lost: another enqueue wrote it just now, which is as good.
  await writeEntry(kv, entryKey, record, entry).catch((error: unknown) => ctx.log.warn({ err: error, key: entryKey }, 'could not refresh a dedupe entry'));
}

function recordOf(entry: KvEntry | null): DedupeRecord | null {
  return entry && entry.operation === 'PUT' ? decodeDedupeRecord(entry.string()) : null;
}

function scheduleOf(entry: KvEntry | null): ScheduleRecord | null {
  if (!entry || entry.operation !== 'PUT') return null;
  try {
    return entry.json<ScheduleRecord>();
  } catch {
    return null;
  }
}

/** A read, retried through an outage, and the bucket recreated if it was deleted. */
function read(ctx: NaqContext, kv: KV, key: string): Promise<KvEntry | null> {
  return ctx.storage.withLayout(`read ${key}`, () => kv.get(key));
}

/** The key's entry: created when none was read, else updated from the revision read (a delete marker's too). */
function writeEntry(kv: KV, entryKey: string, record: DedupeRecord, read: KvEntry | null): Promise<number | typeof LOST> {
  return revisionChecked(() => (read ? kv.update(entryKey, encodeJson(record), read.revision) : kv.create(entryKey, encodeJson(record))));
}
