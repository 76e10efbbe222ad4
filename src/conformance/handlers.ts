/**
 * The reference handlers of the conformance kit (docs/wire-format.md, "Conformance"). A worker
 * under test implements these four by these names; `naq worker --handlers "$(naq conformance
 * handlers)"` is the reference implementation. Exported by job name, as a handlers module.
 */
import { NaqError } from '../core/errors.js';
import type { JobContext } from '../actors/worker/handler.js';

export const FAILURE_CODE = 'CONFORMANCE_FAILURE';

function text(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}

function field(data: unknown, key: string): unknown {
  return typeof data === 'object' && data !== null ? (data as Record<string, unknown>)[key] : undefined;
}

/** Its data back, as the result. */
function echo(data: unknown): unknown {
  return data ?? null;
}

/** Always fails, with the message and code it is given. */
function fail(data: unknown): never {
  throw new NaqError(text(field(data, 'code'), FAILURE_CODE), text(field(data, 'message'), 'conformance failure'));
}

/** Fails every attempt before `data.attempt`, then returns the attempt it succeeded on. */
function failUntil(data: unknown, ctx: JobContext): { attempt: number } {
  const until = Number(field(data, 'attempt') ?? 1);
  if (ctx.attempt < until) throw new NaqError(FAILURE_CODE, `attempt ${ctx.attempt} fails`);
  return { attempt: ctx.attempt };
}

/** Waits `data.ms`, ended early by the job's timeout or a cancel. */
function sleep(data: unknown, ctx: JobContext): Promise<{ slept: number }> {
  const ms = Number(field(data, 'ms') ?? 0);
  const signal = ctx.signal;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', aborted);
      resolve({ slept: ms });
    }, ms);
    const aborted = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', aborted, { once: true });
  });
}

/** By job name. The functions themselves are not exported: a handlers module registers every exported function, and a worker must load these four names only. */
export const referenceHandlers = {
  'conformance.echo': echo,
  'conformance.fail': fail,
  'conformance.failUntil': failUntil,
  'conformance.sleep': sleep,
};

export default referenceHandlers;
