/**
 * Reading the execution log the chaos handlers write (`<jobId> <pid> <attempt> <ms>` per
 * execution) and tracing every duplicate execution back to the fault that caused it.
 * Pure functions: no NATS, no processes.
 */

export interface Execution {
  pid: number;
  attempt: number;
  ts: number;
}

/** Executions per job id, oldest first. */
export function parseExecutions(text: string): Map<string, Execution[]> {
  const out = new Map<string, Execution[]>();
  for (const line of text.split('\n')) {
    const [id, pid, attempt, ts] = line.trim().split(' ');
    if (!id || !pid || !attempt || !ts) continue;
    const runs = out.get(id) ?? [];
    runs.push({ pid: Number(pid), attempt: Number(attempt), ts: Number(ts) });
    out.set(id, runs);
  }
  for (const runs of out.values()) runs.sort((a, b) => a.ts - b.ts);
  return out;
}

export interface Faults {
  /** When each SIGKILLed worker pid was killed. */
  workerKills: Map<number, number>;
  /** From the server's SIGKILL to the moment it was serving again. */
  serverDown: { from: number; to: number } | null;
}

export interface DuplicateCauses {
  /**
   * The later execution carried a delivery count no higher than one already run: a worker
   * ran a delivery the server had meanwhile given to someone else (it sat in the worker's
   * buffer past ack_wait), or the restarted server forgot it had delivered the job.
   */
  outOfOrder: number;
  /** The earlier execution ran on a worker SIGKILLed before it could be acknowledged. */
  workerKill: number;
  /** The earlier execution was in flight (or its ack not yet on disk) when the server was SIGKILLed. */
  serverRestart: number;
  /** Neither: a redelivery or a second enqueue that no fault explains. */
  unexplained: number;
  /** Some out-of-order and unexplained ones, for the report. */
  samples: string[];
}

/**
 * Every execution that was not a job's last is a duplicate, and something made it not count:
 * the next one ran a delivery no newer than one already run, its worker was killed while it
 * ran, or the server was killed around it. `slackMs` is how
 * long after its start an execution can still lose its outcome (the job's longest run plus
 * the record write and the ack).
 */
export function classifyDuplicates(jobs: Iterable<[string, Execution[]]>, faults: Faults, slackMs: number): DuplicateCauses {
  const out: DuplicateCauses = { outOfOrder: 0, workerKill: 0, serverRestart: 0, unexplained: 0, samples: [] };
  for (const [id, runs] of jobs) {
    let highest = 0;
    for (let i = 0; i < runs.length - 1; i++) {
      const run = runs[i]!;
      highest = Math.max(highest, run.attempt);
      const killedAt = faults.workerKills.get(run.pid);
      const down = faults.serverDown;
      const aroundRestart = down !== null && run.ts >= down.from - slackMs && run.ts <= down.to + slackMs;
      // A SIGKILLed server may lose its delivery counts, so a redelivery around the restart
      // can come back at an attempt already run: that is the restart, not the worker.
      if (runs[i + 1]!.attempt <= highest && !aroundRestart) {
        out.outOfOrder++;
        if (out.samples.length < 5) out.samples.push(`${id}: ${runs.map((r) => `pid ${r.pid} attempt ${r.attempt} at ${r.ts}`).join(', ')}`);
      } else if (killedAt !== undefined && run.ts <= killedAt && killedAt - run.ts <= slackMs) out.workerKill++;
      else if (aroundRestart) out.serverRestart++;
      else {
        out.unexplained++;
        if (out.samples.length < 5) out.samples.push(`${id} (unexplained): ${runs.map((r) => `pid ${r.pid} attempt ${r.attempt} at ${r.ts}`).join(', ')}`);
      }
    }
  }
  return out;
}
