/** Exponential backoff with jitter, shared by the connection, supervisor and retry logic. */
export interface BackoffSettings {
  initialDelayMs: number;
  maxDelayMs: number;
  /** Fraction in [0, 1] of the delay that is randomised away (0 = none). */
  jitter?: number;
}

/**
 * Delay before retry number `attempt` (1-based): initial · 2^(attempt-1), capped at the
 * maximum, then reduced by up to `jitter` of itself so that many clients retrying after the
 * same outage do not stampede the server in lockstep.
 */
export function backoffDelay(attempt: number, settings: BackoffSettings, random: () => number = Math.random): number {
  const exponent = Math.max(0, attempt - 1);
  const base = Math.min(settings.maxDelayMs, settings.initialDelayMs * 2 ** Math.min(exponent, 30));
  const jitter = settings.jitter ?? 0;
  return Math.round(base * (1 - jitter * random()));
}
