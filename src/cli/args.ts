/**
 * Command-line values, checked before anything connects: a bad one is a UsageError (exit 2)
 * that names the argument, the form it expects and what it got. The rules themselves are the
 * library's (queue names, job ids, durations, cron, time zones); this module only turns what
 * yargs hands over (a string, a number, an array when a flag was repeated) into a checked
 * value, and the library's error into one that names the flag a user typed.
 */
import { durationProblem } from '../core/duration.js';
import { InvalidArgumentError } from '../core/errors.js';
import { DEDUPE_MODES, dedupeKeyProblem, MAX_DEDUPE_KEY_CHARS, type DedupeMode } from '../model/dedupe.js';
import { validateJobId, validateQueue } from '../model/layout.js';
import { validateCron, validateTimeZone } from '../model/schedule.js';

/** A bad command-line value: the CLI prints the message and a pointer to --help, without a stack, and exits 2. */
export class UsageError extends InvalidArgumentError {}

const QUEUE_FORM = 'a queue name of letters, digits, "_" and "-" (at most 128)';
const JOB_ID_CHARS = 'letters, digits, "_", "-" and "=" (at most 200)';
const JOB_ID_FORM = `a job id of ${JOB_ID_CHARS}`;
const BUCKET_FORM = 'a bucket name of letters, digits, "_" and "-"';
const KEY_FORM = 'a key of letters, digits, "-", "/", "_", "=" and ".", not starting or ending with "." (and no "..")';
const FILTER_FORM = 'a key, or a filter whose "."-separated parts may be "*" (one part) or a last ">" (the rest), such as "jobs.>"';
const STREAM_FORM = 'a stream name without spaces, ".", "*", ">", "/" or "\\"';
const SUBJECT_FORM = 'a subject of "."-separated parts without spaces, such as "naq.jobs.default.>"';
const ISO_FORM = 'an ISO date such as 2026-12-01T09:00:00Z';
const CRON_FORM = 'a cron expression of 5 fields (or 6, seconds first)';
const TZ_FORM = 'an IANA time zone such as "Europe/Paris"';
const BACKOFF_FORM = 'fixed:MS or exponential:MS';
const JSON_FORM = 'JSON such as \'{"to":"ada"}\'';
const DEDUPE_KEY_FORM = `a dedupe key of letters, digits, "-", "_", "=", "/" and "." (not first or last, no ".."; at most ${MAX_DEDUPE_KEY_CHARS})`;
const DEDUPE_MODE_FORM = DEDUPE_MODES.join(' or ');

/** How a value is quoted in a message: strings as JSON (cut when long), anything else as is. */
function shown(raw: unknown): string {
  if (typeof raw === 'string') return JSON.stringify(raw.length > 60 ? `${raw.slice(0, 57)}...` : raw);
  return String(raw);
}

/** The error for `arg` (a flag such as `--queue`, or a positional such as `<id>`). */
function invalid(arg: string, expected: string, raw: unknown, reason?: string): UsageError {
  return new UsageError(`invalid ${arg}: expected ${expected}, got ${shown(raw)}${reason ? ` (${reason})` : ''}`);
}

/** yargs turns a repeated flag into an array; every option here takes one value. */
function single(arg: string, raw: unknown): unknown {
  if (Array.isArray(raw)) throw new UsageError(`invalid ${arg}: given ${raw.length} times, expected once`);
  return raw;
}

/** The value as the user typed it; an empty one is refused, never read as "not given". */
export function textArg(arg: string, raw: unknown, expected: string): string {
  const value = single(arg, raw);
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string' || value === '') throw invalid(arg, expected, value);
  return value;
}

/** Runs a library validator; its InvalidArgumentError becomes one that names `arg`. */
function checked(arg: string, expected: string, value: string, validate: (value: string) => unknown, withReason = false): string {
  try {
    validate(value);
    return value;
  } catch (error) {
    if (!(error instanceof InvalidArgumentError)) throw error;
    throw invalid(arg, expected, value, withReason ? reasonOf(error.message) : undefined);
  }
}

/** The validators say `invalid <what> "<value>": <why>`; the CLI message already has the first half. */
function reasonOf(message: string): string {
  return /^invalid \w+ "(?:[^"\\]|\\.)*": ([\s\S]*)$/.exec(message)?.[1] ?? message;
}

/**
 * Digits only. Numeric options are declared as strings so that this sees what was typed:
 * yargs' own number parsing turns "abc" into NaN, a bare flag into undefined (silently
 * ignored) and "1e3" or "0x10" into numbers.
 */
function integerOf(arg: string, raw: unknown): number | string {
  const value = single(arg, raw);
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return typeof value === 'string' ? value : String(value);
}

/** A job's group: any text of 1 to 256 characters. */
export function groupArg(arg: string, raw: unknown): string {
  const group = textArg(arg, raw, 'a group name of 1 to 256 characters');
  if (group.length > 256) throw invalid(arg, 'a group name of 1 to 256 characters', group);
  return group;
}

export function integerArg(arg: string, raw: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = integerOf(arg, raw);
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) throw invalid(arg, expected, value);
  return value;
}

