import { CronExpressionParser } from 'cron-parser';
import { durationProblem } from '../core/duration.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { JobOptions } from './job.js';
import { validateJobId, validatePriority, validateQueue } from './layout.js';

/**
 * Schedules: a job to enqueue at one time, every N ms, or on a cron expression. Kept in the
 * schedules bucket (one key per schedule) and fired by the scheduler leader.
 *
 * Missed runs: after downtime (no leader), a schedule fires ONCE for its overdue run, then
 * continues from the next run after now — it never fires a burst for every missed tick.
 */
export type ScheduleSpec = { cron: string; tz?: string } | { every: number };

export interface ScheduleOptions extends Omit<JobOptions, 'jobId' | 'dependsOn' | 'dedupe'> {
  /** Fire at most this many times. */
  repeat?: number;
  startAt?: Date | number;
  endAt?: Date | number;
}

export type ScheduleStatus = 'active' | 'paused' | 'completed' | 'failed';

export interface ScheduleRecord {
  v: 1;
  id: string;
  kind: 'cron' | 'every' | 'at';
  cron?: string;
  tz?: string;
  every?: number;
  name: string;
  queue: string;
  data: unknown;
  opts: Omit<JobOptions, 'queue' | 'dependsOn' | 'dedupe'>;
  status: ScheduleStatus;
  /** ms since the epoch; null once nothing is left to fire. */
  nextRunAt: number | null;
  lastRunAt?: number;
  runs: number;
  repeat?: number;
  startAt?: number;
  endAt?: number;
  error?: string;
  /**
   * A debounced job (`dedupe.mode: 'debounce'`): the dedupe key whose enqueues move it. The
   * leader claims it (status `completed`, `lastRunAt` = the fire time) before publishing it, so
   * an enqueue can no longer change it once it fires.
   */
  debounceKey?: string;
  createdAt: number;
  updatedAt: number;
}

function ms(value: Date | number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  const t = value instanceof Date ? value.getTime() : value;
  if (!Number.isFinite(t)) throw new InvalidArgumentError(`${field} is not a valid time`);
  return t;
}

export function validateTimeZone(tz: string): string {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return tz;
  } catch {
    throw new InvalidArgumentError(`invalid tz ${JSON.stringify(tz)}: expected an IANA time zone such as "Europe/Paris"`);
  }
}

export function validateCron(expr: string, tz?: string): void {
  try {
    CronExpressionParser.parse(expr, tz ? { tz } : {}).next();
  } catch (error) {
    throw new InvalidArgumentError(`invalid cron ${JSON.stringify(expr)}: ${(error as Error).message}`);
  }
}

/** The first run strictly after `after` (and not before startAt), or null when none is left. */
export function nextRun(
  s: Pick<ScheduleRecord, 'kind' | 'cron' | 'tz' | 'every' | 'startAt' | 'endAt' | 'repeat' | 'runs' | 'createdAt'>,
  after: number,
): number | null {
  if (s.repeat !== undefined && s.runs >= s.repeat) return null;
  const from = Math.max(after, (s.startAt ?? -Infinity) - 1);
  let next: number | null;
  if (s.kind === 'every') {
    // Runs stay on one grid (startAt, or creation, plus whole periods), whatever downtime did.
    const anchor = s.startAt ?? s.createdAt;
    const period = s.every!;
    next = from < anchor ? anchor : anchor + (Math.floor((from - anchor) / period) + 1) * period;
  } else if (s.kind === 'cron') {
    next = CronExpressionParser.parse(s.cron!, { currentDate: new Date(from), ...(s.tz ? { tz: s.tz } : {}) })
      .next()
      .getTime();
  } else {
    next = null;
  }
  if (next !== null && s.endAt !== undefined && next > s.endAt) return null;
  return next;
}

/** Builds and validates a schedule record; every problem is an error naming the field. */
export function buildSchedule(id: string, spec: ScheduleSpec, name: string, data: unknown, options: ScheduleOptions = {}, now = Date.now()): ScheduleRecord {
  validateJobId(id);
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError('a schedule needs a handler name');
  const { repeat, startAt, endAt, queue, ...jobOpts } = options;
  // Each run is a job of its own: a window across runs is not what a schedule means.
  if ((jobOpts as { dedupe?: unknown }).dedupe !== undefined) throw new InvalidArgumentError('a schedule takes no dedupe option: dedupe windows are for enqueue');
  if (jobOpts.priority !== undefined) validatePriority(jobOpts.priority);
  const record: ScheduleRecord = {
    v: 1,
    id,
    kind: 'cron' in spec ? 'cron' : 'every',
    name,
    queue: validateQueue(queue ?? 'default'),
    data: data ?? null,
    opts: jobOpts,
    status: 'active',
    nextRunAt: null,
    runs: 0,
    createdAt: now,
    updatedAt: now,
  };
  if ('cron' in spec) {
    if (spec.tz !== undefined) record.tz = validateTimeZone(spec.tz);
    validateCron(spec.cron, spec.tz);
    record.cron = spec.cron;
  } else {
    const problem = durationProblem(spec.every);
    if (problem) throw new InvalidArgumentError(`invalid every: ${problem}`);
    record.every = spec.every;
  }
  if (repeat !== undefined) {
    if (!Number.isInteger(repeat) || repeat < 1) throw new InvalidArgumentError(`invalid repeat ${JSON.stringify(repeat)}: expected an integer >= 1`);
    record.repeat = repeat;
  }
  const start = ms(startAt, 'startAt');
  const end = ms(endAt, 'endAt');
  if (start !== undefined) record.startAt = start;
  if (end !== undefined) record.endAt = end;
  if (start !== undefined && end !== undefined && end < start) throw new InvalidArgumentError('endAt is before startAt');
  record.nextRunAt = nextRun(record, now);
  if (record.nextRunAt === null) throw new InvalidArgumentError('the schedule would never fire (check startAt, endAt and repeat)');
  return record;
}

/** A one-shot schedule for enqueueAt / enqueueIn (and a debounced job). */
export function buildOneShot(id: string, at: number, name: string, data: unknown, options: Omit<JobOptions, 'dependsOn'>, now = Date.now()): ScheduleRecord {
  validateJobId(id);
  if (!Number.isFinite(at)) throw new InvalidArgumentError('enqueueAt needs a valid date');
  const { queue, dedupe: _dedupe, ...jobOpts } = options;
  if (jobOpts.priority !== undefined) validatePriority(jobOpts.priority);
  return {
    v: 1,
    id,
    kind: 'at',
    name,
    queue: validateQueue(queue ?? 'default'),
    data: data ?? null,
    opts: jobOpts,
    status: 'active',
    nextRunAt: at,
    runs: 0,
    repeat: 1,
    createdAt: now,
    updatedAt: now,
  };
}

/** A debounced job the leader claimed and has not finished firing (its leader may have stopped). */
export function isClaimed(s: ScheduleRecord): s is ScheduleRecord & { lastRunAt: number } {
  return s.kind === 'at' && s.debounceKey !== undefined && s.status === 'completed' && s.lastRunAt !== undefined;
}

/** The job id of one run: the same run always maps to the same id (and Nats-Msg-Id). */
export function runJobId(s: ScheduleRecord, fireTime: number): string {
  if (s.kind === 'at') return s.opts.jobId ?? s.id;
  return `${s.id}-${fireTime}`;
}
