/**
 * `ctx.log`: the worker's logger for one job, which also keeps what the handler logs with the
 * job's record (the last `jobs.maxLogLines` lines of every attempt of one enqueue), so an
 * operator reads a failed job's story where the job is (`naq job ID --logs`, the dashboard).
 */
import { format } from 'node:util';
import type { Logger } from '../../core/log.js';
import type { AttemptRecord, JobRecord, LogLine } from '../../model/job.js';

const LEVELS: ReadonlySet<string> = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
/** A line is for people, not a payload. */
const MAX_LINE_CHARS = 2000;

/** The worker's pino logger, callable as `ctx.log('text')` too (an info line). */
export interface JobLogger extends Logger {
  (msg: string, ...args: unknown[]): void;
}

/** What a retry keeps from the attempts before it: their history and their lines. */
export interface History {
  attempts: AttemptRecord[];
  logs: LogLine[];
  logsDropped: number;
}

export const NO_HISTORY: History = { attempts: [], logs: [], logsDropped: 0 };

/** The lines of one attempt, the last `max` of them. */
export class LogLines {
  readonly lines: LogLine[] = [];
  dropped = 0;
  constructor(
    readonly max: number,
    readonly attempt: number,
    readonly now: () => number,
  ) {}

  add(level: LogLine['level'], args: unknown[]): void {
    if (this.max === 0) return;
    let msg: string;
    try {
      msg = lineText(args);
    } catch {
      // A value whose getters or proxy traps throw: the line is kept, its content is not.
      msg = '[a log line that could not be read]';
    }
    this.lines.push({ ts: this.now(), level, msg, attempt: this.attempt });
    if (this.lines.length > this.max) {
      this.lines.shift();
      this.dropped++;
    }
  }
}

/** A pino call's arguments as one line of text: `(msg, ...args)`, `(obj, msg?)` or `(err, msg?)`. */
function lineText(args: unknown[]): string {
  const [first, ...rest] = args;
  let text: string;
  if (first instanceof Error) text = rest.length ? `${format(...rest)}: ${first.message}` : first.message;
  else if (first !== null && typeof first === 'object') {
    let fields: string;
    try {
      fields = JSON.stringify(first) ?? '';
    } catch {
      fields = '[not JSON]';
    }
    text = rest.length ? `${format(...rest)} ${fields}` : fields;
  } else text = format(first, ...rest);
  return text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}… [cut]` : text;
}

/**
 * The job's logger: each level method logs through the worker's logger and keeps the line;
 * debug and trace lines are kept only when the logger lets them through. Everything else
 * (child, level, bindings) is the pino logger's own.
 */
export function jobLogger(log: Logger, lines: LogLines): JobLogger {
  const call = (level: LogLine['level'], args: unknown[]) => {
    if (level === 'info' || level === 'warn' || level === 'error' || level === 'fatal' || log.isLevelEnabled(level)) lines.add(level, args);
    (log[level] as (...a: unknown[]) => void)(...args);
  };
  // An arrow function as the target: callable, and with no non-configurable `prototype`.
  return new Proxy((...args: unknown[]) => call('info', args), {
    get(_target, prop) {
      if (typeof prop === 'string' && LEVELS.has(prop)) return (...args: unknown[]) => call(prop as LogLine['level'], args);
      const value = Reflect.get(log, prop) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(log) : value;
    },
    set: (_target, prop, value) => Reflect.set(log, prop, value),
    has: (_target, prop) => prop in log,
  }) as unknown as JobLogger;
}

/** The lines a record of this attempt carries: the earlier attempts' and this one's, bounded. */
export function recordLogs(history: History, current: LogLines | undefined, max: number): { lines: LogLine[]; dropped: number } | undefined {
  const fresh = current?.lines ?? [];
  if (history.logs.length === 0 && fresh.length === 0) return undefined;
  const all = history.logs.length ? [...history.logs, ...fresh] : fresh;
  const cut = Math.max(0, all.length - max);
  return { lines: cut ? all.slice(cut) : all, dropped: history.logsDropped + (current?.dropped ?? 0) + cut };
}

/** Sets `logs` (and `logsDropped`) on a record about to be written. */
export function attachLogs(record: JobRecord, logs: { lines: LogLine[]; dropped: number } | undefined): JobRecord {
  if (!logs) return record;
  record.logs = logs.lines;
  if (logs.dropped) record.logsDropped = logs.dropped;
  return record;
}

/** The history a stored record gives the next attempt of the same enqueue. */
export function historyOf(record: JobRecord, attempt: number): History {
  return {
    attempts: (Array.isArray(record.attempts) ? record.attempts : []).filter((a) => a.finishedAt !== undefined && a.n < attempt),
    logs: Array.isArray(record.logs) ? record.logs.filter((l) => l.attempt < attempt) : [],
    logsDropped: record.logsDropped ?? 0,
  };
}
