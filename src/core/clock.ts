/**
 * Time, injected (DESIGN rule 6): the job path reads the time and sets its timers through a
 * Clock, so its tests move time by hand instead of waiting.
 */
import { setLongTimeout, type LongTimer } from './duration.js';

export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; any duration up to MAX_DURATION_MS (longer waits are chained). */
  setTimeout(fn: () => void, ms: number): LongTimer;
}

export const systemClock: Clock = {
  now: Date.now,
  setTimeout: setLongTimeout,
};
