/**
 * Enqueue: one publish per job (DESIGN: the per-job budget), validated before anything is
 * sent; a job with dependencies is parked in the waiting bucket instead, after a check that it
 * cannot wait for itself; a job with a dedupe window goes through its key first (dedupe.ts).
 */
import { nuid } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../../core/errors.js';
import { CycleSearch } from '../../model/dependency-rules.js';
import { checkDedupe, dedupeEntryKey, type CheckedDedupe } from '../../model/dedupe.js';
import { buildJob, encodeJson, type EnqueueItem, type JobMessage, type JobOptions } from '../../model/job.js';
import { isTransient, withRetry } from '../../core/retry.js';
import type { NaqContext } from '../nats/context.js';
import { ERR_MAX_MSGS_PER_SUBJECT, PublishRejectedError, type PublishOptions } from '../nats/publisher.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import { endSpan, producerSpan } from '../../tracing/tracing.js';
import { debounce, throttle } from './dedupe.js';
import { pendingMessage } from './reads.js';

/** Publishes of one enqueueBulk in flight at once. */
const BULK_WINDOW = 1000;
/** How many waiting jobs an enqueue looks through for a dependency cycle. */
const MAX_CYCLE_LOOKUPS = 10_000;

/**
 * Publishes a job; an id that is already pending or running is not an error — it is the
 * idempotent case (docs/wire-format.md, 3.2 "Enqueue and the dedupe rule"). `msgId` (Nats-Msg-Id) makes
 * a retried publish safe within the server's duplicate window; for ids the caller chose it is
 * `<id>:<ts>`, one value per enqueue call, so the window never swallows a later enqueue of an
 * id whose job has finished. Generated ids skip it: a header costs both the producer and every
 * worker, and the one-message-per-subject rule already refuses a second copy while the job is
 * pending.
 */
export function publishJob(
  ctx: NaqContext,
  message: JobMessage,
  bytes: Uint8Array,
  msgId?: string,
  headers?: Record<string, string>,
  { strict = false }: { strict?: boolean } = {},
): Promise<void> {
  const options = publishOptions(msgId, headers);
  const once = () => publishOnce(ctx, message, bytes, options, strict);
  // The common case costs one publish and two reactions (no async frames); the retry loop (and
  // its deadline timer) only starts after a transient failure. The Nats-Msg-Id makes the retry safe.
  return once().catch((error: unknown) => {
    if (!isTransient(error)) throw error;
    return withRetry(`enqueue ${message.id}`, ctx.retry, once);
  });
}

/** One publish of the job: its job.enqueued event once stored; an already-pending refusal is not an error (alreadyPending). */
function publishOnce(ctx: NaqContext, message: JobMessage, bytes: Uint8Array, options: PublishOptions | undefined, strict: boolean): Promise<void> {
  return ctx.publisher.publish(jobSubjectOf(ctx, message), bytes, options).then(
    () => enqueued(ctx, message),
    (error: unknown) => alreadyPending(message, error, strict),
  );
}

function publishOptions(msgId: string | undefined, headers: Record<string, string> | undefined) {
  return msgId !== undefined || headers ? { ...(msgId !== undefined ? { msgId } : {}), ...(headers ? { headers } : {}) } : undefined;
}

/** Where a job is published: its priority lane, or, with a group, the staging lane until the group dispatcher releases it. */
function jobSubjectOf(ctx: NaqContext, message: JobMessage): string {
  return message.group === undefined ? ctx.layout.jobSubject(message.queue, message.id, message.priority) : ctx.layout.stagedSubject(message.queue, message.id);
}

function enqueued(ctx: NaqContext, message: JobMessage): void {
  ctx.events.emit({ type: 'job.enqueued', queue: message.queue, jobId: message.id, data: { name: message.name, attempts: message.attempts } });
}

/**
 * Already pending: the idempotent case, not a new job (and not a new event), so not an error —
 * unless the caller needs this very message in the queue (strict: a flow's child). Anything
 * else is thrown on.
 */
function alreadyPending(message: JobMessage, error: unknown, strict: boolean): void {
  if (error instanceof PublishRejectedError && error.errCode === ERR_MAX_MSGS_PER_SUBJECT) {
    if (strict) throw new InvalidArgumentError(`job ${message.id} is already pending: the jobs of a flow or batch must be new`);
    return;
  }
  throw error;
}

export async function enqueue(ctx: NaqContext, name: string, data: unknown, opts: JobOptions = {}): Promise<string> {
  const id = opts.jobId ?? nuid.next();
  const { message, bytes } = buildJob(name, data, opts, id, ctx.defaults);
  const dedupe = dedupeOf(ctx, opts);
  if (dedupe?.mode === 'debounce') return debounce(ctx, dedupe, name, data, opts);
  const send = () => sendJob(ctx, message, bytes, opts.jobId !== undefined);
  if (dedupe) return throttle(ctx, dedupe, message, send);
  await send();
  return id;
}

