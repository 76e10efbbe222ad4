import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Files run one at a time (a worker per core less one: one on the 2-core CI machine). Tests a
    // file marks concurrent (independent ones that wait on CLI subprocesses) run two at a time,
    // which keeps the second core busy without starving timing-sensitive ones.
    maxConcurrency: 2,
  },
});
