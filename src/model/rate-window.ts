/**
 * The shared state of a rate limit (docs/wire-format.md, the rates bucket): the starts of the
 * last window as `[time, count]` pairs, one per grant. Pure functions, so that the rule is
 * tested without a server.
 *
 * Strict over any window: a start is granted only while fewer than `max` starts happened in
 * the `durationMs` before it, so no window of that length, wherever it begins, holds more.
 * Workers stamp a grant with the time its jobs will start (rate-gate.ts), and a grant leaves
 * the window `slackMs` late, so that a start a little late against its stamp (a busy event
 * loop, a timer firing late) still falls in its window.
 */
import type { RateLimit } from './queue-settings.js';

export interface RateWindow {
  v: 1;
  /** Grants of the current window: [ms since the epoch, starts granted then]. */
  w: Array<[number, number]>;
}

export const EMPTY_WINDOW: RateWindow = { v: 1, w: [] };

export function decodeWindow(text: string | null | undefined): RateWindow {
  if (!text) return EMPTY_WINDOW;
  try {
    const w = JSON.parse(text) as Partial<RateWindow> | null;
    const grants = Array.isArray(w?.w) ? w.w.filter((g) => Array.isArray(g) && Number.isFinite(g[0]) && Number.isInteger(g[1]) && g[1] > 0) : [];
    return { v: 1, w: grants as Array<[number, number]> };
  } catch {
    return EMPTY_WINDOW;
  }
}

export type Take =
  /** `granted` starts may begin now; `next` is the state to write (revision-checked). */
  | { granted: number; next: RateWindow; waitMs: 0 }
  /** None now: try again in `waitMs`. */
  | { granted: 0; next: null; waitMs: number };

/** How late a grant leaves the window: 2 % of it, from 1 to 50 ms (at most 2 % of the rate). */
export function slackMs(limit: RateLimit): number {
  return Math.min(50, Math.max(1, Math.floor(limit.durationMs / 50)));
}

/** Up to `want` starts at `now`, under `limit`. */
export function take(state: RateWindow, limit: RateLimit, now: number, want: number): Take {
  const span = limit.durationMs + slackMs(limit);
  const live = state.w.filter(([t]) => t > now - span);
  const used = live.reduce((sum, [, n]) => sum + n, 0);
  const free = limit.max - used;
  if (free <= 0) {
    // The oldest grant leaves the window first: that is when a start is possible again.
    let oldest = Infinity;
    for (const [t] of live) if (t < oldest) oldest = t;
    return { granted: 0, next: null, waitMs: Math.max(1, oldest + span - now + 1) };
  }
  const granted = Math.min(free, want);
  return { granted, next: { v: 1, w: [...live, [now, granted]] }, waitMs: 0 };
}

/**
 * The grant `[at, n]` moved to `to`: its jobs started later than it was stamped, and the
 * window must count them from when they did. One no longer in the window (it left it, or a
 * lost reply hid a move that landed) is added again: counting a grant twice slows the queue,
 * not counting it breaks the limit.
 */
export function moveGrant(state: RateWindow, [at, n]: [number, number], to: number): RateWindow {
  const w = state.w.slice();
  const i = w.findIndex(([t, k]) => t === at && k === n);
  if (i < 0) w.push([to, n]);
  else w[i] = [to, n];
  return { v: 1, w };
}
