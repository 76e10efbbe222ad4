/**
 * Listing jobs by queue, state and name, newest first, a page at a time. Each state is read
 * where it lives (docs/wire-format.md, section 11): finished jobs from the job index, pending,
 * active and retrying ones from the jobs stream, dead letters from the dead stream, delayed and
 * waiting ones from their buckets. A listing of several states merges these sources; the
 * cursor holds where each one stopped.
 */
import type { KV } from '@nats-io/kv';
import { InvalidArgumentError } from '../../core/errors.js';
import { decodeJob, type DeadLetter, type JobMessage, type JobRecord } from '../../model/job.js';
import {
  decodeCursor,
  encodeCursor,
  filterKey,
  indexSubject,
  isIndexedState,
  parseIndexBatch,
  type IndexEntry,
  validateListState,
  type IndexedState,
  type JobPage,
  type JobRow,
  type ListFilter,
  type ListState,
} from '../../model/job-index.js';
import { DEFAULT_PRIORITY, parseLane, PRIORITIES, validateQueue } from '../../model/layout.js';
import type { ScheduleRecord } from '../../model/schedule.js';
import type { NaqContext } from '../nats/context.js';
import { scanBack, type Stored } from '../nats/stream-scan.js';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 1000;
/**
 * A source that filters by name itself (the jobs and dead streams carry no name in their
 * subjects) reads at most this many stream messages per call, then answers what it found and
 * a cursor to go on from: a page may then hold fewer rows than asked.
 */
const CLIENT_FILTER_BUDGET = 20_000;

/** A row, the key it is merged by (larger is newer) and where its source resumes after it. */
interface Candidate {
  key: number;
  pos: unknown;
  row: JobRow;
}

interface SourcePage {
  rows: Candidate[];
  /** Nothing older is left. */
  done: boolean;
  /** Where to resume when every row was taken and the source is not done. */
  next: unknown;
}

interface Source {
  name: string;
  page(pos: unknown, want: number): Promise<SourcePage>;
}

/** A stream source's page: positions are sequences (read below it next). */
async function backPage(ctx: NaqContext, stream: string, subject: string, pos: unknown, want: number, budget: number, convert: (msgs: Stored[]) => Promise<Array<Candidate | null>>): Promise<SourcePage> {
  const page = await scanBack(ctx, stream, subject, typeof pos === 'number' ? pos : undefined, want, { budget, firstSpan: Math.max(2 * want, 64) }, convert, (c) => c.pos);
  return { rows: page.items, done: page.done, next: page.next };
}

export async function listJobs(ctx: NaqContext, filter: ListFilter = {}): Promise<JobPage> {
  const queue = filter.queue === undefined ? undefined : validateQueue(filter.queue);
  const state = filter.state === undefined ? undefined : validateListState(filter.state);
  const name = filter.name === undefined || filter.name === '' ? undefined : filter.name;
  const limit = filter.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new InvalidArgumentError(`invalid limit ${JSON.stringify(limit)}: expected an integer from 1 to ${MAX_LIMIT}`);
  const key = filterKey({ queue, state, name });
  const positions = filter.cursor ? decodeCursor(filter.cursor, key) : {};
  const sources = sourcesFor(ctx, { queue, state, name }).filter((s) => positions[s.name] !== null);
  const pages = await Promise.all(sources.map((s) => s.page(positions[s.name], limit)));

  // A k-way merge, newest first: each source gives up a prefix of its page.
  const taken = pages.map(() => 0);
  const jobs: JobRow[] = [];
  while (jobs.length < limit) {
    let best = -1;
    for (let i = 0; i < pages.length; i++) {
      const c = pages[i]!.rows[taken[i]!];
      if (c && (best < 0 || c.key > pages[best]!.rows[taken[best]!]!.key)) best = i;
    }
    if (best < 0) break;
    jobs.push(pages[best]!.rows[taken[best]!]!.row);
    taken[best]!++;
  }
  const next: Record<string, unknown> = { ...positions };
  let more = false;
  sources.forEach((s, i) => {
    const page = pages[i]!;
    const k = taken[i]!;
    if (k < page.rows.length) next[s.name] = page.rows[k - 1]?.pos ?? positions[s.name];
    else next[s.name] = page.done ? null : page.next;
    if (next[s.name] !== null) more = true;
  });
  return { jobs, cursor: more ? encodeCursor({ filter: key, positions: next }) : null };
}

