import { createActor, type Actor, type ActorRefFrom, type AnyActorRef, type InspectionEvent, type Observer } from 'xstate';
import { naqSupervisor, servicesForRoles, supervisorInput } from './actors/system.js';
import { ask } from './core/ask.js';
import { enqueue, enqueueBulk } from './actors/jobs/enqueue.js';
import { getJob, jobData, waitFor } from './actors/jobs/reads.js';
import { listJobs } from './actors/jobs/listing.js';
import { enqueueBatch, enqueueFlow } from './actors/jobs/flows.js';
import { getBatch, getFlow, type BatchStatus, type FlowNode } from './actors/jobs/flow-reads.js';
import type { BatchOptions, FlowIds, FlowSpec } from './model/flow.js';
import type { CleanFilter, RetryFilter, RetryOutcome } from './actors/jobs/bulk.js';
import type { JobPage, ListFilter } from './model/job-index.js';
import { contextOf, type NaqContext } from './actors/nats/context.js';
import type { EnqueueItem, QueueStats, WorkerInfo } from './model/job.js';
import type { JobsRequest } from './actors/jobs/service.js';
import type { Handler, Handlers } from './actors/worker/handler.js';
import type { JobOptions, JobRecord } from './model/job.js';
import { ScheduleStore } from './actors/scheduler/store.js';
import type { EventsRequest } from './actors/events/service.js';
import type { EventFilter, EventStats, EventSubscription, HistoryFilter, StatsFilter } from './actors/events/queries.js';
import type { EventLogCounters } from './actors/events/buffer.js';
import type { StoredEvent } from './model/event.js';
import type { ScheduleOptions, ScheduleRecord, ScheduleSpec } from './model/schedule.js';
import type { ConnectionRegistry } from './actors/nats/connection.js';
import { KvClient, StreamsClient } from './actors/clients.js';
import { configSecrets, resolveConfig, type NaqConfig, type NaqConfigInput } from './config/index.js';
import { NaqError, NotConnectedError, OperationTimeoutError } from './core/errors.js';
import { validateDuration } from './core/duration.js';
import { createLogger, type Logger } from './core/log.js';
import { stateName } from './core/state-name.js';
import { NaqMetrics } from './metrics/metrics.js';
import type { ServiceName, SupervisorMachine, SupervisorOutput, SupervisorReport } from './machines/supervisor.js';
import type { ConnectionMachine } from './machines/connection.js';
import type { LeaderMachine } from './machines/leader.js';
import type { SchedulerMachine } from './machines/scheduler.js';
import type { ServiceMachine } from './machines/service.js';
import { checkMiddleware, withMiddleware, type Middleware } from './actors/worker/middleware.js';
import type { WorkerMachine } from './machines/worker.js';

export interface CreateNaqOptions<H extends Handlers = Handlers> {
  /** Handlers by job name, for the worker role. A job can only run a handler registered here. */
  handlers?: H;
  /** Run around every handler, in order, the first outermost (see `use`). */
  middleware?: Middleware[];
  /** Defaults to a pino logger built from `config.log`, secrets scrubbed. */
  logger?: Logger;
  /** An inspection observer for the whole actor system (see `startInspector`). */
  inspect?: Observer<InspectionEvent>;
  /** Services to run; by default those of `config.roles`. */
  services?: ServiceName[];
  /**
   * Release jobs waiting on dependencies while running (default true). Some long-running
   * process must: a short-lived one (a script that enqueues and exits) may turn it off.
   */
  resolveDependencies?: boolean;
  /** Keep Prometheus metrics (`naq.metrics`; `--metrics-port` serves them at /metrics). */
  metrics?: boolean;
}

export interface ActorHealth {
  status: string;
  state: string;
  online?: boolean;
  server?: string | null;
  error?: unknown;
}

export interface HealthReport {
  /** The supervisor's state: 'connecting', 'startingServices', 'running', 'recovering', 'stopping', 'stopped', 'failed'. */
  state: string;
  healthy: boolean;
  /** Child failures since start (each one restarted, unless the supervisor gave up). */
  failures: number;
  lastFailure: unknown;
  actors: Record<string, ActorHealth>;
}

