import { KvWatchInclude, type KvEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import { encodeJson, type JobMessage, type JobRecord } from '../../model/job.js';
import type { Logger } from '../../core/log.js';
import type { NaqContext } from '../nats/context.js';
import { publishJob } from './enqueue.js';
import { failUnstarted } from './fail-unstarted.js';
import { dependencyVerdict } from '../../model/dependency-rules.js';

/** A watch that ended is opened again after this long. */
const REOPEN_MS = 1000;

/**
 * Releases jobs whose dependencies completed, and fails those with a dependency that failed.
 *
 * A job with `dependsOn` is parked in the waiting bucket at enqueue. Every process with a
 * jobs actor runs a resolver: it watches the waiting bucket, and — only while something
 * waits — the job records, so a completion is noticed when it is written (no polling). The
 * records watch starts before the current records are read, so nothing falls in between.
 * Several resolvers may release the same job; the release publish carries a Nats-Msg-Id and
 * the queue holds one message per job id, so it is enqueued once.
 */
export class DependencyResolver {
  readonly #ctx: NaqContext;
  readonly #log: Logger;
  readonly #waiting = new Map<string, { job: JobMessage; revision: number }>();
  readonly #byDependency = new Map<string, Set<string>>();
  readonly #evaluating = new Set<string>();
  readonly #again = new Set<string>();
  #waitingWatch: QueuedIterator<KvEntry> | null = null;
  #recordsWatch: Promise<QueuedIterator<KvEntry>> | null = null;
  #unfollowRepairs: (() => void) | undefined;
  #stopped = false;

  constructor(ctx: NaqContext, log: Logger) {
    this.#ctx = ctx;
    this.#log = log;
  }

  async start(): Promise<void> {
    this.#unfollowRepairs ??= this.#ctx.storage.onRepair(() => this.#reopen());
    const kv = await this.#ctx.storage.waitingKv();
    const watch = await kv.watch();
    if (this.#stopped) {
      watch.stop();
      return;
    }
    this.#waitingWatch = watch;
    void (async () => {
      for await (const e of watch) {
        if (this.#stopped) break;
        if (e.operation === 'PUT') this.#add(e);
        else this.#remove(e.key);
      }
    })()
      .catch((error: unknown) => this.#log.warn({ err: error }, 'waiting-jobs watch ended'))
      .finally(() => {
        // Ended by a repair (or by the client giving up on it): open it again.
        if (!this.#stopped && this.#waitingWatch === watch) setTimeout(() => this.#restart(), REOPEN_MS).unref();
      });
  }

  #restart(): void {
    if (this.#stopped) return;
    this.start().catch((error: unknown) => {
      this.#log.warn({ err: error }, 'could not reopen the waiting-jobs watch; trying again');
      setTimeout(() => this.#restart(), REOPEN_MS).unref();
    });
  }

  /**
   * A stream or bucket was recreated: watches on the old ones see nothing more. Both are
   * opened again; the waiting watch's replay brings back what still waits.
   */
  #reopen(): void {
    if (this.#stopped) return;
    const waiting = this.#waitingWatch;
    this.#waitingWatch = null;
    waiting?.stop();
    void this.#recordsWatch?.then((w) => w.stop()).catch(() => {});
    this.#recordsWatch = null;
    // The replay says what still waits; what was in a deleted bucket waits no more.
    this.#waiting.clear();
    this.#byDependency.clear();
    this.#restart();
  }

  stop(): void {
    this.#stopped = true;
    this.#unfollowRepairs?.();
    this.#waitingWatch?.stop();
    void this.#recordsWatch?.then((w) => w.stop()).catch(() => {});
    this.#recordsWatch = null;
  }

  #add(e: KvEntry) {
    let job: JobMessage;
    try {
      job = e.json<JobMessage>();
    } catch {
      return;
    }
    this.#waiting.set(job.id, { job, revision: e.revision });
    for (const dep of job.dependsOn ?? []) {
      let set = this.#byDependency.get(dep);
      if (!set) this.#byDependency.set(dep, (set = new Set()));
      set.add(job.id);
    }
    void this.#watchRecords()
      .then(() => this.#evaluate(job.id))
      .catch((error: unknown) => {
        // Stopped meanwhile (the process is shutting down): another resolver, or this one after a restart, takes it up.
        if (this.#stopped) return;
        this.#log.warn({ err: error, jobId: job.id }, 'could not evaluate dependencies');
      });
  }

  #remove(id: string) {
    const entry = this.#waiting.get(id);
    if (!entry) return;
    this.#waiting.delete(id);
    for (const dep of entry.job.dependsOn ?? []) {
      const set = this.#byDependency.get(dep);
      set?.delete(id);
      if (set && set.size === 0) this.#byDependency.delete(dep);
    }
    if (this.#waiting.size === 0 && this.#recordsWatch) {
      // Nothing waits: stop following every record write.
      void this.#recordsWatch.then((w) => w.stop()).catch(() => {});
      this.#recordsWatch = null;
    }
  }

  #watchRecords(): Promise<QueuedIterator<KvEntry>> {
    if (this.#recordsWatch) return this.#recordsWatch;
    const started = (async () => {
      const kv = await this.#ctx.storage.jobsKv();
      const watch = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
      void (async () => {
        for await (const e of watch) {
          if (this.#stopped) break;
          const dependents = this.#byDependency.get(e.key);
          if (!dependents || e.operation !== 'PUT') continue;
          const status = e.json<JobRecord>().status;
          if (status === 'completed' || status === 'failed' || status === 'cancelled') {
            for (const id of [...dependents]) void this.#evaluate(id).catch(() => {});
          }
        }
      })().catch((error: unknown) => this.#log.warn({ err: error }, 'job records watch ended'));
      return watch;
    })();
    this.#recordsWatch = started;
    started.catch(() => {
      if (this.#recordsWatch === started) this.#recordsWatch = null;
    });
    return started;
  }

  async #evaluate(id: string): Promise<void> {
    const entry = this.#waiting.get(id);
    if (!entry) return;
    if (this.#evaluating.has(id)) {
      // A record changed while we were reading the old ones: look again when this pass ends.
      this.#again.add(id);
      return;
    }
    this.#evaluating.add(id);
    try {
      const kv = await this.#ctx.storage.jobsKv();
      const deps = entry.job.dependsOn ?? [];
      const records = await Promise.all(deps.map((d) => kv.get(d).then((e) => (e && e.operation === 'PUT' ? e.json<JobRecord>() : null))));
      const verdict = dependencyVerdict(deps, records);
      const cycle = verdict === 'wait' ? this.#cycleThrough(id) : null;
      if (typeof verdict === 'object') {
        await this.#failDependent(entry.job, verdict.reason, verdict.broken);
      } else if (verdict === 'release') {
        await this.#release(entry.job);
      } else if (cycle) {
        await this.#failDependent(entry.job, `dependency cycle ${cycle.join(' → ')}: the job would wait for itself`, cycle[1]!, 'DEPENDENCY_CYCLE');
      } else {
        return;
      }
      await (await this.#ctx.storage.waitingKv()).delete(id, { previousSeq: entry.revision }).catch(() => {});
    } finally {
      this.#evaluating.delete(id);
      if (this.#again.delete(id)) void this.#evaluate(id).catch(() => {});
    }
  }

  /**
   * A path from `id` back to itself through waiting jobs, if there is one. Enqueue refuses
   * cycles, but two enqueues that close one at the same moment can both pass: this ends them.
   */
  #cycleThrough(id: string): string[] | null {
    const via = new Map<string, string>();
    const stack = [id];
    while (stack.length > 0) {
      const at = stack.pop()!;
      for (const dep of this.#waiting.get(at)?.job.dependsOn ?? []) {
        if (dep === id) {
          const path = [at];
          for (let p = at; p !== id; ) path.unshift((p = via.get(p)!));
          return [...path, id];
        }
        if (!via.has(dep) && this.#waiting.has(dep)) {
          via.set(dep, at);
          stack.push(dep);
        }
      }
    }
    return null;
  }

  async #release(job: JobMessage): Promise<void> {
    // Released once already and run (a record of this enqueue exists)? Then only the waiting entry is left.
    const existing = await (await this.#ctx.storage.jobsKv()).get(job.id);
    if (existing && existing.operation === 'PUT' && recordOf(existing)?.enqueuedAt === job.ts) return;
    const released: JobMessage = { ...job, ts: job.ts };
    // Per enqueue (its ts), so a later enqueue of the same id is not taken for a duplicate.
    await publishJob(this.#ctx, released, encodeJson(released), `${job.id}:${job.ts}:release`);
    this.#log.debug({ jobId: job.id }, 'dependencies completed; job released');
  }

  async #failDependent(job: JobMessage, message: string, dep: string, code = 'DEPENDENCY_FAILED'): Promise<void> {
    // Failed already (its waiting entry not yet gone from this watch): its first reason stands.
    // Two jobs of a cycle each fail for the cycle, then each sees the other failed.
    const existing = await (await this.#ctx.storage.jobsKv()).get(job.id);
    if (existing && existing.operation === 'PUT' && recordOf(existing)?.enqueuedAt === job.ts) return;
    const error = { name: code === 'DEPENDENCY_CYCLE' ? 'DependencyCycleError' : 'DependencyFailedError', code, message };
    await failUnstarted(this.#ctx, job, error, { dependency: dep });
  }
}

function recordOf(entry: KvEntry): JobRecord | null {
  try {
    return entry.json<JobRecord>();
  } catch {
    return null;
  }
}
