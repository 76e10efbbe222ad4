/** Where things are, for tests that start the CLI or load a fixture. */
import { resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
/** The built CLI entry (`npm test` builds before it runs). */
export const CLI = resolve(ROOT, 'dist/src/main.js');
/** The `naq` bin, as a user's process manager starts it. */
export const BIN = resolve(ROOT, 'bin/naq.js');

export function fixture(name: string): string {
  return resolve(import.meta.dirname, 'fixtures', name);
}
