/**
 * The bench reads nats-server's CPU time from outside the server's process to print its CPU
 * per job beside the consumer's, and the consumer's main thread apart from its other threads:
 * these readings must be in µs, as process.cpuUsage's are.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { childDrainCpu, mainThreadCpuUs, perJob, processCpuUs } from '../../bench/util.js';

describe('a process CPU time read from outside it (bench/util.ts)', () => {
  it('counts what a process used, in the unit process.cpuUsage uses', () => {
    const before = processCpuUs(process.pid);
    const own0 = process.cpuUsage();
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // busy: 300 ms of CPU on this thread
    }
    const own = process.cpuUsage(own0);
    const after = processCpuUs(process.pid);
    if (process.platform !== 'linux') {
      expect(before).toBeUndefined();
      return;
    }
    const used = own.user + own.system;
    // /proc counts in 10 ms ticks; the process's other threads may add a little.
    expect(after! - before!).toBeGreaterThan(used * 0.5);
    expect(after! - before!).toBeLessThan(used * 2 + 50_000);
  });

  it("reads the main thread's part apart from the other threads'", async () => {
    // vitest runs this file in a forked process (pool: 'forks'): the test's loop is its main
    // thread, while a worker thread spins as long beside it, as V8's compiler threads do.
    const spinner = new Worker('const until = Date.now() + 400; while (Date.now() < until) {} require("node:worker_threads").parentPort.postMessage("done");', { eval: true });
    const spun = new Promise((resolve) => spinner.once('message', resolve));
    await new Promise((resolve) => spinner.once('online', resolve));
    const main0 = mainThreadCpuUs();
    const all0 = processCpuUs(process.pid);
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // busy: 300 ms of CPU on the main thread
    }
    const main1 = mainThreadCpuUs();
    const all1 = processCpuUs(process.pid);
    await spun;
    await spinner.terminate();
    if (process.platform !== 'linux') {
      expect(main0).toBeUndefined();
      return;
    }
    // The loop's 300 ms are the main thread's (in 10 ms ticks); the worker's are not.
    expect(main1! - main0!).toBeGreaterThan(200_000);
    expect(main1! - main0!).toBeLessThan(400_000);
    expect(all1! - all0!).toBeGreaterThan(main1! - main0! + 150_000);
  });

  it('has no reading for a process that does not exist', () => {
    expect(processCpuUs(2 ** 22 + 1)).toBeUndefined();
  });

  it('divides a span by its jobs, and has no figure without both readings', () => {
    expect(perJob(1_000, 4_000_000, 100_000)).toBeCloseTo(39.99);
    expect(perJob(undefined, 4_000_000, 100_000)).toBeUndefined();
    expect(perJob(1_000, undefined, 100_000)).toBeUndefined();
    expect(perJob(1_000, 2_000, 0)).toBeUndefined();
  });

  it("turns a child's drain readings into figures per job, leaving out what was not measured", () => {
    const first = { type: 'first' as const, t: 0, serverCpuUs: 1_000_000 };
    const done = { type: 'done' as const, t: 1, count: 1_000, cpuUs: 20_000, mainThreadCpuUs: 15_000, steadyCpuUs: 12_800, steadyJobs: 800, serverCpuUs: 1_030_000 };
    expect(childDrainCpu(first, done, 1_000)).toEqual({ cpuUsPerJob: 20, mainThreadCpuUsPerJob: 15, steadyCpuUsPerJob: 16, serverCpuUsPerJob: 30 });
    expect(childDrainCpu({ type: 'first', t: 0 }, { type: 'done', t: 1, count: 1_000, cpuUs: 20_000 }, 1_000)).toEqual({ cpuUsPerJob: 20 });
  });
});