/** The checked dedupe option of an enqueue, if it has one. */
function dedupeOf(ctx: NaqContext, opts: JobOptions): CheckedDedupe | undefined {
  return opts.dedupe === undefined ? undefined : checkDedupe(opts.dedupe, ctx.config.jobs.dedupeMaxTtlMs, { dependsOn: Boolean(opts.dependsOn?.length) });
}

/** Publishes a built job, or parks it when it has dependencies. `chosenId`: the caller gave the id. */
async function sendJob(ctx: NaqContext, message: JobMessage, bytes: Uint8Array, chosenId: boolean): Promise<void> {
  if (message.dependsOn?.length) {
    await refuseCycle(ctx, message);
    await park(ctx, message);
    return;
  }
  const traced = producerSpan(message.queue, 1, message.id);
  try {
    if (!chosenId) await publishJob(ctx, message, bytes, undefined, traced?.headers);
    else if (!(await isQueued(ctx, message.id))) await publishJob(ctx, message, bytes, enqueueMsgId(message), traced?.headers);
  } catch (error) {
    if (traced) endSpan(traced.span, error);
    throw error;
  }
  if (traced) endSpan(traced.span);
}

/**
 * The jobs stream's one-message-per-subject rule refuses a second copy of an id only in the
 * same lane: an id the caller chose is looked up in the waiting bucket (a job waiting on its
 * dependencies is not in the stream) and in every priority lane at once.
 */
export async function isQueued(ctx: NaqContext, id: string): Promise<boolean> {
  const kv = await ctx.storage.waitingKv();
  const [entry, pending] = await withRetry(`enqueue ${id}`, ctx.retry, () => Promise.all([kv.get(id), pendingMessage(ctx, id)]));
  return (entry !== null && entry.operation === 'PUT') || pending !== null;
}

/**
 * Validates every job first (nothing is sent if one is bad), then pipelines the publishes. A
 * job with a dedupe window goes through its key like a single enqueue; jobs of one key go in
 * their order (so a debounced key's job gets the data of the last of them).
 */
export async function enqueueBulk(ctx: NaqContext, items: EnqueueItem[]): Promise<string[]> {
  const built = items.map((item) => buildJob(item.name, item.data, item.opts ?? {}, item.opts?.jobId ?? nuid.next(), ctx.defaults));
  // Checked up front too, so that nothing is sent if one is bad; most bulks have none.
  const dedupes = items.some((item) => item.opts?.dedupe !== undefined) ? items.map((item) => dedupeOf(ctx, item.opts ?? {})) : null;
  const waiting = new Map(built.filter((b) => b.message.dependsOn?.length).map((b) => [b.message.id, b.message.dependsOn!] as const));
  for (const { message } of built) if (waiting.has(message.id)) await refuseCycle(ctx, message, waiting);
  // One span for the bulk; every job carries its context.
  const traced = built.length ? producerSpan(built[0]!.message.queue, built.length, built[0]!.message.id) : null;
  let ids: string[];
  try {
    ids = await publishBulk(ctx, items, built, dedupes, traced?.headers);
  } catch (error) {
    if (traced) endSpan(traced.span, error);
    throw error;
  }
  if (traced) endSpan(traced.span);
  return ids;
}

type Built = { message: JobMessage; bytes: Uint8Array };