interface Wanted {
  queue: string | undefined;
  state: ListState | undefined;
  name: string | undefined;
}

function sourcesFor(ctx: NaqContext, w: Wanted): Source[] {
  const { state } = w;
  if (state === undefined) return [indexSource(ctx, w, undefined), ...jobsStreamSources(ctx, w, ['pending', 'active', 'retrying']), delayedSource(ctx, w), waitingSource(ctx, w)];
  if (isIndexedState(state)) return [indexSource(ctx, w, state)];
  if (state === 'pending' || state === 'active' || state === 'retrying') return jobsStreamSources(ctx, w, [state]);
  if (state === 'dead') return [deadSource(ctx, w)];
  if (state === 'delayed') return [delayedSource(ctx, w)];
  return [waitingSource(ctx, w)];
}

// ---- the sources ----------------------------------------------------------------------------

/**
 * Finished jobs, from the index batches; an entry a later run of the id made stale is
 * skipped. A position is [batch sequence, entry index]: resume with the entries before it.
 */
function indexSource(ctx: NaqContext, w: Wanted, state: IndexedState | undefined): Source {
  const subject = indexSubject(ctx.config.prefix, { queue: w.queue, state, name: w.name });
  return {
    name: 'index',
    page: async (pos, want) => {
      const kv = await ctx.storage.jobsKv();
      const at = Array.isArray(pos) ? (pos as [number, number]) : null;
      const seen = new Set<string>();
      const page = await scanBack(
        ctx,
        ctx.layout.indexStream,
        subject,
        at ? at[0] + 1 : undefined,
        want,
        // A batch holds up to a thousand entries: start with a few messages.
        { budget: Number.POSITIVE_INFINITY, firstSpan: 2 },
        async (msgs, need) => {
          const found: Array<{ m: Stored; e: IndexEntry; i: number }> = [];
          for (const m of msgs) {
            const entries = parseIndexBatch(m.subject, m.data);
            for (let i = entries.length - 1; i >= 0; i--) if (!(at && m.seq === at[0] && i >= at[1])) found.push({ m, e: entries[i]!, i });
          }
          // Records are read a chunk at a time, only until enough of them are current.
          const out: Candidate[] = [];
          const now = Date.now();
          for (let k = 0; k < found.length && out.length < need; k += Math.max(need - out.length, 16)) {
            const chunk = found.slice(k, k + Math.max(need - out.length, 16));
            const records = await Promise.all(chunk.map(({ e }) => readRecord(kv, e.id)));
            chunk.forEach(({ m, e, i }, j) => {
              const r = records[j];
              if (!r || r.status !== e.state || r.enqueuedAt !== e.enqueuedAt) return;
              if (r.expiresAt !== undefined && r.expiresAt < now) return;
              // The same outcome indexed twice (a redelivery re-indexes what a crash may have lost).
              if (seen.has(e.id)) return;
              seen.add(e.id);
              out.push({ key: m.time, pos: [m.seq, i], row: rowOf(r, e.state, r.finishedAt ?? m.time) });
            });
          }
          return out.slice(0, need);
        },
        (c) => c.pos,
      );
      return { rows: page.items, done: page.done, next: typeof page.next === 'number' ? [page.next, 0] : page.next };
    },
  };
}

/**
 * Jobs in the jobs stream: pending (not yet delivered: past the queue consumer's delivered
 * sequence), or delivered and not acked: retrying when its record says so for this enqueue,
 * else active.
 */
function jobsStreamSources(ctx: NaqContext, w: Wanted, states: ListState[]): Source[] {
  // One queue's jobs are in one lane per priority level, a subject filter each; every queue's
  // are under one filter.
  if (!w.queue) return [jobsStreamSource(ctx, w, states, 'jobs', ctx.layout.allJobs)];
  const queue = w.queue;
  return [
    ...PRIORITIES.map((p) => jobsStreamSource(ctx, w, states, p === DEFAULT_PRIORITY ? 'jobs' : `jobs~${p}`, ctx.layout.queueFilter(queue, p))),
    jobsStreamSource(ctx, w, states, 'jobs~g', ctx.layout.stagedSubject(queue, '>')),
  ];
}

