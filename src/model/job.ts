import { durationProblem, MAX_DURATION_MS } from '../core/duration.js';
import { InvalidArgumentError, type ErrorInfo } from '../core/errors.js';
import type { DedupeOptions } from './dedupe.js';
import { DEFAULT_PRIORITY, PRIORITIES, validateGroup, validateJobId, validatePriority, validateQueue } from './layout.js';
import { jsonProblem } from './wire-value.js';
import { utf8 } from '../core/utf8.js';

/**
 * The job model and its wire format (JSON, versioned) — what a client in another language
 * publishes to enqueue a job, and what a worker reads back. Documented in docs/wire-format.md.
 */
export const WIRE_VERSION = 1;

export type BackoffOptions =
  | { type: 'fixed' | 'exponential'; delay: number; jitter?: number }
  | { type: 'list'; delays: number[]; jitter?: number };

export interface JobOptions {
  queue?: string;
  /**
   * Idempotency key: while the job with this id is pending, waiting or running, enqueueing it
   * again is a no-op; once its outcome is recorded, the id runs again.
   */
  jobId?: string;
  /** Total attempts, the first included (default from config.jobs.attempts). */
  attempts?: number;
  backoff?: BackoffOptions;
  timeoutMs?: number;
  dependsOn?: string[];
  /** How long the result is kept (logically; the bucket's TTL bounds it physically). */
  resultTtlMs?: number;
  /**
   * A dedupe window on a key (docs/wire-format.md, 3.6). `throttle`: while the window of the
   * key is open, enqueueing is a no-op that returns the id of the window's job. `debounce`: the
   * job runs `ttlMs` after the last enqueue of the key, with that enqueue's data and options.
   */
  dedupe?: DedupeOptions;
  /**
   * 1 (most urgent) to 10 (least); 5 when absent. Strict: a waiting job of a more urgent level
   * starts before any less urgent job that has not started.
   */
  priority?: number;
  /**
   * The job's group (a tenant, say): groups take turns, and a queue's group limits
   * (setGroupLimit) bound each group's running jobs and starts. Needs the group dispatcher, which
   * runs in the process leading the firing of schedules.
   */
  group?: string;
}

/** What a batch's completion job is given as `ctx.batch` (the message's `batch` field; model/flow.ts). */
export interface BatchSummary {
  id: string;
  total: number;
  completed: number;
  /** Failed for good or cancelled. */
  failed: number;
  /** The first MAX_FAILED_IDS of them. */
  failedIds: string[];
}

/** A job on the wire (one message on `<prefix>.jobs.<queue>.<id>`). */
export interface JobMessage {
  v: typeof WIRE_VERSION;
  id: string;
  name: string;
  queue: string;
  data: unknown;
  attempts: number;
  backoff?: BackoffOptions;
  timeoutMs?: number;
  dependsOn?: string[];
  resultTtlMs?: number;
  /** 1 to 10; absent means 5. It also names the subject's lane (Layout.jobSubject). */
  priority?: number;
  /** Its group: published to the queue's staging lane, released to its priority lane in turn. */
  group?: string;
  /** The flow parent or batch it belongs to: its final outcome is told there (model/flow.ts). */
  parent?: string;
  /** A batch's completion job: the batch's counts (`ctx.batch`). */
  batch?: BatchSummary;
  /** Enqueue time, ms since the epoch. */
  ts: number;
}

/** `delayed` is never stored: readers report it for a job enqueued to run later (`enqueueAt` / `enqueueIn`). */
export type JobStatus = 'pending' | 'delayed' | 'waiting' | 'active' | 'retrying' | 'completed' | 'failed' | 'cancelled';

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'cancelled']);

export interface AttemptRecord {
  n: number;
  startedAt: number;
  finishedAt?: number;
  error?: ErrorInfo;
  workerId?: string;
}

/** A line the handler logged through `ctx.log`, kept with the job's record. */
export interface LogLine {
  ts: number;
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  msg: string;
  /** The attempt that logged it. */
  attempt: number;
}

