/**
 * The group dispatcher (jobs with a `group`; docs/wire-format.md 3.8). A grouped job is
 * published to its queue's staging lane (`naq.jobs.<queue>~g.<id>`), which no worker pulls.
 * The process leading the firing of schedules holds up to `jobs.groupLookahead` of them per
 * queue, in one FIFO per group, and releases them to their priority lanes in turns across the
 * groups: only as many released-and-unfinished as the queue's workers have slots (so a newly
 * arrived group waits behind at most one round), and within the queue's group limits (running
 * at once, starts per window, holds from `ctx.rateLimit`). Workers report each grouped job's
 * final outcome on a core subject; a released job not heard of is looked up in the stream.
 *
 * One process decides, so the limits need no shared counters; its memory is bounded by the
 * lookahead, whatever the number of groups (no consumer or subscription per group).
 */
import { jetstream, JetStreamApiCodes, JetStreamApiError, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../../core/log.js';
import { decodeJob, TERMINAL_STATUSES, type JobMessage, type JobRecord } from '../../model/job.js';
import { PRIORITIES } from '../../model/layout.js';
import type { GroupLimit } from '../../model/queue-settings.js';
import { pendingMessage } from '../jobs/reads.js';
import type { NaqContext } from '../nats/context.js';
import { scanForward } from '../nats/stream-scan.js';
import { ERR_MAX_MSGS_PER_SUBJECT, PublishRejectedError } from '../nats/publisher.js';
import { deliveryCount } from '../worker/delivery.js';

/** A released job not reported finished for this long is looked up in the stream. */
const LOOKUP_AFTER_MS = 10_000;
/** A fetch of the staging lane lives this long on the server. */
const FETCH_EXPIRES_MS = 5000;
/**
 * A release stays in its group's rate window this much longer than the window (5 %, at most
 * 100 ms): the limit is on starts, and a job starts a little after its release, sometimes less
 * after than the one before it.
 */
const rateSlack = (durationMs: number) => Math.min(100, Math.ceil(durationMs * 0.05));
/** Messages of a queue's priority lanes looked through at most, for jobs an earlier leader released. */
const MAX_ADOPT_SCAN = 2000;
/** Released-and-unfinished allowed before the workers' heartbeats were read. */
const DEFAULT_WINDOW = 20;

interface Staged {
  msg: JsMsg;
  job: JobMessage;
  /** When it arrived or was last kept alive. */
  at: number;
}

/** The dispatcher of one queue's groups. */
export class GroupQueue {
  readonly #ctx: NaqContext;
  readonly #queue: string;
  readonly #log: Logger;
  readonly #lookahead: number;
  #ackWaitMs: number;
  #keeper: ReturnType<typeof setInterval> | null = null;
  /** Waiting jobs per group, in enqueue order. */
  readonly #waiting = new Map<string, Staged[]>();
  /** Groups with waiting jobs, in turn order (a group leaves when it has none). */
  #turns: string[] = [];
  #next = 0;
  #staged = 0;
  /** Released and not finished, by job id. */
  readonly #released = new Map<string, { group: string; at: number }>();
  readonly #running = new Map<string, number>();
  /** Release times per group within the rate window. */
  readonly #starts = new Map<string, number[]>();
  readonly #holds = new Map<string, number>();
  #limit: GroupLimit | null = null;
  #window = DEFAULT_WINDOW;
  #messages: ConsumerMessages | null = null;
  #wake: (() => void) | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerAt = 0;
  #stopped = false;

  constructor(ctx: NaqContext, queue: string, log: Logger) {
    this.#ctx = ctx;
    this.#queue = queue;
    this.#log = log;
    this.#lookahead = ctx.config.jobs.groupLookahead;
    this.#ackWaitMs = ctx.config.worker.ackWaitMs;
  }

  /** The queue's group limits; without any, `jobs.groupConcurrency` from the config (0: none). */
  follow(limit: GroupLimit | null): void {
    const fallback = this.#ctx.config.jobs.groupConcurrency;
    this.#limit = limit ?? (fallback > 0 ? { concurrency: fallback } : null);
    this.#pump();
  }

  /**
   * Slots of the queue's live workers. Twice as many may be released and unfinished: each slot
   * has its next job at hand when one finishes (the report of a finished job takes a round trip
   * to come back), and a group that arrives still waits for at most two rounds of the others.
   */
  setWindow(slots: number): void {
    this.#window = Math.max(2, 2 * slots);
    this.#pump();
  }

  /** A worker reported a grouped job's final outcome. */
  done(id: string): void {
    const r = this.#released.get(id);
    if (!r) return;
    this.#released.delete(id);
    const n = (this.#running.get(r.group) ?? 1) - 1;
    if (n > 0) this.#running.set(r.group, n);
    else this.#running.delete(r.group);
    this.#pump();
  }

  /** A handler of the group was rate limited: none of its jobs is released before `until`. */
  hold(group: string, until: number): void {
    if ((this.#holds.get(group) ?? 0) >= until) return;
    this.#holds.set(group, until);
    this.#later(until - Date.now());
  }

  async run(): Promise<void> {
    const js = jetstream(this.#ctx.nc);
    const consumer = await js.consumers.get(this.#ctx.layout.jobsStream, this.#ctx.layout.stagingConsumer(this.#queue));
    const info = await consumer.info(true);
    // The consumer's ack_wait, not this process's config: the workers that made it may differ.
    this.#ackWaitMs = Math.floor((info.config.ack_wait ?? 0) / 1_000_000) || this.#ackWaitMs;
    // Only a staging lane that ever delivered can have released jobs. The look costs one
    // stream get per message of the lanes: a leader of a queue that never had grouped jobs
    // (most queues) does not read up to MAX_ADOPT_SCAN of its backlog for nothing.
    if (info.delivered.consumer_seq > 0) await this.#adopt();
    if (this.#stopped) return;
    this.#keeper = setInterval(() => this.#keepAlive(), Math.max(100, Math.min(1000, Math.floor(this.#ackWaitMs / 6))));
    this.#keeper.unref?.();
    while (!this.#stopped) {
      const room = this.#lookahead - this.#staged;
      if (room < this.#lookahead / 4) {
        await new Promise<void>((r) => (this.#wake = r));
        continue;
      }
      const messages = await consumer.fetch({ max_messages: room, expires: FETCH_EXPIRES_MS });
      this.#messages = messages;
      for await (const msg of messages) {
        if (this.#stopped) {
          msg.nak();
          continue;
        }
        this.#stage(msg);
      }
      this.#messages = null;
    }
  }

  /**
   * Grouped jobs already in the priority lanes were released by an earlier leader and have not
   * finished: they count against their groups' limits here too. (Up to MAX_ADOPT_SCAN messages
   * of the lanes are read, one stream get each; past that, a group may briefly run over its
   * limit after a change of leader.) Called only when the staging consumer ever delivered (run):
   * one deleted by hand and made again counts from zero, and its released jobs go uncounted.
   */
  async #adopt(): Promise<void> {
    const ctx = this.#ctx;
    const now = Date.now();
    let seen = 0;
    for (const p of PRIORITIES) {
      await scanForward(ctx, ctx.layout.jobsStream, ctx.layout.queueFilter(this.#queue, p), async (window) => {
        for (const m of window) {
          let job: JobMessage | null = null;
          try {
            job = decodeJob(m.data);
          } catch {
            // A worker dead-letters it.
          }
          if (job?.group !== undefined && !this.#released.has(job.id)) this.#occupy(job.id, job.group, now);
        }
        seen += window.length;
        return seen < MAX_ADOPT_SCAN && !this.#stopped;
      });
      if (seen >= MAX_ADOPT_SCAN || this.#stopped) break;
    }
    if (this.#released.size > 0) this.#log.info({ queue: this.#queue, jobs: this.#released.size }, 'group dispatcher: counting grouped jobs released by an earlier leader');
  }

  #stage(msg: JsMsg): void {
    let job: JobMessage;
    try {
      job = decodeJob(msg.data);
      if (job.group === undefined || job.queue !== this.#queue || !msg.subject.endsWith(`.${job.id}`)) throw new Error('not a grouped job of this queue');
    } catch {
      // Released as it is: a worker dead-letters what it cannot read, with the reason.
      job = { v: 1, id: msg.subject.slice(msg.subject.lastIndexOf('.') + 1), name: '', queue: this.#queue, data: null, attempts: 1, ts: 0, group: '' };
      void this.#release({ msg, job, at: Date.now() }, true);
      return;
    }
    const group = job.group!;
    let queue = this.#waiting.get(group);
    if (!queue) {
      queue = [];
      this.#waiting.set(group, queue);
      this.#turns.push(group);
    }
    queue.push({ msg, job, at: Date.now() });
    this.#staged++;
    this.#pump();
  }

  /** Releases jobs while slots are free, one group after another. */
  #pump(): void {
    if (this.#stopped) return;
    const now = Date.now();
    let wait = Number.POSITIVE_INFINITY;
    let looked = 0;
    while (this.#released.size < this.#window && this.#turns.length > 0 && looked < this.#turns.length) {
      if (this.#next >= this.#turns.length) this.#next = 0;
      const group = this.#turns[this.#next]!;
      const blocked = this.#blockedFor(group, now);
      if (blocked > 0) {
        wait = Math.min(wait, blocked);
        this.#next++;
        looked++;
        continue;
      }
      const queue = this.#waiting.get(group)!;
      const staged = queue.shift()!;
      this.#staged--;
      if (queue.length === 0) {
        this.#waiting.delete(group);
        this.#turns.splice(this.#next, 1);
      } else {
        this.#next++;
      }
      looked = 0;
      // The same enqueue staged again (a lost ack, a change of leader) is not a second job.
      if (!this.#released.has(staged.job.id)) this.#count(staged.job.id, group, now);
      void this.#release(staged, false);
    }
    if (wait !== Number.POSITIVE_INFINITY && Number.isFinite(wait)) this.#later(wait);
    if (this.#staged < (this.#lookahead * 3) / 4 && this.#wake) {
      const wake = this.#wake;
      this.#wake = null;
      wake();
    }
  }

  /** 0 when the group may start a job now; else how long until it may (Infinity: until one finishes). */
  #blockedFor(group: string, now: number): number {
    const hold = this.#holds.get(group);
    if (hold !== undefined) {
      if (hold > now) return hold - now;
      this.#holds.delete(group);
    }
    const limit = this.#limit;
    if (!limit) return 0;
    if (limit.concurrency !== undefined && (this.#running.get(group) ?? 0) >= limit.concurrency) return Number.POSITIVE_INFINITY;
    if (limit.rate) {
      const starts = this.#starts.get(group);
      if (starts) {
        const span = limit.rate.durationMs + rateSlack(limit.rate.durationMs);
        while (starts.length > 0 && starts[0]! <= now - span) starts.shift();
        if (starts.length === 0) this.#starts.delete(group);
        else if (starts.length >= limit.rate.max) return starts[0]! + span - now;
      }
    }
    return 0;
  }

  /** A job released and not finished takes a slot of its group. */
  #occupy(id: string, group: string, now: number): void {
    this.#released.set(id, { group, at: now });
    this.#running.set(group, (this.#running.get(group) ?? 0) + 1);
  }

  /** A release: a slot of its group, and a start in the group's rate window. */
  #count(id: string, group: string, now: number): void {
    this.#occupy(id, group, now);
    if (this.#limit?.rate) {
      let starts = this.#starts.get(group);
      if (!starts) this.#starts.set(group, (starts = []));
      starts.push(now);
    }
  }

  /**
   * Publishes the job to its priority lane (the body unchanged), then acks its staged copy. The
   * Nats-Msg-Id makes a second release of the same enqueue (a new leader after a crash between
   * the two) a duplicate; one whose outcome is recorded is only acked.
   */
  async #release(staged: Staged, raw: boolean): Promise<void> {
    const { msg, job } = staged;
    const ctx = this.#ctx;
    try {
      // Purged, removed or cancelled while held here (each deletes the staged message): not released.
      if (!raw && !(await this.#stillStaged(msg))) {
        msg.ack();
        this.done(job.id);
        return;
      }
      if (!raw && deliveryCount(msg) > 1) {
        const record = await (await ctx.storage.jobsKv()).get(job.id).catch(() => null);
        const r = record && record.operation === 'PUT' ? record.json<Partial<JobRecord>>() : null;
        if (r && r.enqueuedAt === job.ts && r.status !== undefined && TERMINAL_STATUSES.has(r.status)) {
          msg.ack();
          this.done(job.id);
          return;
        }
      }
      const subject = raw ? ctx.layout.jobSubject(this.#queue, job.id) : ctx.layout.jobSubject(job.queue, job.id, job.priority);
      await ctx.publisher.publish(subject, msg.data, { msgId: `${job.id}:${job.ts}:group` }).catch((error: unknown) => {
        if (!(error instanceof PublishRejectedError && error.errCode === ERR_MAX_MSGS_PER_SUBJECT)) throw error;
      });
      msg.ack();
    } catch (error) {
      // Not released: the staged copy comes back after ack_wait, to this leader or the next.
      this.#log.warn({ err: error, queue: this.#queue, jobId: job.id }, 'grouped job not released; it will be tried again');
      this.done(job.id);
    }
  }

  async #stillStaged(msg: JsMsg): Promise<boolean> {
    const jsm = await this.#ctx.jsm();
    const found = await jsm.streams.getMessage(this.#ctx.layout.jobsStream, { seq: msg.seq }).catch((error: unknown) => {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound) return null;
      throw error;
    });
    return found !== null && found.subject === msg.subject;
  }

  /** Pumps again in `ms` (or sooner, if a sooner pump is already due). */
  #later(ms: number): void {
    const delay = Math.max(1, Math.min(ms, 60_000));
    const at = Date.now() + delay;
    if (this.#timer) {
      if (this.#timerAt <= at) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#pump();
    }, delay);
    this.#timer.unref?.();
  }

  /** Keeps staged jobs alive: none goes a third of the staging consumer's ack_wait unrenewed. */
  #keepAlive(): void {
    const now = Date.now();
    const keepAlive = this.#ackWaitMs / 3;
    for (const queue of this.#waiting.values()) {
      for (const s of queue) {
        if (now - s.at >= keepAlive) {
          s.msg.working();
          s.at = now;
        }
      }
    }
  }

  /** Looks up released jobs no worker reported (a report lost); forgets old rate windows and holds. */
  async sweep(): Promise<void> {
    const now = Date.now();
    const span = this.#limit?.rate ? this.#limit.rate.durationMs + rateSlack(this.#limit.rate.durationMs) : 0;
    for (const [group, starts] of this.#starts) if (span === 0 || starts.at(-1)! <= now - span) this.#starts.delete(group);
    for (const [group, until] of this.#holds) if (until <= now) this.#holds.delete(group);
    const old = [...this.#released].filter(([, r]) => now - r.at > LOOKUP_AFTER_MS);
    for (const [id, r] of old) {
      if (this.#stopped) return;
      const pending = await pendingMessage(this.#ctx, id).catch(() => undefined);
      if (pending === null) this.done(id);
      else r.at = now;
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#keeper) clearInterval(this.#keeper);
    this.#keeper = null;
    for (const queue of this.#waiting.values()) for (const s of queue) s.msg.nak();
    this.#waiting.clear();
    this.#turns = [];
    this.#staged = 0;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
    void this.#messages?.close().catch(() => {});
  }
}
