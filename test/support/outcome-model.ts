/**
 * Handler outcomes for the property test, as plain JSON a job can carry: the worker-side
 * fixture (fixtures/outcome-handlers.ts) turns a plan into real values, throws, progress and
 * timing, and the test predicts from the same plan how the job must end.
 */
export const VALUE_KINDS = [
  'undefined',
  'null',
  'number',
  'string',
  'object',
  'date',
  'bigint',
  'circular',
  'map',
  'function',
  'symbol',
  'nan',
  'error',
  'proxy',
  'deep',
  'huge',
] as const;
export type ValueKind = (typeof VALUE_KINDS)[number];

export const PROGRESS_KINDS = ['ok', 'bigint', 'circular', 'map', 'huge'] as const;
export type ProgressKind = (typeof PROGRESS_KINDS)[number];

export type Step =
  | { progress: ProgressKind; swallow: boolean }
  | { sleep: number }
  | { log: 'circular' | 'bigint' | 'error' };

export type Final = { return: ValueKind } | { throw: ValueKind } | { rejectLater: ValueKind } | { hang: true };

/** `finals[attempt - 1]` ends that attempt; the last one repeats. */
export interface Plan {
  steps: Step[];
  finals: Final[];
}

/** The timeout given to jobs whose plan may hang. */
export const HANG_TIMEOUT_MS = 150;

export function makeValue(kind: ValueKind): unknown {
  switch (kind) {
    case 'undefined':
      return undefined;
    case 'null':
      return null;
    case 'number':
      return 42;
    case 'string':
      return 'text';
    case 'object':
      return { a: [1, 'two', { three: true }] };
    case 'date':
      return new Date(0);
    case 'bigint':
      return { amount: 10n };
    case 'circular': {
      const o: Record<string, unknown> = { k: 1 };
      o.self = o;
      return o;
    }
    case 'map':
      return new Map([['k', 1]]);
    case 'function':
      return () => 1;
    case 'symbol':
      return Symbol('s');
    case 'nan':
      return NaN;
    case 'error':
      return new Error('boom', { cause: { n: 1n } });
    case 'proxy':
      return new Proxy(
        {},
        {
          get() {
            throw new Error('trap');
          },
          ownKeys() {
            throw new Error('trap');
          },
          getPrototypeOf() {
            throw new Error('trap');
          },
        },
      );
    case 'deep': {
      let v: unknown = 0;
      for (let i = 0; i < 5000; i++) v = [v];
      return v;
    }
    case 'huge':
      return { blob: 'h'.repeat(2 * 1024 * 1024) };
  }
}

export function makeProgress(kind: ProgressKind): unknown {
  if (kind === 'ok') return { done: 1 };
  if (kind === 'huge') return 'p'.repeat(100 * 1024);
  return makeValue(kind);
}

/** The code an attempt ending with `final` after `steps` fails with, or null if it completes. */
function attemptFailure(steps: Step[], final: Final): { code: string | undefined } | null {
  for (const step of steps) {
    if ('progress' in step && step.progress !== 'ok' && !step.swallow) {
      return { code: step.progress === 'huge' ? 'PROGRESS_TOO_LARGE' : 'PROGRESS_NOT_SERIALIZABLE' };
    }
  }
  if ('hang' in final) return { code: 'JOB_TIMEOUT' };
  if ('throw' in final) return { code: undefined };
  if ('rejectLater' in final) return { code: undefined };
  const kind = final.return;
  if (['undefined', 'null', 'number', 'string', 'object', 'date'].includes(kind)) return null;
  // Resolving a promise with it reads its `then`, which throws: the handler itself rejects.
  if (kind === 'proxy') return { code: undefined };
  return { code: kind === 'huge' ? 'RESULT_TOO_LARGE' : 'RESULT_NOT_SERIALIZABLE' };
}

export interface Expected {
  status: 'completed' | 'failed';
  attempts: number;
  /** The last attempt's error code, when the outcome dictates one. */
  code: string | undefined;
}

/** How a job with this plan and this many attempts must end. */
export function expectedEnd(plan: Plan, maxAttempts: number): Expected {
  for (let attempt = 1; ; attempt++) {
    const final = plan.finals[Math.min(attempt, plan.finals.length) - 1]!;
    const failure = attemptFailure(plan.steps, final);
    if (!failure) return { status: 'completed', attempts: attempt, code: undefined };
    if (attempt >= maxAttempts) return { status: 'failed', attempts: attempt, code: failure.code };
  }
}

export function mayHang(plan: Plan): boolean {
  return plan.finals.some((f) => 'hang' in f);
}