/** Milliseconds from `min` (1, or 0 for a delay) up to MAX_DURATION_MS (10 years). */
export function durationArg(arg: string, raw: unknown, min = 1): number {
  const value = integerOf(arg, raw);
  const problem = durationProblem(value, min);
  if (problem !== null) throw new UsageError(`invalid ${arg}: ${problem}`);
  return Number(value);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration with a unit (`500ms`, `30s`, `15m`, `1h`, `7d`) or in plain milliseconds. */
export function spanArg(arg: string, raw: unknown, min = 0): number {
  const text = textArg(arg, raw, 'a duration such as 30s, 15m, 1h, 7d or milliseconds');
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`invalid ${arg}: expected a duration such as 30s, 15m, 1h, 7d or milliseconds, got ${JSON.stringify(text)}`);
  return durationArg(arg, String(Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!), min);
}

export function queueArg(arg: string, raw: unknown): string {
  return checked(arg, QUEUE_FORM, textArg(arg, raw, QUEUE_FORM), validateQueue);
}

export function jobIdArg(arg: string, raw: unknown): string {
  return checked(arg, JOB_ID_FORM, textArg(arg, raw, JOB_ID_FORM), validateJobId);
}

/** Comma-separated job ids; an empty one (`a,,b`, a trailing comma) is a typo, not skipped. */
export function jobIdsArg(arg: string, raw: unknown): string[] {
  const expected = `comma-separated job ids, each of ${JOB_ID_CHARS}`;
  const text = textArg(arg, raw, expected);
  const ids = text.split(',');
  for (const id of ids) {
    try {
      validateJobId(id);
    } catch (error) {
      if (!(error instanceof InvalidArgumentError)) throw error;
      throw invalid(arg, expected, text, `${shown(id)} is not a job id`);
    }
  }
  return ids;
}

export function dedupeKeyArg(arg: string, raw: unknown): string {
  const key = textArg(arg, raw, DEDUPE_KEY_FORM);
  if (dedupeKeyProblem(key) !== null) throw invalid(arg, DEDUPE_KEY_FORM, key);
  return key;
}

export function dedupeModeArg(arg: string, raw: unknown): DedupeMode {
  const mode = textArg(arg, raw, DEDUPE_MODE_FORM);
  if (!DEDUPE_MODES.includes(mode as DedupeMode)) throw invalid(arg, DEDUPE_MODE_FORM, mode);
  return mode as DedupeMode;
}

export function jsonArg(arg: string, raw: unknown): unknown {
  const text = single(arg, raw);
  if (typeof text !== 'string') throw invalid(arg, JSON_FORM, text);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalid(arg, JSON_FORM, text, error instanceof Error ? error.message : String(error));
  }
}

export function backoffArg(arg: string, raw: unknown): { type: 'fixed' | 'exponential'; delay: number } {
  const text = textArg(arg, raw, BACKOFF_FORM);
  const m = /^(fixed|exponential):(.*)$/.exec(text);
  if (!m) throw invalid(arg, BACKOFF_FORM, text);
  return { type: m[1] === 'exponential' ? 'exponential' : 'fixed', delay: durationArg(`${arg} delay`, m[2], 0) };
}

/** A calendar date with an optional time and offset; Date.parse alone takes "1" for the year 2001. */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

export function isoTimeArg(arg: string, raw: unknown): number {
  const text = textArg(arg, raw, ISO_FORM);
  const ms = ISO_DATE.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms)) throw invalid(arg, ISO_FORM, text);
  return ms;
}

export function timeZoneArg(arg: string, raw: unknown): string {
  return checked(arg, TZ_FORM, textArg(arg, raw, TZ_FORM), validateTimeZone);
}

/** `tz` must be checked first: a cron expression is read in its time zone. */
export function cronArg(arg: string, raw: unknown, tz?: string): string {
  return checked(arg, CRON_FORM, textArg(arg, raw, CRON_FORM), (expr) => validateCron(expr, tz), true);
}

const BUCKET = /^[A-Za-z0-9_-]+$/;
/** NATS KV's own key rule, plus no empty part between dots (the key is a subject token list). */
const KV_KEY = /^[-/_=.a-zA-Z0-9]+$/;

export function bucketArg(arg: string, raw: unknown): string {
  const name = textArg(arg, raw, BUCKET_FORM);
  if (!BUCKET.test(name)) throw invalid(arg, BUCKET_FORM, name);
  return name;
}

export function kvKeyArg(arg: string, raw: unknown): string {
  const key = textArg(arg, raw, KEY_FORM);
  if (!KV_KEY.test(key) || key.startsWith('.') || key.endsWith('.') || key.includes('..')) throw invalid(arg, KEY_FORM, key);
  return key;
}

export function kvFilterArg(arg: string, raw: unknown): string {
  const filter = textArg(arg, raw, FILTER_FORM);
  const parts = filter.split('.');
  const ok = parts.every((p, i) => p === '*' || (p === '>' && i === parts.length - 1) || /^[-/_=a-zA-Z0-9]+$/.test(p));
  if (!ok) throw invalid(arg, FILTER_FORM, filter);
  return filter;
}

export function streamArg(arg: string, raw: unknown): string {
  const name = textArg(arg, raw, STREAM_FORM);
  if (/[\s.*>/\\]/.test(name)) throw invalid(arg, STREAM_FORM, name);
  return name;
}

export function subjectArg(arg: string, raw: unknown): string {
  const subject = textArg(arg, raw, SUBJECT_FORM);
  const parts = subject.split('.');
  if (/\s/.test(subject) || parts.some((p, i) => p === '' || (p === '>' && i !== parts.length - 1))) throw invalid(arg, SUBJECT_FORM, subject);
  return subject;
}