async function publishBulk(
  ctx: NaqContext,
  items: EnqueueItem[],
  built: Built[],
  dedupes: Array<CheckedDedupe | undefined> | null,
  headers: Record<string, string> | undefined,
): Promise<string[]> {
  const ids = built.map((b) => b.message.id);
  // The last enqueue of each dedupe key in flight: the next of the key waits for it.
  const keys = new Map<string, Promise<unknown>>();
  const send = ({ message, bytes }: Built, i: number): Promise<unknown> => {
    const opts = items[i]!.opts;
    const dedupe = dedupes?.[i];
    if (dedupe) {
      const key = dedupeEntryKey(dedupe);
      const sent = (keys.get(key) ?? Promise.resolve())
        .catch(() => {})
        .then(async () => {
          ids[i] =
            dedupe.mode === 'debounce'
              ? await debounce(ctx, dedupe, message.name, message.data, opts ?? {})
              : await throttle(ctx, dedupe, message, () => sendJob(ctx, message, bytes, opts?.jobId !== undefined));
        });
      keys.set(key, sent);
      return sent;
    }
    if (message.dependsOn?.length) return park(ctx, message);
    if (opts?.jobId === undefined) return publishJob(ctx, message, bytes, undefined, headers);
    return isQueued(ctx, message.id).then((queued) => (queued ? undefined : publishJob(ctx, message, bytes, enqueueMsgId(message), headers)));
  };
  const options = publishOptions(undefined, headers);
  // Pipelined in windows: a window keeps the socket busy, and a bound on what is in flight
  // keeps memory flat however large the bulk (measured, 100k jobs in calls of 5,000: peak
  // RSS 194 MiB with all of a call in flight at once, ~145 MiB with windows of 1,000).
  for (let start = 0; start < built.length; start += BULK_WINDOW) {
    const end = Math.min(built.length, start + BULK_WINDOW);
    // A job of a generated id, no key and no dependencies (most of them) is its bare publish:
    // its outcome is read once the window has settled, not through reactions of its own
    // (closures, an options object and two promises a job: ~0.6 of the 4.7 KB a bulk
    // allocated a job, in V8's sampling heap profiler).
    const sends: Promise<unknown>[] = [];
    const bare: boolean[] = [];
    for (let i = start; i < end; i++) {
      const b = built[i]!;
      const isBare = dedupes?.[i] === undefined && !b.message.dependsOn?.length && items[i]!.opts?.jobId === undefined;
      bare.push(isBare);
      sends.push(isBare ? ctx.publisher.publish(jobSubjectOf(ctx, b.message), b.bytes, options) : send(b, i));
    }
    const outcomes = await Promise.allSettled(sends);
    let failure: { error: unknown } | undefined;
    const retries: Promise<unknown>[] = [];
    for (let k = 0; k < outcomes.length; k++) {
      const outcome = outcomes[k]!;
      const { message, bytes } = built[start + k]!;
      if (outcome.status === 'fulfilled') {
        if (bare[k]) enqueued(ctx, message);
        continue;
      }
      if (bare[k] && isTransient(outcome.reason)) {
        retries.push(withRetry(`enqueue ${message.id}`, ctx.retry, () => publishOnce(ctx, message, bytes, options, false)));
        continue;
      }
      try {
        if (bare[k]) alreadyPending(message, outcome.reason, false);
        else throw outcome.reason;
      } catch (error) {
        failure ??= { error };
      }
    }
    const retried = await Promise.allSettled(retries);
    for (const r of retried) if (r.status === 'rejected') failure ??= { error: r.reason };
    if (failure) throw failure.error;
  }
  return ids;
}

/** The Nats-Msg-Id of one enqueue call: its retries share it, a later enqueue of the id does not. */
function enqueueMsgId(message: JobMessage): string {
  return `${message.id}:${message.ts}`;
}

/**
 * A job with dependencies waits in the waiting bucket until the resolver releases it. Created,
 * never put over another: a job already waiting under this id is the idempotent case.
 */
async function park(ctx: NaqContext, message: JobMessage): Promise<void> {
  const kv = await ctx.storage.waitingKv();
  const created = await withRetry(`enqueue ${message.id}`, ctx.retry, async () => {
    try {
      await kv.create(message.id, encodeJson(message));
      return true;
    } catch (error) {
      if (isWrongLastSequence(error)) return false;
      throw error;
    }
  });
  if (!created) return;
  ctx.events.emit({
    type: 'job.enqueued',
    queue: message.queue,
    jobId: message.id,
    data: { name: message.name, attempts: message.attempts, waiting: true, dependsOn: message.dependsOn },
  });
}

/**
 * A job that depends, through jobs still waiting, on itself could never run: refused, naming
 * the cycle. Follows the waiting jobs' dependencies (and those of the jobs being enqueued with
 * it), one level at a time, up to MAX_CYCLE_LOOKUPS jobs. Two enqueues that close a cycle at
 * the same moment both pass here; the resolver fails such a cycle when it sees it
 * (dependencies.ts).
 */
async function refuseCycle(ctx: NaqContext, message: JobMessage, batch?: ReadonlyMap<string, readonly string[]>): Promise<void> {
  const kv = await ctx.storage.waitingKv();
  const dependenciesOf = async (id: string): Promise<readonly string[]> => {
    const inBatch = batch?.get(id);
    if (inBatch) return inBatch;
    const entry = await withRetry(`check dependencies of ${message.id}`, ctx.retry, () => kv.get(id));
    if (!entry || entry.operation !== 'PUT') return [];
    try {
      return entry.json<JobMessage>().dependsOn ?? [];
    } catch {
      return [];
    }
  };
  const search = new CycleSearch(message.id, message.dependsOn ?? []);
  let looked = 0;
  while (search.frontier.length > 0 && looked < MAX_CYCLE_LOOKUPS) {
    looked += search.frontier.length;
    search.step(await Promise.all(search.frontier.map(async (id) => [id, await dependenciesOf(id)] as const)));
  }
}