/** A job record in the jobs bucket, keyed by job id. */
export interface JobRecord {
  v: typeof WIRE_VERSION;
  id: string;
  name: string;
  queue: string;
  status: JobStatus;
  maxAttempts: number;
  attempts: AttemptRecord[];
  enqueuedAt: number;
  startedAt?: number;
  finishedAt?: number;
  progress?: unknown;
  result?: unknown;
  error?: ErrorInfo;
  dependsOn?: string[];
  /** The job's priority level when it is not the default 5. */
  priority?: number;
  /** The job's group, when it has one. */
  group?: string;
  /** The flow parent or batch it belongs to. */
  parent?: string;
  /** Where the dead-lettered copy is: its sequence in the dead stream. */
  deadSeq?: number;
  /** Past this time the record counts as gone (per-job result TTL). */
  expiresAt?: number;
  /** The payload, kept only while it is needed again (waiting on dependencies). */
  data?: unknown;
  /** What was cut so the record fits one message (e.g. "result", "attempts"); see docs/wire-format.md. */
  trimmed?: string[];
  /** The last `jobs.maxLogLines` lines the handler logged, every attempt of this enqueue. */
  logs?: LogLine[];
  /** How many earlier lines were dropped to keep that bound. */
  logsDropped?: number;
  /**
   * Deliveries of this enqueue that went back without using an attempt (a handler was rate
   * limited): a worker's attempt number is the delivery count minus this.
   */
  deferred?: number;
}

/** What lands in the dead-letter stream: the job (or raw payload) and why. */
export interface DeadLetter {
  v: typeof WIRE_VERSION;
  reason: string;
  error?: ErrorInfo;
  queue: string;
  subject: string;
  jobId?: string;
  job?: JobMessage;
  /** The undecodable payload, as text, when the job could not be read at all. */
  raw?: string;
  /** Set when the job's data did not fit beside the reason: `job.data` is null, this says what it was. */
  dataTruncated?: { bytes: number; preview: string };
  ts: number;
}

/** A worker's heartbeat in the workers bucket. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  inFlight: number;
  processed: number;
  failed: number;
  status: string;
  concurrency: number;
  startedAt: number;
  ts: number;
}

export interface QueueStats {
  queue: string;
  /** Waiting to be delivered to a worker. */
  pending: number;
  /** Delivered, not yet acknowledged. */
  inFlight: number;
  /** In the dead-letter stream. */
  dead: number;
  /** Live workers consuming the queue (by heartbeat). */
  workers: number;
  /** Paused by an operator: its workers take no new jobs. */
  paused: boolean;
  /** Its rate limit (setQueueLimit), or null. */
  limit: { max: number; durationMs: number } | null;
  /** A handler asked the queue to slow down (ctx.rateLimit): no job starts before then. */
  heldUntil?: number;
  /** The limits each group of the queue gets (setGroupLimit), when set. */
  groups?: { concurrency?: number; rate?: { max: number; durationMs: number } };
}

export interface EnqueueItem<N extends string = string, D = unknown> {
  name: N;
  data?: D;
  opts?: JobOptions;
}

export class JobDecodeError extends Error {
  override name = 'JobDecodeError';
  readonly code = 'DECODE';
}

const decoder = new TextDecoder();

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1;
}

/** Handler names are looked up in a registry and shown everywhere; a long one is a mistake. */
export const MAX_NAME_CHARS = 256;
/** More than this many dependencies is a batch, not a dependency list. */
export const MAX_DEPENDENCIES = 1000;

function checkBackoff(b: unknown): string | null {
  if (b === undefined) return null;
  if (!b || typeof b !== 'object') return 'backoff must be an object';
  const o = b as Record<string, unknown>;
  if (o.type === 'fixed' || o.type === 'exponential') {
    const problem = durationProblem(o.delay, 0);
    if (problem) return `backoff.delay: ${problem}`;
  } else if (o.type === 'list') {
    if (!Array.isArray(o.delays) || o.delays.length === 0) return 'backoff.delays must be a non-empty array of ms';
    for (const d of o.delays) {
      const problem = durationProblem(d, 0);
      if (problem) return `backoff.delays: ${problem}`;
    }
  } else return 'backoff.type must be fixed, exponential or list';
  if (o.jitter !== undefined && (typeof o.jitter !== 'number' || o.jitter < 0 || o.jitter > 1)) return 'backoff.jitter must be in [0, 1]';
  return null;
}

const REQUIRED_STRINGS = ['id', 'name', 'queue'] as const;
/** A parent's id becomes a subject token (Layout.flowNoticeSubject). */
const JOB_ID_TOKEN = /^[A-Za-z0-9_=-]{1,200}$/;

