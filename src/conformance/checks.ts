/**
 * What both halves of the conformance kit share: checks that print one line each, waiting for
 * a condition with a deadline, and comparing JSON values.
 */
import { isDeepStrictEqual } from 'node:util';

/** The job a producer under test enqueues last; the reference worker's handler for it ends the check. */
export const DONE_JOB = 'conformance.done';

/** A failed expectation: its message is the line the kit prints. */
export class CheckFailed extends Error {
  override name = 'CheckFailed';
}

export function expect(condition: unknown, message: string): asserts condition {
  if (!condition) throw new CheckFailed(message);
}

export function expectEqual(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) throw new CheckFailed(`${what} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
}

/** Polls `probe` until it returns something other than undefined, or fails with `what` at the deadline. */
export async function waitUntil<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new CheckFailed(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CheckResult {
  name: string;
  ok: boolean;
  /** Not run, and why (the condition it needs does not hold here). Neither ok nor failed. */
  skipped?: string;
  /** What was seen, when it says more than the name. */
  detail?: string;
  message?: string;
  ms: number;
}

export type Check = { name: string; run: () => Promise<void | { skipped: string } | { detail: string }> };

/**
 * Runs the checks at once (they use distinct job ids, so they do not disturb each other) and
 * prints a line per check as each ends: `ok`, `FAIL` with the reason, or `skip` with why.
 */
export async function runChecks(checks: Check[], print: (line: string) => void): Promise<CheckResult[]> {
  return Promise.all(
    checks.map(async ({ name, run }) => {
      const t0 = Date.now();
      let result: CheckResult;
      try {
        result = { name, ok: true, ms: Date.now() - t0, ...(await run()) };
        result.ms = Date.now() - t0;
      } catch (error) {
        result = { name, ok: false, message: error instanceof Error ? error.message : String(error), ms: Date.now() - t0 };
      }
      const detail = result.detail ? `: ${result.detail}` : '';
      print(result.skipped ? `skip ${name}: ${result.skipped}` : result.ok ? `ok   ${name}${detail} (${result.ms} ms)` : `FAIL ${name}: ${result.message}`);
      return result;
    }),
  );
}

export function summary(results: CheckResult[]): string {
  const failed = results.filter((r) => !r.ok).length;
  const skipped = results.filter((r) => r.skipped).length;
  const passed = results.length - failed - skipped;
  return `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
}
