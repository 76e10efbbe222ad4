/**
 * The rules of `dependsOn`, pure: when a waiting job is released or failed (the resolver,
 * src/actors/jobs/dependencies.ts, and the test mode's src/testing/dependencies.ts), and the
 * dependency-cycle check of an enqueue, as steps: from a job's dependencies, one level
 * of waiting jobs at a time, until the job is found again (refused, naming the cycle) or the
 * frontier is empty. The caller reads each level's dependencies its own way: the waiting
 * bucket (src/actors/jobs/enqueue.ts) or memory (src/testing/dependencies.ts).
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { JobRecord } from './job.js';

export class CycleSearch {
  readonly #root: string;
  /** How each job was reached: job → the job that depends on it. */
  readonly #via = new Map<string, string>();
  /** The jobs whose dependencies are to be read next. */
  frontier: string[];

  constructor(root: string, dependsOn: readonly string[]) {
    this.#root = root;
    this.frontier = [...dependsOn];
    for (const id of this.frontier) this.#via.set(id, root);
  }

  /** Takes the frontier's dependencies (job, its dependencies); throws InvalidArgumentError on a cycle. */
  step(found: Iterable<readonly [string, readonly string[]]>): void {
    const next: string[] = [];
    for (const [id, deps] of found) {
      for (const dep of deps) {
        if (dep === this.#root) {
          const path = [id];
          for (let at = id; at !== this.#root; ) path.unshift((at = this.#via.get(at)!));
          throw new InvalidArgumentError(`job ${this.#root} would wait for itself: dependency cycle ${[...path, this.#root].join(' → ')}`);
        }
        if (!this.#via.has(dep)) {
          this.#via.set(dep, id);
          next.push(dep);
        }
      }
    }
    this.frontier = next;
  }
}

/**
 * What a waiting job's dependencies' records (null: none yet) say: one failed or was
 * cancelled (the first such, to name), all completed, or wait.
 */
export function dependencyVerdict(deps: readonly string[], records: ReadonlyArray<Pick<JobRecord, 'status'> | null>): { broken: string; reason: string } | 'release' | 'wait' {
  const broken = records.findIndex((r) => r !== null && (r.status === 'failed' || r.status === 'cancelled'));
  if (broken >= 0) return { broken: deps[broken]!, reason: `dependency ${deps[broken]} ${records[broken]!.status === 'cancelled' ? 'was cancelled' : 'failed'}` };
  return records.every((r) => r?.status === 'completed') ? 'release' : 'wait';
}