/** Validates a job message; hand-written because it runs once per job on the hot path. */
export function decodeJob(bytes: Uint8Array): JobMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw new JobDecodeError(`not JSON: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new JobDecodeError('not a JSON object');
  const j = parsed as Record<string, unknown>;
  if (j.v !== WIRE_VERSION) throw new JobDecodeError(`unsupported wire version ${JSON.stringify(j.v)} (this worker reads v${WIRE_VERSION})`);
  for (const field of REQUIRED_STRINGS) {
    if (typeof j[field] !== 'string' || (j[field] as string).length === 0) throw new JobDecodeError(`missing or empty field "${field}"`);
  }
  if ((j.name as string).length > MAX_NAME_CHARS) throw new JobDecodeError(`field "name" is longer than ${MAX_NAME_CHARS} characters`);
  if (!isPositiveInt(j.attempts)) throw new JobDecodeError('field "attempts" must be an integer >= 1');
  if (typeof j.ts !== 'number') throw new JobDecodeError('field "ts" must be a number');
  const backoffProblem = checkBackoff(j.backoff);
  if (backoffProblem) throw new JobDecodeError(backoffProblem);
  if (j.timeoutMs !== undefined && durationProblem(j.timeoutMs)) throw new JobDecodeError(`field "timeoutMs": ${durationProblem(j.timeoutMs)}`);
  if (j.resultTtlMs !== undefined && durationProblem(j.resultTtlMs)) throw new JobDecodeError(`field "resultTtlMs": ${durationProblem(j.resultTtlMs)}`);
  if (
    j.dependsOn !== undefined &&
    (!Array.isArray(j.dependsOn) || j.dependsOn.length > MAX_DEPENDENCIES || j.dependsOn.some((d) => typeof d !== 'string'))
  ) {
    throw new JobDecodeError(`field "dependsOn" must be an array of at most ${MAX_DEPENDENCIES} job ids`);
  }
  if (j.priority !== undefined && !PRIORITIES.includes(j.priority as number)) throw new JobDecodeError('field "priority" must be an integer from 1 to 10');
  if (j.group !== undefined && (typeof j.group !== 'string' || j.group.length === 0 || j.group.length > 256)) throw new JobDecodeError('field "group" must be a string of 1 to 256 characters');
  if (j.parent !== undefined && (typeof j.parent !== 'string' || !JOB_ID_TOKEN.test(j.parent))) throw new JobDecodeError('field "parent" must be a job id');
  return parsed as JobMessage;
}

const STATUSES: ReadonlySet<string> = new Set<JobStatus>(['pending', 'delayed', 'waiting', 'active', 'retrying', 'completed', 'failed', 'cancelled']);

/**
 * What is wrong with a stored record (docs/wire-format.md, 5.1), or null. Records may come
 * from workers in other languages: readers check them instead of trusting them.
 */
export function recordProblem(value: unknown): string | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return 'it is not a JSON object';
  const r = value as Record<string, unknown>;
  if (r.v !== WIRE_VERSION) return `v is ${JSON.stringify(r.v)}, expected ${WIRE_VERSION}`;
  for (const field of ['id', 'name', 'queue'] as const) if (typeof r[field] !== 'string') return `${field} is ${JSON.stringify(r[field])}, expected a string`;
  if (typeof r.status !== 'string' || !STATUSES.has(r.status)) return `status is ${JSON.stringify(r.status)}, expected one of ${[...STATUSES].join(', ')}`;
  for (const field of ['maxAttempts', 'enqueuedAt'] as const) if (!Number.isInteger(r[field])) return `${field} is ${JSON.stringify(r[field])}, expected an integer`;
  if (!Array.isArray(r.attempts)) return `attempts is ${JSON.stringify(r.attempts)}, expected an array`;
  for (const [i, a] of (r.attempts as unknown[]).entries()) {
    const at = a as Record<string, unknown> | null;
    if (!at || typeof at !== 'object' || !Number.isInteger(at.n) || !Number.isInteger(at.startedAt)) return `attempts[${i}] is ${JSON.stringify(a)}, expected { n, startedAt, ... }`;
  }
  if (r.logs !== undefined && !Array.isArray(r.logs)) return `logs is ${JSON.stringify(r.logs)}, expected an array`;
  for (const field of ['startedAt', 'finishedAt', 'expiresAt', 'deadSeq', 'logsDropped'] as const) {
    if (r[field] !== undefined && !Number.isInteger(r[field])) return `${field} is ${JSON.stringify(r[field])}, expected an integer`;
  }
  return null;
}

export interface JobDefaults {
  attempts: number;
  backoff: BackoffOptions;
  maxPayloadBytes: number;
}

/** Builds the wire message for an enqueue, rejecting bad options before anything is sent. */
export function buildJob(name: string, data: unknown, opts: JobOptions, id: string, defaults: JobDefaults): { message: JobMessage; bytes: Uint8Array } {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError('a job needs a handler name');
  if (name.length > MAX_NAME_CHARS) throw new InvalidArgumentError(`a handler name has at most ${MAX_NAME_CHARS} characters, got ${name.length}`);
  const queue = validateQueue(opts.queue ?? 'default');
  validateJobId(id);
  const attempts = opts.attempts ?? defaults.attempts;
  if (!isPositiveInt(attempts)) throw new InvalidArgumentError(`attempts must be an integer >= 1, got ${String(attempts)}`);
  const backoff = opts.backoff ?? defaults.backoff;
  const backoffProblem = checkBackoff(backoff);
  if (backoffProblem) throw new InvalidArgumentError(backoffProblem);
  for (const field of ['timeoutMs', 'resultTtlMs'] as const) {
    const problem = opts[field] === undefined ? null : durationProblem(opts[field]);
    if (problem) throw new InvalidArgumentError(`invalid ${field}: ${problem}`);
  }
  const dataProblem = jsonProblem(data, 'data');
  if (dataProblem) throw new InvalidArgumentError(`job data cannot be sent as JSON: ${dataProblem}`);
  const message: JobMessage = { v: WIRE_VERSION, id, name, queue, data: data ?? null, attempts, ts: Date.now() };
  // A job of one attempt never retries: its backoff (checked above all the same) is left out.
  // Measured: a quarter of a no-op job's JSON.parse in the worker, and 46 bytes a message.
  if (attempts > 1) message.backoff = backoff;
  if (opts.timeoutMs !== undefined) message.timeoutMs = opts.timeoutMs;
  if (opts.resultTtlMs !== undefined) message.resultTtlMs = opts.resultTtlMs;
  if (opts.dependsOn?.length) message.dependsOn = checkDependencies(id, opts.dependsOn);
  if (opts.priority !== undefined && validatePriority(opts.priority) !== DEFAULT_PRIORITY) message.priority = opts.priority;
  if (opts.group !== undefined) message.group = validateGroup(opts.group);
  const bytes = utf8(JSON.stringify(message));
  if (bytes.length > defaults.maxPayloadBytes) {
    throw new InvalidArgumentError(`job ${id} is ${bytes.length} bytes encoded, over the ${defaults.maxPayloadBytes}-byte limit (config jobs.maxPayloadBytes)`);
  }
  return { message, bytes };
}

export function encodeJson(value: unknown): Uint8Array {
  return utf8(JSON.stringify(value));
}

/** Valid, distinct ids, none of them the job's own. */
function checkDependencies(id: string, dependsOn: unknown): string[] {
  if (!Array.isArray(dependsOn)) throw new InvalidArgumentError('dependsOn must be an array of job ids');
  const ids = [...new Set(dependsOn.map((d) => validateJobId(d as string)))];
  if (ids.length > MAX_DEPENDENCIES) throw new InvalidArgumentError(`a job depends on at most ${MAX_DEPENDENCIES} others, got ${ids.length}`);
  if (ids.includes(id)) throw new InvalidArgumentError(`job ${id} depends on itself: it could never run`);
  return ids;
}

/** Delay before attempt `nextAttempt` (2-based: the first retry is attempt 2). */
export function retryDelay(backoff: BackoffOptions | undefined, nextAttempt: number, random: () => number = Math.random): number {
  if (!backoff) return 0;
  const retry = nextAttempt - 1;
  let base: number;
  if (backoff.type === 'list') base = backoff.delays[Math.min(retry - 1, backoff.delays.length - 1)] ?? 0;
  else if (backoff.type === 'exponential') base = backoff.delay * 2 ** (retry - 1);
  else base = backoff.delay;
  const jitter = backoff.jitter ?? 0;
  // An exponential backoff grows past anything a server can hold after ~40 retries.
  return Math.min(MAX_DURATION_MS, Math.max(0, Math.round(base * (1 - jitter * random()))));
}

/**
 * The one way a job record is made: from the job's message, with a status and the attempts
 * so far; callers set the rest (times, result, error) on it.
 */
export function recordFromMessage(m: Pick<JobMessage, 'id' | 'name' | 'queue' | 'attempts' | 'ts' | 'dependsOn' | 'priority' | 'group' | 'parent'>, status: JobStatus, attempts: AttemptRecord[] = []): JobRecord {
  const r: JobRecord = {
    v: WIRE_VERSION,
    id: m.id,
    name: m.name,
    queue: m.queue,
    status,
    maxAttempts: m.attempts,
    attempts,
    enqueuedAt: m.ts,
  };
  if (m.dependsOn) r.dependsOn = m.dependsOn;
  if (m.priority !== undefined && m.priority !== DEFAULT_PRIORITY) r.priority = m.priority;
  if (m.group !== undefined) r.group = m.group;
  if (m.parent !== undefined) r.parent = m.parent;
  return r;
}

