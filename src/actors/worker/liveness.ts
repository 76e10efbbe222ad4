/**
 * Keeping running jobs visibly alive: progress written to the record (throttled), an
 * 'active' record for jobs that run long, and `working()` so the server does not redeliver a
 * job whose handler is still at it. One timer for every running job, not two per job.
 */
import type { Clock } from '../../core/clock.js';
import type { LongTimer } from '../../core/duration.js';
import { recordFromMessage, type JobMessage, type JobRecord } from '../../model/job.js';
import type { RunningJob } from './running-job.js';
import { attachLogs, NO_HISTORY, recordLogs, type History } from './job-logs.js';

const PROGRESS_EVERY_MS = 250;
const SWEEP_EVERY_MS = 250;
/**
 * Sweeps in a row that found no job running before the sweeper stops (5 s). Stopping at the
 * first one stopped it in the gaps of a busy drain; starting it again ran code V8 had not yet
 * seen run inside the optimized job path, which it then threw away (`--trace-deopt`) to
 * compile it again (40–65 ms, `--trace-opt`).
 */
const IDLE_SWEEPS = 20;

export interface LivenessDeps {
  clock: Clock;
  workerId: string;
  ackWaitMs: number;
  /** A job running this long gets an 'active' record (0: never). */
  activeAfterMs: number;
  running(): ReadonlyMap<string, RunningJob>;
  /** The earlier attempts of a retry and their lines, read once per attempt (job-path.ts). */
  history(job: JobMessage, attempt: number, running: RunningJob): Promise<History>;
  maxLogLines: number;
  write(record: JobRecord): Promise<unknown>;
  emitProgress(running: RunningJob): void;
}

export class Liveness {
  readonly #d: LivenessDeps;
  #sweeper: LongTimer | undefined;

  constructor(deps: LivenessDeps) {
    this.#d = deps;
  }

  /** ctx.progress(): at most one record write per PROGRESS_EVERY_MS per job. */
  readonly scheduleProgress = (running: RunningJob): void => {
    if (running.progressTimer) return;
    const wait = Math.max(0, PROGRESS_EVERY_MS - (this.#d.clock.now() - running.lastProgress));
    running.progressTimer = this.#d.clock.setTimeout(() => this.#writeProgress(running), wait);
  };

  #writeProgress(running: RunningJob) {
    running.progressTimer = undefined;
    running.lastProgress = this.#d.clock.now();
    running.marked = true;
    if (running.abandoned || running.finished) return;
    void this.#writeActive(running, running.progress);
    this.#d.emitProgress(running);
  }

  /** The 'active' record (with its progress); on a retry, with the earlier attempts kept. */
  async #writeActive(running: RunningJob, progress: unknown): Promise<void> {
    try {
      const { job, attempt, startedAt } = running;
      const prior = attempt > 1 ? await this.#d.history(job, attempt, running) : NO_HISTORY;
      // The outcome may have been written while the history was read: never write over it.
      if (running.abandoned || running.finished) return;
      const record = recordFromMessage(job, 'active', [...prior.attempts, { n: attempt, startedAt, workerId: this.#d.workerId }]);
      record.startedAt = startedAt;
      if (progress !== undefined) record.progress = progress;
      attachLogs(record, recordLogs(prior, running.logs, this.#d.maxLogLines));
      await this.#d.write(record);
    } catch {
      // Only informative: the outcome write that follows is the one that counts.
    }
  }

  /** Starts the sweep if it is not running; it stops by itself after IDLE_SWEEPS sweeps in a row found no job running. */
  ensureSweeper(): void {
    if (this.#sweeper) return;
    let idle = 0;
    const tick = () => {
      if (this.#d.running().size > 0) idle = 0;
      else if (++idle >= IDLE_SWEEPS) {
        this.#sweeper = undefined;
        return;
      }
      this.#sweep();
      this.#sweeper = this.#d.clock.setTimeout(tick, SWEEP_EVERY_MS);
    };
    this.#sweeper = this.#d.clock.setTimeout(tick, SWEEP_EVERY_MS);
  }

  stop(): void {
    this.#sweeper?.clear();
    this.#sweeper = undefined;
  }

  #sweep() {
    const now = this.#d.clock.now();
    const workingEvery = Math.max(1000, this.#d.ackWaitMs / 2);
    const { activeAfterMs } = this.#d;
    for (const r of this.#d.running().values()) {
      if (r.abandoned || r.finished) continue;
      if (!r.marked && activeAfterMs > 0 && now - r.startedAt >= activeAfterMs) {
        r.marked = true;
        void this.#writeActive(r, r.progress);
      }
      if (now - r.lastWorking >= workingEvery) {
        r.lastWorking = now;
        r.msg.working();
      }
    }
  }
}