export interface StartOptions {
  /** Reject if not running within this time (the system keeps trying unless stopped). */
  timeoutMs?: number;
}

/** The data a handler of `H` takes for job `N`. */
export type JobData<H, N extends keyof H> = H[N] extends Handler<infer D, any> ? D : never;
/** What a handler of `H` resolves to for job `N`. */
export type JobResult<H, N extends keyof H> = H[N] extends Handler<any, infer R> ? Awaited<R> : never;

export interface Naq<H extends Handlers = Handlers> extends AsyncDisposable {
  readonly config: NaqConfig;
  readonly logger: Logger;
  /** The root actor (the supervisor); undefined until `start()`. */
  readonly actor: Actor<SupervisorMachine> | undefined;
  /**
   * Resolves once connected and every service is ready. Rejects with code `SUPERVISOR_FAILED`
   * (a service or the connection failed for good), `STOPPED` (stop() came first) or
   * `TIMEOUT` (`timeoutMs` passed).
   */
  start(options?: StartOptions): Promise<void>;
  /** Stops the services in reverse order, then closes the connection. */
  stop(): Promise<SupervisorOutput | undefined>;
  /** Resolves with the supervisor's output when it ends, by stop or by failure. */
  readonly done: Promise<SupervisorOutput>;
  health(): HealthReport;
  /** The process's Prometheus metrics, when created with `metrics: true`. */
  readonly metrics: NaqMetrics | undefined;
  /** True while this process's scheduler holds the leader lease and fires the schedules. */
  isLeader(): boolean;
  /**
   * Adds a middleware, run around every handler of this process's workers after those added
   * before it: `async (job, ctx, next) => { …; const result = await next(); …; return result }`.
   * What it returns is the job's result; what it throws fails the attempt like a handler error.
   * It applies to the jobs that start after the call.
   */
  use(middleware: Middleware): Naq<H>;
  /** Finds an actor of the system by its system id; the ids naq gives its actors come typed. */
  get(systemId: 'connection'): ActorRefFrom<ConnectionMachine> | undefined;
  get(systemId: 'streams' | 'kv' | 'events' | 'jobs'): ActorRefFrom<ServiceMachine> | undefined;
  get(systemId: 'scheduler'): ActorRefFrom<SchedulerMachine> | undefined;
  get(systemId: 'leader'): ActorRefFrom<LeaderMachine> | undefined;
  get(systemId: `worker:${string}`): ActorRefFrom<WorkerMachine> | undefined;
  get(systemId: string): AnyActorRef | undefined;
  readonly streams: StreamsClient;
  readonly kv: KvClient;
  /**
   * Enqueues a job; resolves with its id once the server has stored it. With `dedupe`, the id
   * of the key's job: the window's (throttle, nothing enqueued while it is open) or the
   * debounced one this enqueue moved (docs/wire-format.md, 3.6).
   */
  enqueue<N extends keyof H & string>(name: N, data: JobData<H, N>, opts?: JobOptions): Promise<string>;
  /** Enqueues many jobs with pipelined publishes; all are validated before any is sent. */
  enqueueBulk<N extends keyof H & string>(jobs: Array<{ name: N; data: JobData<H, N>; opts?: JobOptions }>): Promise<string[]>;
  getJob(id: string): Promise<JobRecord | null>;
  /**
   * Enqueues a tree of jobs: each parent runs after all its children finished and reads their
   * results with `ctx.childResults()`; a child's `onFailure` says what its parent does if it
   * fails. All or nothing: if a publish fails, what was created is cancelled and the call
   * rejects. Resolves with the ids, in the tree's shape.
   */
  enqueueFlow(flow: FlowSpec): Promise<FlowIds>;
  /** A flow (from any of its nodes down), each node with its state. */
  getFlow(id: string, options?: { maxChildren?: number; maxNodes?: number }): Promise<FlowNode>;
  /**
   * Enqueues jobs as one batch: once every one finished (completed, or failed for good, or
   * cancelled), `onComplete` runs once with the counts as `ctx.batch`. Resolves with the
   * batch's id (its completion job's id too).
   */
  enqueueBatch(jobs: EnqueueItem[], options: BatchOptions): Promise<string>;
  /** A batch's progress, then its completion job's status. */
  getBatch(id: string): Promise<BatchStatus>;
  /** A job's data while something keeps it (not yet acked, waiting, delayed, dead-lettered); null after. */
  jobData(id: string): Promise<{ data: unknown } | null>;
  /** The job's result once it completed; throws JobFailedError if it failed or was cancelled. */
  waitFor<T = unknown>(id: string, options?: { timeoutMs?: number }): Promise<T>;
  cancel(id: string): Promise<{ id: string; status: string }>;
  retryDead(id: string): Promise<{ id: string }>;
  purgeQueue(queue: string): Promise<{ purged: number }>;
  /** A delayed job (`enqueueAt` / `enqueueIn`) runs now. */
  promote(id: string): Promise<{ id: string; promoted: true }>;
  /** Removes a job that has not started (delayed, waiting, pending) or has finished; a running one is refused (cancel it first). */
  removeJob(id: string): Promise<{ id: string; removed: string }>;
  /** Moves a delayed job to run `delayMs` from now. */
  changeDelay(id: string, delayMs: number): Promise<{ id: string; runAt: number }>;
  /** Every worker of the queue stops taking new jobs (running ones finish); persisted until resumeQueue. */
  pauseQueue(queue: string): Promise<{ queue: string; paused: boolean }>;
  resumeQueue(queue: string): Promise<{ queue: string; paused: boolean }>;
  /**
   * At most `max` job starts in any window of `durationMs`, across every worker of the queue
   * (null clears it). Persisted; workers follow it within a moment.
   */
  setQueueLimit(queue: string, limit: { max: number; durationMs: number } | null): Promise<{ queue: string; limit: { max: number; durationMs: number } | null }>;
  /**
   * The limits each group of the queue gets (jobs enqueued with `group`): at most
   * `concurrency` running at once, at most `rate.max` starts per `rate.durationMs`, across every
   * worker (null clears them). Persisted; the group dispatcher follows it within a moment.
   */
  setGroupLimit(
    queue: string,
    limit: { concurrency?: number; rate?: { max: number; durationMs: number } } | null,
  ): Promise<{ queue: string; groups: { concurrency?: number; rate?: { max: number; durationMs: number } } | null }>;
  queueStats(queue: string): Promise<QueueStats>;
  /** Jobs by queue, state and name, newest first, a page at a time (docs/wire-format.md, section 11). */
  listJobs(filter?: ListFilter): Promise<JobPage>;
  /** Re-enqueues every dead (or failed) job of a queue that matches, with fresh attempts. */
  retryJobs(filter: RetryFilter): Promise<RetryOutcome>;
  /** Removes finished records (or dead letters) of a queue older than `olderThanMs`. */
  cleanJobs(filter: CleanFilter): Promise<{ removed: number }>;
  listQueues(): Promise<QueueStats[]>;
  listWorkers(): Promise<WorkerInfo[]>;
  /** Enqueues a job to run at `at` (fired by the scheduler leader). Returns the job id. `dedupe`: throttle only. */
  enqueueAt<N extends keyof H & string>(at: Date | number, name: N, data: JobData<H, N>, opts?: Omit<JobOptions, 'dependsOn'>): Promise<string>;
  enqueueIn<N extends keyof H & string>(delayMs: number, name: N, data: JobData<H, N>, opts?: Omit<JobOptions, 'dependsOn'>): Promise<string>;
  /** Creates or replaces a recurring schedule: `{ cron, tz? }` or `{ every: ms }`. */
  schedule<N extends keyof H & string>(scheduleId: string, spec: ScheduleSpec, name: N, data: JobData<H, N>, opts?: ScheduleOptions): Promise<ScheduleRecord>;
  pauseSchedule(id: string): Promise<ScheduleRecord>;
  resumeSchedule(id: string): Promise<ScheduleRecord>;
  removeSchedule(id: string): Promise<boolean>;
  /** Revision-checked: pass the revision you read (getSchedule) to avoid overwriting a change. */
  updateSchedule(id: string, change: (current: ScheduleRecord) => ScheduleRecord, expectedRevision?: number): Promise<ScheduleRecord>;
  listSchedules(): Promise<ScheduleRecord[]>;
  getSchedule(id: string): Promise<(ScheduleRecord & { revision: number }) | null>;
  /** The event log: live tail, history, stats; flush what this process buffered. */
  readonly events: {
    subscribe(filter?: EventFilter): Promise<EventSubscription>;
    history(filter?: HistoryFilter): Promise<StoredEvent[]>;
    stats(filter: StatsFilter): Promise<EventStats>;
    flush(): Promise<EventLogCounters>;
  };
}

