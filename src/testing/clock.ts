/**
 * Time moved by hand, for tests (DESIGN rule 6: time is injected). The job path, the test
 * mode's queue and anything else that takes a `Clock` read the time and set their timers
 * through it, so a test moves time with `advance(ms)` instead of waiting: backoff waits,
 * delayed jobs and timeouts then fire in order, at exactly their virtual time.
 */
// From node:timers, not the globals: a test that fakes timers (vi.useFakeTimers) fakes those.
import { setImmediate } from 'node:timers';
import type { Clock } from '../core/clock.js';
import type { LongTimer } from '../core/duration.js';
import { InvalidArgumentError } from '../core/errors.js';

interface Timer {
  due: number;
  /** Timers due at the same time fire in the order they were set. */
  seq: number;
  fn: () => void;
  cleared: boolean;
  /** Fires when time passes it, but is no reason to move time (nextDue skips it). */
  background: boolean;
}

/**
 * Lets pending promise reactions run: a few turns of the event loop, each of which drains the
 * microtask queue. What in-memory I/O chains (write, then ack, then the next step) needs.
 */
export async function settle(turns = 10): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** A clock that only moves when told to: timers fire during `advance`, never on their own. */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  /** Sorted by (due, seq): the next to fire is first. */
  #timers: Timer[] = [];
  #backgroundFired = 0;
  /** advance() calls run one after another, never interleaved. */
  #advancing: Promise<void> = Promise.resolve();

  /** `start`: the time it shows at first, ms since the epoch (default: the real time now). */
  constructor(start: number = Date.now()) {
    this.#now = start;
  }

  /** Bound, so `const { now } = clock` works as Date.now does. */
  readonly now = (): number => this.#now;

  readonly setTimeout = (fn: () => void, ms: number): LongTimer => this.#set(fn, ms, false);

  /**
   * A timer that fires when time passes it but is no reason to move time: `nextDue()` does not
   * count it. For housekeeping that repeats while something runs (the job path's sweep of
   * running jobs every 250 ms), so "run until the next thing happens" does not stop at each tick.
   */
  readonly setBackgroundTimeout = (fn: () => void, ms: number): LongTimer => this.#set(fn, ms, true);

  /** A Clock whose timers are all background ones (see setBackgroundTimeout). */
  background(): Clock {
    return { now: this.now, setTimeout: this.setBackgroundTimeout };
  }

  #set(fn: () => void, ms: number, background: boolean): LongTimer {
    // As Node does: a negative or non-number delay means "as soon as possible".
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: Timer = { due: this.#now + delay, seq: this.#seq++, fn, cleared: false, background };
    let i = this.#timers.length;
    while (i > 0 && this.#timers[i - 1]!.due > timer.due) i--;
    this.#timers.splice(i, 0, timer);
    return {
      clear: () => {
        timer.cleared = true;
      },
    };
  }

  /** When the next timer (not a background one) is due, or undefined when none is set. */
  nextDue(): number | undefined {
    this.#dropCleared();
    return this.#timers.find((t) => !t.cleared && !t.background)?.due;
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    this.#dropCleared();
    return this.#timers.filter((t) => !t.cleared).length;
  }

  /**
   * Moves time forward by `ms`, firing every timer due on the way in order, each at its own
   * time, and letting the promise reactions it starts run before the next one fires (so a
   * timer set by a fired one, if due within the window, fires too).
   */
  advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) return Promise.reject(new InvalidArgumentError(`advance needs a duration >= 0 in ms, got ${String(ms)}`));
    const run = this.#advancing.then(() => this.#advanceTo(this.#now + ms));
    this.#advancing = run.catch(() => {});
    return run;
  }

  /** Moves time to `time` (ms since the epoch); a time already past moves nothing. */
  advanceTo(time: number): Promise<void> {
    return this.advance(Math.max(0, time - this.#now));
  }

  async #advanceTo(end: number): Promise<void> {
    for (;;) {
      this.#dropCleared();
      const next = this.#timers[0];
      if (!next || next.due > end) break;
      this.#timers.shift();
      this.#now = Math.max(this.#now, next.due);
      next.cleared = true;
      next.fn();
      // A background timer (the job path's sweep, every 250 ms) moves nothing a test waits on:
      // settling after each would make a virtual hour cost seconds of real time.
      if (!next.background) await settle();
      else if (++this.#backgroundFired % 64 === 0) await settle(1);
    }
    this.#now = Math.max(this.#now, end);
  }

  #dropCleared(): void {
    while (this.#timers[0]?.cleared) this.#timers.shift();
    if (this.#timers.length > 64 && this.#timers.some((t) => t.cleared)) this.#timers = this.#timers.filter((t) => !t.cleared);
  }
}
