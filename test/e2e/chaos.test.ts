// The short form of `npm run chaos` (chaos/run.ts --quick): real worker and scheduler
// processes SIGKILLed mid-work, one nats-server SIGKILL and restart, poison on the job
// subjects. It checks outcomes only (nothing lost, bounded duplicates, dead letters and
// their reasons, one job per fire time), never how fast anything happened, so load cannot
// fail it.
import { afterAll, describe, expect, it } from 'vitest';
import { classifyDuplicates, parseExecutions } from '../../chaos/analysis.js';
import { runChaos } from '../../chaos/scenario.js';
import { startServer, stopAllServers } from '../support/harness.js';

afterAll(stopAllServers);

const WORKERS = 2;
const CONCURRENCY = 10;
const JOBS = 400;

describe('chaos', () => {
  it('loses no job and keeps duplicates, dead letters and schedule fires in bounds through worker, leader and server kills', async () => {
    const lines: string[] = [];
    const r = await runChaos({
      jobs: JOBS,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      killEveryMs: 1500,
      restartServer: true,
      scheduler: true,
      durationMaxMs: 50,
      ackWaitMs: 2000,
      minKills: 2,
      maxKills: 2,
      // A trickle rather than a burst: 400 short jobs would otherwise be done before the first kill.
      enqueueOverMs: 6000,
      timeoutMs: 150_000,
      keepDirOnFailure: false,
      startServer: () => startServer(),
      log: (line) => lines.push(line),
    });
    const why = `${r.summary}\n\n${lines.join('\n')}`;
    expect(r.kills, why).toBe(2);
    expect(r.serverRestarts, why).toBe(1);
    expect(r.leaderKills, why).toBe(1);
    expect(r.crashes, why).toEqual([]);
    // Misbehaving handlers mixed in: none killed a worker (above), each ended recorded.
    expect(r.poisonOutcomes, why).toBe(JOBS / 10);
    expect(r.poisonOutcomesEnded, why).toBe(r.poisonOutcomes);

    expect(r.lost, why).toBe(0);
    expect(r.completed, why).toBe(JOBS);
    // A killed worker takes at most the jobs it was running with it; the server kill counts
    // as killing every worker at once.
    expect(r.duplicatesFromWorkerKills, why).toBeLessThanOrEqual(r.kills * CONCURRENCY);
    expect(r.duplicates, why).toBeLessThan((r.kills + r.serverRestarts * WORKERS) * CONCURRENCY);
    // Each job's completion is recorded once, and no worker ran a delivery the server had
    // already given to another (away from the restart, where the server may forget them).
    expect(r.recordedOnce, why).toBe(JOBS);
    expect(r.duplicatesOutOfOrder, why).toBe(0);

    // Bad input: each stored poison message dead-lettered with its reason; no real job there.
    expect(r.poison.map((p) => [p.label, p.ok]), why).toEqual([
      ['random bytes', true],
      ['truncated JSON', true],
      ['unknown version', true],
      ['unknown handler', true],
      ['2 MB payload', true],
    ]);
    expect(r.deadExpected, why).toBe(4);
    expect(r.deadGot, why).toBeGreaterThanOrEqual(4);
    expect(r.deadForRealJobs, why).toBe(0);
    expect(r.oversizedEnqueue, why).toMatch(/InvalidArgumentError: .*over the 1048576-byte limit/);
    expect(r.rawOversizedPublish, why).toMatch(/Maximum Payload/i);

    // Scheduler failover: one job per fire time, on the grid, and still firing after the kills.
    expect(r.scheduleFires, why).toBeGreaterThanOrEqual(2);
    expect(r.scheduleDuplicates, why).toBe(0);
    expect(r.scheduleOnGrid, why).toBe(true);
    expect(r.fireAfterFailover, why).toBe(true);
  }, 180_000);

});

describe('chaos analysis', () => {
  it('traces each duplicate execution to a worker kill, the server restart, a stale delivery, or nothing', () => {
    const runs = parseExecutions(
      [
        'killed 1 1 100', // cut short by the kill of pid 1 at 150, redelivered as attempt 2
        'killed 2 2 3000',
        'stale 1 1 100', // also cut short by the kill, then its attempt 1 runs again after attempt 2
        'stale 2 2 3000',
        'stale 3 1 4000',
        'outage 9 1 4500', // in flight when the server went down at 5000
        'outage 8 2 7000',
        'nothing 5 1 100', // pid 5 was never killed and the server was up
        'nothing 6 2 9000',
        'once 5 1 100',
        '',
      ].join('\n'),
    );
    const causes = classifyDuplicates(runs, { workerKills: new Map([[1, 150]]), serverDown: { from: 5000, to: 6000 } }, 1200);
    expect(causes).toMatchObject({ workerKill: 2, outOfOrder: 1, serverRestart: 1, unexplained: 1 });
    // Out of order around the restart is the restart's doing.
    const restart = parseExecutions(['r 1 2 4800', 'r 2 1 5500', ''].join('\n'));
    expect(classifyDuplicates(restart, { workerKills: new Map(), serverDown: { from: 5000, to: 6000 } }, 1200)).toMatchObject({ outOfOrder: 0, serverRestart: 1 });
    expect(causes.samples.some((s) => s.startsWith('nothing (unexplained)'))).toBe(true);
  });
});
