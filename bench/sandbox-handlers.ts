/**
 * The handlers module of the bench's sandbox section (bench/sandbox.ts): one no-op, so the
 * section measures what running a job in a worker thread costs and nothing else. Compiled to
 * plain JS beside the bench, so neither variant loads it through tsx.
 */
export async function noop(): Promise<null> {
  return null;
}
