/**
 * The boundary for everything that leaves a handler: its return value, what it throws, the
 * progress it reports. Whatever a handler does, what crosses this line is a value that
 * encodes (or a typed error that says why it could not), so no job can crash the worker or
 * leave an outcome that can never be stored.
 */
import { NaqError } from '../../core/errors.js';
import { jsonProblem } from '../../model/wire-value.js';

/** Progress is a small status for people and dashboards, not a second result. */
export const MAX_PROGRESS_BYTES = 64 * 1024;

/** The handler returned a value JSON cannot carry faithfully (a BigInt, a cycle, a Map, …). */
export class ResultNotSerializableError extends NaqError {
  constructor(problem: string) {
    super('RESULT_NOT_SERIALIZABLE', `the handler's result cannot be stored: ${problem}`);
  }
}

/** The handler returned a value too large for the job record. */
export class ResultTooLargeError extends NaqError {
  constructor(bytes: number, maxBytes: number) {
    super(
      'RESULT_TOO_LARGE',
      `the handler's result is ${bytes} bytes encoded; a job record holds at most ${maxBytes} (the server's max_payload). Store large results elsewhere and return a reference`,
    );
  }
}

/** ctx.progress() was given a value JSON cannot carry faithfully. */
export class ProgressNotSerializableError extends NaqError {
  constructor(problem: string) {
    super('PROGRESS_NOT_SERIALIZABLE', `ctx.progress() cannot store this value: ${problem}`);
  }
}

/** ctx.progress() was given a value over MAX_PROGRESS_BYTES encoded. */
export class ProgressTooLargeError extends NaqError {
  constructor(bytes: number) {
    super('PROGRESS_TOO_LARGE', `ctx.progress() was given ${bytes} bytes encoded; progress holds at most ${MAX_PROGRESS_BYTES}`);
  }
}

/**
 * A copy of a progress value as it will be stored, taken when the handler reports it, so a
 * later change to the object (even one that makes it circular) cannot break the write.
 * Throws the typed error the handler should see.
 */
export function snapshotProgress(value: unknown): unknown {
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new ProgressNotSerializableError(`progress is ${value} (JSON would carry it as null)`);
    return value ?? null;
  }
  const problem = jsonProblem(value, 'progress');
  if (problem) throw new ProgressNotSerializableError(problem);
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new ProgressNotSerializableError((error as Error).message);
  }
  if (json.length > MAX_PROGRESS_BYTES) throw new ProgressTooLargeError(Buffer.byteLength(json));
  return JSON.parse(json) as unknown;
}

/** The typed error for a result JSON cannot carry, or null when it can. */
export function resultProblem(value: unknown): ResultNotSerializableError | null {
  if (value === undefined || value === null || typeof value === 'string' || typeof value === 'boolean') return null;
  const problem = jsonProblem(value, 'result');
  return problem ? new ResultNotSerializableError(problem) : null;
}