function jobsStreamSource(ctx: NaqContext, w: Wanted, states: ListState[], name: string, subject: string): Source {
  // By lane token (`q` or `q~<level>`): each lane has its consumer.
  const delivered = new Map<string, Promise<number>>();
  const deliveredOf = (lane: string) => {
    let d = delivered.get(lane);
    if (!d) {
      d = ctx
        .jsm()
        .then((jsm) => {
          const { queue, priority } = parseLane(lane);
          return jsm.consumers.info(ctx.layout.jobsStream, ctx.layout.consumerName(queue, priority));
        })
        .then(
          (info) => info.delivered.stream_seq,
          () => 0,
        );
      delivered.set(lane, d);
    }
    return d;
  };
  return {
    name,
    page: async (pos, want) => {
      const kv = await ctx.storage.jobsKv();
      const budget = w.name === undefined && states.includes('pending') && states.length === 3 ? Number.POSITIVE_INFINITY : CLIENT_FILTER_BUDGET;
      return backPage(ctx, ctx.layout.jobsStream, subject, pos, want, budget, async (msgs) => {
        return Promise.all(
          msgs.map(async (m): Promise<Candidate | null> => {
            const lane = m.subject.split('.').at(-2) ?? '';
            const { queue, staged } = parseLane(lane);
            const id = m.subject.split('.').at(-1) ?? '';
            let job: JobMessage | null = null;
            try {
              job = decodeJob(m.data);
            } catch {
              // An undecodable message is listed: a worker will dead-letter it.
            }
            const jobName = job?.name ?? '(undecodable)';
            if (w.name !== undefined && jobName !== w.name) return null;
            const base = { id, name: jobName, queue, enqueuedAt: job?.ts ?? m.time, attempts: 0, maxAttempts: job?.attempts ?? 1 };
            // A grouped job the group dispatcher holds has not started: it is pending until released.
            if (staged || m.seq > (await deliveredOf(lane))) {
              return states.includes('pending') ? { key: m.time, pos: m.seq, row: { ...base, state: 'pending', at: m.time } } : null;
            }
            const r = await readRecord(kv, id);
            const ofThisRun = r !== null && job !== null && r.enqueuedAt === job.ts;
            const state: ListState = ofThisRun && r.status === 'retrying' ? 'retrying' : 'active';
            if (!states.includes(state)) return null;
            const row: JobRow = { ...base, state, at: (ofThisRun ? r.startedAt : undefined) ?? m.time };
            if (ofThisRun) {
              row.attempts = r.attempts.length;
              if (r.error) row.error = r.error.message;
            }
            return { key: m.time, pos: m.seq, row };
          }),
        );
      });
    },
  };
}

/** Dead letters, unless a later run of their job (or a retry) superseded them. */
function deadSource(ctx: NaqContext, w: Wanted): Source {
  const subject = w.queue ? ctx.layout.deadSubject(w.queue) : ctx.layout.allDead;
  return {
    name: 'dead',
    page: async (pos, want) => {
      const kv = await ctx.storage.jobsKv();
      const budget = w.name === undefined ? Number.POSITIVE_INFINITY : CLIENT_FILTER_BUDGET;
      return backPage(ctx, ctx.layout.deadStream, subject, pos, want, budget, async (msgs) => {
        const letters = msgs.map((m) => {
          try {
            return JSON.parse(Buffer.from(m.data).toString('utf8')) as DeadLetter;
          } catch {
            return null;
          }
        });
        const records = await Promise.all(letters.map((d) => (d?.jobId ? readRecord(kv, d.jobId) : null)));
        return msgs.map((m, i) => {
          const d = letters[i];
          if (!d) return null;
          const r = records[i];
          if (r && !(r.status === 'failed' && r.deadSeq === m.seq)) return null;
          const name = d.job?.name ?? '(undecodable)';
          if (w.name !== undefined && name !== w.name) return null;
          const row: JobRow = {
            id: d.jobId ?? '',
            name,
            queue: d.queue,
            state: 'dead',
            at: d.ts,
            enqueuedAt: d.job?.ts ?? d.ts,
            attempts: r?.attempts.length ?? d.job?.attempts ?? 1,
            maxAttempts: d.job?.attempts ?? 1,
            error: d.reason,
            deadSeq: m.seq,
          };
          return { key: m.time, pos: m.seq, row };
        });
      });
    },
  };
}

