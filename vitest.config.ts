import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/** A module of src/, by its path there. */
const src = (path: string) => fileURLToPath(new URL(`./src/${path}`, import.meta.url));

export default defineConfig({
  // examples/ import the package by name, as a user would ('naq', 'naq/testing'). tsc resolves
  // those self-references to src/ (package.json "exports" point into dist/, which it maps back
  // to the sources); vitest is pointed at the same sources, so the examples' tests need no
  // build and never run a stale dist/.
  resolve: {
    alias: [
      { find: /^naq$/, replacement: src('index.ts') },
      { find: /^naq\/internals$/, replacement: src('internals.ts') },
      { find: /^naq\/testing$/, replacement: src('testing/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Files run one at a time (a worker per core less one: one on the 2-core CI machine). Tests a
    // file marks concurrent (independent ones that wait on CLI subprocesses) run two at a time,
    // which keeps the second core busy without starving timing-sensitive ones.
    maxConcurrency: 2,
  },
});
