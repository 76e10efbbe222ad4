/**
 * The bench's "job path alone" line (bench/job-path.ts) measures JobPath.process on I/O that
 * does nothing. Its figure means something only if every delivery it times took the path of a
 * completed job: decoded, run, its record written, acked — not dead-lettered as a body whose
 * subject does not match, nor given back.
 */
import { describe, expect, it } from 'vitest';
import { runJobPath } from '../../bench/job-path.js';

describe('the job path alone (bench/job-path.ts)', () => {
  it('completes every delivery it times, and reports CPU per job for each round', async () => {
    const result = await runJobPath({ jobs: 400, rounds: 2, warm: 100, concurrency: 10 });
    expect(result.other).toBe(0);
    expect(result.completed).toBe(100 + 2 * 400);
    expect(result.cpuUsPerJob).toHaveLength(2);
    for (const us of result.cpuUsPerJob) expect(us).toBeGreaterThan(0);
  });
});
