/**
 * Jobs waiting on their dependencies (`dependsOn`) in the test mode: the rules of the real
 * enqueue (a cycle through waiting jobs is refused, naming it) and of the real resolver
 * (src/actors/jobs/dependencies.ts: released once every dependency completed; failed, naming
 * the dependency, once one failed or was cancelled), over the test mode's records in memory.
 * The resolver follows record writes instead of polling, as the real one does.
 */
import { CycleSearch, dependencyVerdict } from '../model/dependency-rules.js';
import { WIRE_VERSION, type DeadLetter, type JobMessage, type JobRecord } from '../model/job.js';

/** What the waiting jobs need from the test mode's queue. */
export interface WaitingJobsDeps {
  /** The latest record of a job, as the jobs bucket holds it. */
  record(id: string): JobRecord | undefined;
  /** Every dependency completed: the job goes to its queue. */
  release(job: JobMessage): void;
  /** A dependency failed or was cancelled: the dependent fails for good with this error. */
  fail(job: JobMessage, dead: DeadLetter, dependency: string): void;
  now(): number;
  /** The subject the job would have had (for its dead letter). */
  subject(job: JobMessage): string;
}

export class WaitingJobs {
  readonly #d: WaitingJobsDeps;
  readonly #waiting = new Map<string, JobMessage>();
  /** Dependency id → the waiting jobs that depend on it. */
  readonly #byDependency = new Map<string, Set<string>>();

  constructor(deps: WaitingJobsDeps) {
    this.#d = deps;
  }

  get(id: string): JobMessage | undefined {
    return this.#waiting.get(id);
  }

  /**
   * The same check as the real enqueue's: a job that would wait, through jobs still waiting
   * (or enqueued with it: `batch`), for itself is refused, naming the cycle.
   */
  refuseCycle(message: JobMessage, batch?: ReadonlyMap<string, readonly string[]>): void {
    const dependenciesOf = (id: string) => batch?.get(id) ?? this.#waiting.get(id)?.dependsOn ?? [];
    const search = new CycleSearch(message.id, message.dependsOn ?? []);
    while (search.frontier.length > 0) search.step(search.frontier.map((id) => [id, dependenciesOf(id)] as const));
  }

  /** Parks a job until its dependencies finished; false when one with this id already waits (the idempotent case). */
  park(message: JobMessage): boolean {
    if (this.#waiting.has(message.id)) return false;
    this.#waiting.set(message.id, message);
    for (const dep of message.dependsOn ?? []) {
      let set = this.#byDependency.get(dep);
      if (!set) this.#byDependency.set(dep, (set = new Set()));
      set.add(message.id);
    }
    this.evaluate(message.id);
    return true;
  }

  /** No longer waiting (cancelled, released or failed). */
  remove(id: string): JobMessage | undefined {
    const job = this.#waiting.get(id);
    if (!job) return undefined;
    this.#waiting.delete(id);
    for (const dep of job.dependsOn ?? []) {
      const set = this.#byDependency.get(dep);
      set?.delete(id);
      if (set?.size === 0) this.#byDependency.delete(dep);
    }
    return job;
  }

  /** A job reached its final outcome: the jobs waiting on it are looked at again. */
  finished(id: string): void {
    for (const dependent of [...(this.#byDependency.get(id) ?? [])]) this.evaluate(dependent);
  }

  /** Released, failed, or left waiting: the real resolver's decision. */
  evaluate(id: string): void {
    const job = this.#waiting.get(id);
    if (!job) return;
    const deps = job.dependsOn ?? [];
    const verdict = dependencyVerdict(deps, deps.map((d) => this.#d.record(d) ?? null));
    if (typeof verdict === 'object') {
      this.remove(id);
      const error = { name: 'DependencyFailedError', code: 'DEPENDENCY_FAILED', message: verdict.reason };
      const dead: DeadLetter = { v: WIRE_VERSION, reason: verdict.reason, error, queue: job.queue, subject: this.#d.subject(job), jobId: job.id, job, ts: this.#d.now() };
      this.#d.fail(job, dead, verdict.broken);
    } else if (verdict === 'release') {
      this.remove(id);
      this.#d.release(job);
    }
  }
}
