/**
 * The JSON API under /api/: reads and actions, each a call on the DashboardBackend. Actions
 * are POSTs; the server has already refused them when read-only or cross-site.
 */
import { InvalidArgumentError, NaqError } from '../core/errors.js';
import { LIST_STATES, type CleanJobsFilter, type DashboardBackend, type DashboardJob, type JobPage, type JobRow, type ListJobsFilter, type ListState, type RetryJobsFilter } from './backend.js';
import type { ActorTree } from './actor-tree.js';
import type { LiveFeed } from './live.js';

export interface ApiContext {
  backend: DashboardBackend;
  live: LiveFeed;
  /** This process's own actors, when it has any beside the dashboard's. */
  tree: ActorTree | null;
  readOnly: boolean;
  hidePayloads: boolean;
}

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: () => Promise<Record<string, unknown>>;
}

export type ApiResult = { status: number; body: unknown };

const HIDDEN = '[hidden]';
const MAX_PAGE = 200;

type Route = { method: 'GET' | 'POST'; pattern: RegExp; run: (ctx: ApiContext, m: string[], req: ApiRequest) => Promise<unknown> };

function listState(value: unknown, allowed: readonly string[] = LIST_STATES): ListState {
  if (typeof value !== 'string' || !allowed.includes(value)) throw new InvalidArgumentError(`state: expected one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  return value as ListState;
}

function optionalText(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new InvalidArgumentError(`${name}: expected text`);
  return value;
}

/** A flow parent's page shows this many children per node and nodes in all (and how many more there are). */
const FLOW_SHOWN = { maxChildren: 100, maxNodes: 500 };

function withoutPayloads(job: DashboardJob, hide: boolean): DashboardJob {
  if (!hide) return job;
  const copy = { ...job };
  if ('data' in copy) copy.data = HIDDEN;
  if ('result' in copy) copy.result = HIDDEN;
  return copy;
}

async function jobDetail(ctx: ApiContext, id: string) {
  const job = await ctx.backend.getJob(id);
  if (!job) throw new NaqError('NOT_FOUND', `job ${id} not found`);
  // The timeline: this job's events since it was enqueued, from its queue's subject only.
  const [events, flow] = await Promise.all([
    ctx.backend.history({ queue: job.queue, jobId: id, since: job.enqueuedAt - 1000, limit: 500 }).catch(() => []),
    // A flow parent's tree (its first children per node); null for other jobs.
    ctx.backend.getFlow(id, FLOW_SHOWN).catch(() => null),
  ]);
  return {
    job: withoutPayloads(job, ctx.hidePayloads),
    flow,
    events: events.map((e) => ({ type: e.type, ts: e.ts, workerId: e.workerId, data: ctx.hidePayloads && e.type === 'job.progress' ? undefined : e.data })),
  };
}

/** A record as a row of the listing, for a search by id (one read, no listing). */
function rowOf(job: DashboardJob): JobRow {
  const row: JobRow = {
    id: job.id,
    name: job.name,
    queue: job.queue,
    state: job.status === 'failed' && job.deadSeq !== undefined ? 'dead' : job.status,
    at: job.finishedAt ?? job.startedAt ?? job.enqueuedAt,
    enqueuedAt: job.enqueuedAt,
    attempts: job.attempts.length,
    maxAttempts: job.maxAttempts,
  };
  if (job.error) row.error = job.error.message;
  if (job.deadSeq !== undefined) row.deadSeq = job.deadSeq;
  return row;
}

async function listJobs(ctx: ApiContext, query: URLSearchParams): Promise<JobPage> {
  const id = optionalText(query.get('id'), 'id');
  if (id) {
    const job = await ctx.backend.getJob(id);
    const queue = optionalText(query.get('queue'), 'queue');
    return { jobs: job && (!queue || job.queue === queue) ? [rowOf(job)] : [], cursor: null };
  }
  const filter: ListJobsFilter = {};
  const queue = optionalText(query.get('queue'), 'queue');
  if (queue) filter.queue = queue;
  const state = optionalText(query.get('state'), 'state');
  if (state) filter.state = listState(state);
  const name = optionalText(query.get('name'), 'name');
  if (name) filter.name = name;
  const cursor = optionalText(query.get('cursor'), 'cursor');
  if (cursor) filter.cursor = cursor;
  const limit = Number(query.get('limit') ?? 50);
  filter.limit = Number.isInteger(limit) && limit > 0 ? Math.min(limit, MAX_PAGE) : 50;
  return ctx.backend.listJobs(filter);
}

async function system(ctx: ApiContext) {
  // The page still draws the tree when a read fails (NATS away): it says what could not be read.
  const problems: string[] = [];
  const failed = <T>(what: string, fallback: T) => (error: unknown) => {
    problems.push(`${what}: ${error instanceof Error ? error.message : String(error)}`);
    return fallback;
  };
  const [workers, lease] = await Promise.all([
    ctx.backend.listWorkers().catch(failed('workers', [])),
    ctx.backend.leaderLease().catch(failed('leader', null)),
  ]);
  const health = ctx.backend.health();
  return {
    problems,
    tree: ctx.tree?.snapshot() ?? [],
    health: { state: health.state, healthy: health.healthy, failures: health.failures, server: health.actors.connection?.server ?? null },
    leader: { here: ctx.backend.isLeader(), lease },
    workers,
  };
}

const ROUTES: Route[] = [
  { method: 'GET', pattern: /^\/api\/session$/, run: async (ctx) => ({ readOnly: ctx.readOnly, hidePayloads: ctx.hidePayloads }) },
  { method: 'GET', pattern: /^\/api\/overview$/, run: async (ctx) => ({ queues: await ctx.backend.listQueues(), throughput: ctx.live.throughput.series() }) },
  { method: 'GET', pattern: /^\/api\/queues\/([^/]+)$/, run: (ctx, [q]) => ctx.backend.queueStats(q!) },
  { method: 'POST', pattern: /^\/api\/queues\/([^/]+)\/pause$/, run: (ctx, [q]) => ctx.backend.pauseQueue(q!) },
  { method: 'POST', pattern: /^\/api\/queues\/([^/]+)\/resume$/, run: (ctx, [q]) => ctx.backend.resumeQueue(q!) },
  {
    method: 'POST',
    pattern: /^\/api\/queues\/([^/]+)\/retry$/,
    run: async (ctx, [q], req) => {
      const body = await req.body();
      const filter: RetryJobsFilter = { queue: q!, state: listState(body.state, ['dead', 'failed']) as RetryJobsFilter['state'] };
      const name = optionalText(body.name, 'name');
      if (name) filter.name = name;
      return ctx.backend.retryJobs(filter);
    },
  },
  {
    method: 'POST',
    pattern: /^\/api\/queues\/([^/]+)\/clean$/,
    run: async (ctx, [q], req) => {
      const body = await req.body();
      const olderThanMs = body.olderThanMs ?? 0;
      if (typeof olderThanMs !== 'number' || !Number.isInteger(olderThanMs) || olderThanMs < 0) throw new InvalidArgumentError('olderThanMs: expected an integer >= 0');
      const filter: CleanJobsFilter = { queue: q!, state: listState(body.state, ['completed', 'failed', 'cancelled', 'dead']) as CleanJobsFilter['state'], olderThanMs };
      const name = optionalText(body.name, 'name');
      if (name) filter.name = name;
      return ctx.backend.cleanJobs(filter);
    },
  },
  { method: 'GET', pattern: /^\/api\/jobs$/, run: (ctx, _m, req) => listJobs(ctx, req.query) },
  { method: 'GET', pattern: /^\/api\/jobs\/([^/]+)$/, run: (ctx, [id]) => jobDetail(ctx, id!) },
  { method: 'POST', pattern: /^\/api\/jobs\/([^/]+)\/retry$/, run: (ctx, [id]) => ctx.backend.retryDead(id!) },
  { method: 'POST', pattern: /^\/api\/jobs\/([^/]+)\/cancel$/, run: (ctx, [id]) => ctx.backend.cancel(id!) },
  { method: 'POST', pattern: /^\/api\/jobs\/([^/]+)\/promote$/, run: (ctx, [id]) => ctx.backend.promote(id!) },
  { method: 'POST', pattern: /^\/api\/jobs\/([^/]+)\/remove$/, run: (ctx, [id]) => ctx.backend.removeJob(id!) },
  { method: 'GET', pattern: /^\/api\/workers$/, run: (ctx) => ctx.backend.listWorkers() },
  {
    method: 'GET',
    pattern: /^\/api\/schedules$/,
    run: async (ctx) => (await ctx.backend.listSchedules()).map((s) => (ctx.hidePayloads ? { ...s, data: HIDDEN } : s)),
  },
  { method: 'POST', pattern: /^\/api\/schedules\/([^/]+)\/pause$/, run: (ctx, [id]) => ctx.backend.pauseSchedule(id!) },
  { method: 'POST', pattern: /^\/api\/schedules\/([^/]+)\/resume$/, run: (ctx, [id]) => ctx.backend.resumeSchedule(id!) },
  { method: 'POST', pattern: /^\/api\/schedules\/([^/]+)\/remove$/, run: (ctx, [id]) => ctx.backend.removeSchedule(id!) },
  { method: 'POST', pattern: /^\/api\/schedules\/([^/]+)\/run$/, run: (ctx, [id]) => ctx.backend.runScheduleNow(id!) },
  { method: 'GET', pattern: /^\/api\/system$/, run: (ctx) => system(ctx) },
];

const STATUS_BY_CODE: Record<string, number> = {
  NOT_FOUND: 404,
  INVALID_ARGUMENT: 400,
  NOT_CONNECTED: 503,
  TIMEOUT: 504,
};

export async function handleApi(ctx: ApiContext, req: ApiRequest): Promise<ApiResult> {
  let pathMatched = false;
  for (const route of ROUTES) {
    const m = route.pattern.exec(req.path);
    if (!m) continue;
    pathMatched = true;
    if (route.method !== req.method) continue;
    try {
      const params = m.slice(1).map((p) => decodeURIComponent(p));
      return { status: 200, body: (await route.run(ctx, params, req)) ?? { ok: true } };
    } catch (error) {
      const code = error instanceof NaqError ? error.code : 'INTERNAL';
      const message = error instanceof Error ? error.message : String(error);
      return { status: STATUS_BY_CODE[code] ?? (error instanceof NaqError ? 409 : 500), body: { error: { code, message } } };
    }
  }
  return pathMatched
    ? { status: 405, body: { error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method} ${req.path} is not allowed` } } }
    : { status: 404, body: { error: { code: 'NOT_FOUND', message: `no API at ${req.path}` } } };
}