export function createNaq<H extends Handlers = Handlers>(input: NaqConfigInput = {}, options: CreateNaqOptions<H> = {}): Naq<H> {
  const config = resolveConfig(input);
  const logger = options.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, secrets: configSecrets(config) });
  const services = options.services ?? servicesForRoles(config.roles, config);
  const middleware: Middleware[] = (options.middleware ?? []).map((m, i) => checkMiddleware(m, `middleware[${i}]`));
  // Wrapped once: each call reads the list, so use() after start applies to later jobs.
  const handlers: Handlers = withMiddleware(options.handlers ?? {}, middleware);
  const registry: ConnectionRegistry = { current: null };
  let actor: Actor<SupervisorMachine> | undefined;
  let started: Promise<void> | undefined;
  let resolveDone!: (output: SupervisorOutput) => void;
  const done = new Promise<SupervisorOutput>((resolve) => (resolveDone = resolve));
  // Asking an actor must outlast the service's own deadline, which includes its retries.
  const askTimeoutMs = config.ops.timeoutMs + 1000;
  const get = (id: string) => actor?.system.get(id) as AnyActorRef | undefined;

  const closeLeftovers = async () => {
    const nc = registry.current;
    registry.current = null;
    if (nc && !nc.isClosed()) await nc.close().catch(() => {});
  };

  /**
   * The job data path bypasses actor messages (rule 4): it uses the context the connection
   * actor holds for the live connection.
   */
  const context = (): NaqContext => {
    const snapshot = get('connection')?.getSnapshot() as { context?: { connection?: unknown } } | undefined;
    try {
      return contextOf(snapshot?.context?.connection);
    } catch {
      throw new NotConnectedError('naq is not started (or its connection is closed)');
    }
  };
  const schedules = () => new ScheduleStore(context());
  const askEvents = <T>(request: Record<string, unknown> & { type: EventsRequest['type'] }, timeoutMs = askTimeoutMs) =>
    ask<T>(get('events'), (replyTo) => ({ ...request, replyTo }), { timeoutMs });
  // History and stats scan the stream; a stalled scan fails on its own after ops.timeoutMs.
  const queryTimeoutMs = Math.max(60_000, askTimeoutMs);
  const askJobs = <T>(request: Record<string, unknown> & { type: JobsRequest['type'] }, timeoutMs = askTimeoutMs) =>
    ask<T>(get('jobs'), (replyTo) => ({ ...request, replyTo }), { timeoutMs });
  const metrics = options.metrics
    ? new NaqMetrics({
        listQueues: () => naq.listQueues(),
        connected: () => naq.health().actors.connection?.state.startsWith('online') === true,
        eventsDropped: () => {
          try {
            return context().events.dropped;
          } catch {
            return 0;
          }
        },
        supervisorRestarts: () => naq.health().failures,
      })
    : undefined;

  const naq: Naq<H> = {
    config,
    logger,
    use(m) {
      middleware.push(checkMiddleware(m, 'use()'));
      return naq;
    },
    get metrics() {
      return metrics;
    },
    get actor() {
      return actor;
    },
    done,
    streams: new StreamsClient(() => get('streams'), askTimeoutMs),
    kv: new KvClient(() => get('kv'), askTimeoutMs),
    get: get as Naq<H>['get'],

    start(startOptions = {}) {
      if (started) return started;
      const root = createActor(naqSupervisor(config, registry, handlers, logger, { resolveDependencies: options.resolveDependencies !== false }, metrics), {
        input: supervisorInput(config, services),
        id: 'supervisor',
        systemId: 'supervisor',
        ...(options.inspect ? { inspect: options.inspect } : {}),
      });
      actor = root;
      root.on('report', (r: SupervisorReport) => logger[r.level](r.data ?? {}, r.msg));
      root.subscribe({
        next: (s) => {
          if (s.status === 'done') void closeLeftovers().then(() => resolveDone(s.output!));
        },
        error: (err) => {
          logger.error({ err }, 'supervisor crashed');
          void closeLeftovers().then(() => resolveDone({ status: 'failed', failure: { child: 'supervisor', error: null } }));
        },
      });
      started = new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const finish = (err?: Error) => {
          clearTimeout(timer);
          sub.unsubscribe();
          if (err) reject(err);
          else resolve();
        };
        const sub = root.subscribe({
          next: (s) => {
            if (s.matches({ active: 'running' })) finish();
            else if (s.status === 'done') {
              const failure = s.output?.status === 'failed' ? s.output.failure : null;
              // A stop() while starting is not a failure: hosts tell the two apart by code.
              finish(
                failure
                  ? new NaqError('SUPERVISOR_FAILED', `naq could not start: ${failure.child}: ${failure.error?.message}`)
                  : new NaqError('STOPPED', 'naq was stopped before it finished starting'),
              );
            }
          },
          error: (err) => finish(err instanceof Error ? err : new Error(String(err))),
        });
        if (startOptions.timeoutMs !== undefined) {
          timer = setTimeout(() => {
            const conn = get('connection')?.getSnapshot() as { context?: { lastError?: { message: string } | null } } | undefined;
            const why = conn?.context?.lastError?.message;
            finish(new OperationTimeoutError(`starting naq${why ? ` (last connection error: ${why})` : ''}`, startOptions.timeoutMs!));
          }, startOptions.timeoutMs);
        }
        root.start();
      });
      return started;
    },

    async stop() {
      if (!actor) return undefined;
      if (actor.getSnapshot().status === 'active') actor.send({ type: 'STOP' });
      const output = await done;
      await closeLeftovers();
      return output;
    },

    isLeader() {
      const scheduler = get('scheduler')?.getSnapshot() as { status: string; matches(state: unknown): boolean } | undefined;
      return scheduler?.status === 'active' && scheduler.matches({ active: 'leading' });
    },

    health() {
      const actors: Record<string, ActorHealth> = {};
      if (!actor) return { state: 'idle', healthy: false, failures: 0, lastFailure: null, actors };
      const root = actor.getSnapshot();
      actors.supervisor = { status: root.status, state: stateName(root.value) };
      for (const [id, child] of Object.entries(root.children)) {
        if (!child) continue;
        const s = child.getSnapshot() as { status: string; value?: unknown; context?: Record<string, unknown> };
        const entry: ActorHealth = { status: s.status, state: stateName(s.value) };
        if (s.context && 'online' in s.context) entry.online = Boolean(s.context.online);
        if (s.context && 'server' in s.context) entry.server = s.context.server as string | null;
        if (s.context?.lastError) entry.error = s.context.lastError;
        actors[id] = entry;
      }
      const state = stateName(root.value).replace(/^active\./, '');
      const healthy =
        state === 'running' &&
        actors.connection?.state === 'online.connected' &&
        Object.entries(actors).every(
          ([id, a]) => id === 'supervisor' || id === 'connection' || (a.status === 'active' && a.online !== false && !/starting|paused|draining|stopping/.test(a.state)),
        );
      return { state, healthy, failures: root.context.totalFailures, lastFailure: root.context.lastFailure, actors };
    },

    enqueue: (name, data, opts) => Promise.resolve().then(() => enqueue(context(), name, data, opts)),
    enqueueBulk: (jobs) => Promise.resolve().then(() => enqueueBulk(context(), jobs as EnqueueItem[])),
    getJob: (id) => Promise.resolve().then(() => getJob(context(), id)),
    enqueueFlow: (flow) => Promise.resolve().then(() => enqueueFlow(context(), flow)),
    getFlow: (id, flowOptions) => Promise.resolve().then(() => getFlow(context(), id, flowOptions)),
    enqueueBatch: (jobs, batchOptions) => Promise.resolve().then(() => enqueueBatch(context(), jobs, batchOptions)),
    getBatch: (id) => Promise.resolve().then(() => getBatch(context(), id)),
    jobData: (id) => Promise.resolve().then(() => jobData(context(), id)),
    waitFor: (id, waitOptions) => Promise.resolve().then(() => waitFor(context(), id, waitOptions)),
    cancel: (id) => askJobs({ type: 'jobs.cancel', id }),
    retryDead: (id) => askJobs({ type: 'jobs.retryDead', id }),
    purgeQueue: (queue) => askJobs({ type: 'jobs.purgeQueue', queue }),
    promote: (id) => askJobs({ type: 'jobs.promote', id }),
    removeJob: (id) => askJobs({ type: 'jobs.removeJob', id }),
    changeDelay: (id, delayMs) => askJobs({ type: 'jobs.changeDelay', id, delayMs }),
    pauseQueue: (queue) => askJobs({ type: 'jobs.setQueuePaused', queue, paused: true }),
    resumeQueue: (queue) => askJobs({ type: 'jobs.setQueuePaused', queue, paused: false }),
    setQueueLimit: (queue, limit) => askJobs({ type: 'jobs.setQueueLimit', queue, limit }),
    setGroupLimit: (queue, limit) => askJobs({ type: 'jobs.setGroupLimit', queue, limit }),
    queueStats: (queue) => askJobs({ type: 'jobs.queueStats', queue }),
    listJobs: (filter) => Promise.resolve().then(() => listJobs(context(), filter)),
    retryJobs: (filter) => askJobs({ type: 'jobs.retryJobs', filter }, queryTimeoutMs),
    cleanJobs: (filter) => askJobs({ type: 'jobs.cleanJobs', filter }, queryTimeoutMs),
    listQueues: () => askJobs({ type: 'jobs.listQueues' }),
    listWorkers: () => askJobs({ type: 'jobs.listWorkers' }),
    enqueueAt: (at, name, data, opts) => Promise.resolve().then(() => schedules().enqueueAt(at, name, data, opts)),
    enqueueIn: (delayMs, name, data, opts) =>
      Promise.resolve().then(() => schedules().enqueueAt(Date.now() + validateDuration('delayMs', delayMs, 0), name, data, opts)),
    schedule: (id, spec, name, data, opts) => Promise.resolve().then(() => schedules().add(id, spec, name, data, opts)),
    pauseSchedule: (id) => Promise.resolve().then(() => schedules().pause(id)),
    resumeSchedule: (id) => Promise.resolve().then(() => schedules().resume(id)),
    removeSchedule: (id) => Promise.resolve().then(() => schedules().remove(id)),
    updateSchedule: (id, change, rev) => Promise.resolve().then(() => schedules().update(id, change, rev)),
    listSchedules: () => Promise.resolve().then(() => schedules().list()),
    getSchedule: (id) => Promise.resolve().then(() => schedules().get(id)),
    events: {
      subscribe: (filter = {}) => askEvents<EventSubscription>({ type: 'events.subscribe', filter }),
      history: (filter = {}) => askEvents<StoredEvent[]>({ type: 'events.history', filter }, queryTimeoutMs),
      stats: (filter) => askEvents<EventStats>({ type: 'events.stats', filter }, queryTimeoutMs),
      flush: () => askEvents<EventLogCounters>({ type: 'events.flush' }),
    },

    async [Symbol.asyncDispose]() {
      await naq.stop();
    },
  };
  return naq;
}
