/**
 * The bench reads nats-server's CPU time from outside the server's process to print its CPU
 * per job beside the consumer's: these readings must be in µs, as process.cpuUsage's are.
 */
import { describe, expect, it } from 'vitest';
import { perJob, processCpuUs } from '../../bench/util.js';

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

  it('has no reading for a process that does not exist', () => {
    expect(processCpuUs(2 ** 22 + 1)).toBeUndefined();
  });

  it('divides a span by its jobs, and has no figure without both readings', () => {
    expect(perJob(1_000, 4_000_000, 100_000)).toBeCloseTo(39.99);
    expect(perJob(undefined, 4_000_000, 100_000)).toBeUndefined();
    expect(perJob(1_000, undefined, 100_000)).toBeUndefined();
    expect(perJob(1_000, 2_000, 0)).toBeUndefined();
  });
});