/** Jobs enqueued to run later: one-shot schedules named by the job id. */
function delayedSource(ctx: NaqContext, w: Wanted): Source {
  return bucketSource('delayed', async () => {
    const kv = await ctx.storage.schedulesKv();
    const entries = await allEntries(ctx, kv, ctx.layout.schedulesBucket);
    const rows: Candidate[] = [];
    for (const e of entries) {
      const s = e as ScheduleRecord;
      if (s.kind !== 'at' || s.status !== 'active' || (w.queue && s.queue !== w.queue) || (w.name !== undefined && s.name !== w.name)) continue;
      const id = s.opts.jobId ?? s.id;
      const row: JobRow = { id, name: s.name, queue: s.queue, state: 'delayed', at: s.createdAt, enqueuedAt: s.createdAt, attempts: 0, maxAttempts: s.opts.attempts ?? ctx.defaults.attempts };
      if (s.nextRunAt !== null) row.runAt = s.nextRunAt;
      rows.push({ key: s.createdAt, pos: [s.createdAt, id], row });
    }
    return rows;
  });
}

/** Jobs waiting for their dependencies. */
function waitingSource(ctx: NaqContext, w: Wanted): Source {
  return bucketSource('waiting', async () => {
    const kv = await ctx.storage.waitingKv();
    const rows: Candidate[] = [];
    for (const e of await allEntries(ctx, kv, ctx.layout.waitingBucket)) {
      const job = e as JobMessage;
      if ((w.queue && job.queue !== w.queue) || (w.name !== undefined && job.name !== w.name)) continue;
      const row: JobRow = { id: job.id, name: job.name, queue: job.queue, state: 'waiting', at: job.ts, enqueuedAt: job.ts, attempts: 0, maxAttempts: job.attempts };
      rows.push({ key: job.ts, pos: [job.ts, job.id], row });
    }
    return rows;
  });
}

/**
 * A source read whole from a bucket (delayed and waiting jobs are few next to finished ones),
 * ordered newest first by (time, id); its position is the last (time, id) given.
 */
function bucketSource(name: string, read: () => Promise<Candidate[]>): Source {
  return {
    name,
    page: async (pos, want) => {
      const all = (await read()).sort((a, b) => b.key - a.key || (b.row.id < a.row.id ? -1 : b.row.id > a.row.id ? 1 : 0));
      const after = Array.isArray(pos) ? (pos as [number, string]) : null;
      const older = after ? all.filter((c) => c.key < after[0] || (c.key === after[0] && c.row.id < after[1])) : all;
      const rows = older.slice(0, want);
      return { rows, done: older.length <= want, next: rows.at(-1)?.pos ?? pos };
    },
  };
}

/** Every live value of a bucket, keys from its stream's subject counts (see listWorkers). */
async function allEntries(ctx: NaqContext, kv: KV, bucket: string): Promise<unknown[]> {
  const jsm = await ctx.jsm();
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}>` });
  const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
  const entries = await Promise.all(keys.map((k) => kv.get(k).catch(() => null)));
  const values: unknown[] = [];
  for (const e of entries) {
    if (!e || e.operation !== 'PUT') continue;
    try {
      values.push(e.json());
    } catch {
      // Not JSON: not something naq wrote; skipped.
    }
  }
  return values;
}

async function readRecord(kv: KV, id: string): Promise<JobRecord | null> {
  const e = await kv.get(id).catch(() => null);
  if (!e || e.operation !== 'PUT') return null;
  try {
    const r = e.json<JobRecord>();
    return r && typeof r === 'object' && Array.isArray(r.attempts) ? r : null;
  } catch {
    return null;
  }
}

function rowOf(r: JobRecord, state: ListState, at: number): JobRow {
  const row: JobRow = { id: r.id, name: r.name, queue: r.queue, state, at, enqueuedAt: r.enqueuedAt, attempts: r.attempts.length, maxAttempts: r.maxAttempts };
  if (r.error) row.error = r.error.message;
  if (r.deadSeq !== undefined) row.deadSeq = r.deadSeq;
  return row;
}
