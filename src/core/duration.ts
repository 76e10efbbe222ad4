import { InvalidArgumentError } from './errors.js';

/**
 * Durations given to naq (timeouts, waits, delays) are integers of milliseconds. Node's
 * timers hold at most 2^31−1 ms (~24.8 days) and turn anything larger into 1 ms with only a
 * warning, so a long wait is chained from shorter timers (setLongTimeout) rather than handed
 * to setTimeout as is; above MAX_DURATION_MS a duration is refused, with its name.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** Ten years: the longest duration naq accepts anywhere. */
export const MAX_DURATION_MS = 10 * 365 * 86_400_000;

/** Why `value` is not a duration of at least `min` ms, or null when it is one. */
export function durationProblem(value: unknown, min = 1): string | null {
  if (typeof value !== 'number' || !Number.isInteger(value)) return `expected an integer number of milliseconds, got ${describe(value)}`;
  if (value < min) return `expected at least ${min} ms, got ${value}`;
  if (value > MAX_DURATION_MS) return `expected at most ${MAX_DURATION_MS} ms (10 years), got ${value}`;
  return null;
}

/** Returns `value` if it is a duration in [min, MAX_DURATION_MS]; otherwise an error naming `name`. */
export function validateDuration(name: string, value: unknown, min = 1): number {
  const problem = durationProblem(value, min);
  if (problem) throw new InvalidArgumentError(`invalid ${name}: ${problem}`);
  return value as number;
}

function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  return value === null ? 'null' : typeof value;
}

/** A timer that may be longer than Node's limit; `clear()` stops it whichever link is running. */
export interface LongTimer {
  clear(): void;
}

/** setTimeout for any duration up to MAX_DURATION_MS: longer waits are chained. */
export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  const due = Date.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = (left: number) => {
    timer = setTimeout(() => {
      const rest = due - Date.now();
      if (rest > 0) arm(rest);
      else fn();
    }, Math.min(Math.max(0, left), MAX_TIMER_MS));
  };
  arm(ms);
  return {
    clear: () => clearTimeout(timer),
  };
}
