/**
 * The gate a delivery passes before its job starts, when the queue has a rate limit or a
 * handler asked it to slow down (a hold). Deliveries wait here in order, kept alive with
 * `working()` so the server does not hand them to another worker; each grant of the shared
 * window (src/model/rate-window.ts, one revision-checked write to the rates bucket) lets as
 * many start as it covers. Without a limit and a hold, the queue worker does not call it.
 *
 * A grant is stamped with the time its jobs will start. The job path tells the grant when each
 * job really starts (`began`): one that starts later than the stamp allows (a busy event loop,
 * a redelivery's record read first, a handler's synchronous work before the next job) moves the
 * grant's pair in the window to just after that start, so that the window counts real starts.
 * A move must land before other workers see the pair leave the window: the gate starts none
 * of a grant's jobs later than half the window after its stamp (the rest wait for another).
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from '../../core/log.js';
import type { RateLimit } from '../../model/queue-settings.js';
import { decodeWindow, moveGrant, slackMs, take } from '../../model/rate-window.js';
import { encodeJson } from '../../model/job.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { Delivery } from './delivery.js';

/** How often a limit that changed (or went) is noticed by a gate that waits for a window. */
const RECHECK_MS = 1000;
/** After a read or write of the window failed (the server away): wait this long, then try again. */
const RETRY_MS = 500;
/** Bounds of the lead: how far ahead of the write a grant is stamped (see #take). */
const MIN_LEAD_MS = 5;
const MAX_LEAD_MS = 100;

export interface RateGateOptions {
  /** The rates bucket. */
  kv: () => Promise<KV>;
  /** The window's key in it (the queue's name). */
  key: string;
  ackWaitMs: number;
  now: () => number;
  log: Logger;
  /** Starts a job whose delivery passed the gate; with a limit, the path calls `grant.began` when its handler starts. */
  start(msg: Delivery, grant?: Grant): void;
}

/** The starts one write to the window granted: told when each of its jobs really starts. */
export interface Grant {
  began(at: number): void;
}

/** A grant's pair in the window: `[stored, n]` now, to be moved to `wanted` when that is later. */
interface Pair {
  stored: number;
  wanted: number;
  readonly n: number;
  /** How late a start may be against `wanted` without moving the pair (half the slack, whole ms: the window holds integers). */
  readonly toleranceMs: number;
  /** How long the window counts a pair (duration + slack): a move later than that protects nothing. */
  readonly spanMs: number;
}

export class RateGate {
  readonly #o: RateGateOptions;
  #limit: RateLimit | null = null;
  #holdUntil = 0;
  /** This worker's own hold, which an older settings entry from the watch must not shorten. */
  #localHold = 0;
  readonly #waiting: Delivery[] = [];
  #pumping = false;
  #keepAlive: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  /** The write of a grant, smoothed: the lead is twice it. */
  #writeMs = 5;
  /** Moves of grants' pairs, one at a time, before the next grant reads the window. */
  #restamps: Promise<void> = Promise.resolve();

  constructor(options: RateGateOptions) {
    this.#o = options;
  }

  /** Whether a delivery must pass the gate now. */
  get active(): boolean {
    // Read for every delivery: the clock only when a hold was ever set.
    return this.#limit !== null || this.#waiting.length > 0 || (this.#holdUntil !== 0 && this.#holdUntil > this.#o.now());
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** The queue's settings changed: a new limit (or none), a new hold (0: none). */
  follow(limit: RateLimit | null, holdUntil: number): void {
    this.#limit = limit;
    this.#holdUntil = Math.max(holdUntil, this.#localHold);
    this.#poke();
  }

  /** A handler asked the queue to slow down: no start here before `until` (the settings carry it to the other workers). */
  holdLocally(until: number): void {
    if (until > this.#localHold) this.#localHold = until;
    if (until > this.#holdUntil) this.#holdUntil = until;
  }

  admit(msg: Delivery): void {
    this.#waiting.push(msg);
    this.#keepAlive ??= setInterval(() => {
      for (const m of this.#waiting) m.working();
    }, Math.max(250, Math.floor(this.#o.ackWaitMs / 3)));
    void this.#pump();
  }

  /** Pulling stopped (pause, drain, a lost link): every waiting delivery goes back; `released` is told of each. */
  giveBack(released: () => void): void {
    for (const m of this.#waiting.splice(0)) {
      m.nak();
      released();
    }
    this.#idle();
    this.#poke();
  }

  stop(): void {
    this.#idle();
    this.#poke();
  }

  #idle() {
    if (this.#waiting.length > 0) return;
    clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }

  #poke() {
    clearTimeout(this.#timer);
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = () => resolve();
      this.#timer = setTimeout(resolve, ms);
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#waiting.length > 0) {
        const now = this.#o.now();
        if (this.#holdUntil > now) {
          await this.#sleep(Math.min(this.#holdUntil - now, RECHECK_MS));
          continue;
        }
        const limit = this.#limit;
        if (limit === null) {
          for (const m of this.#waiting.splice(0)) this.#o.start(m);
          break;
        }
        const granted = await this.#take(limit);
        if (granted === null) continue;
        const batch = this.#waiting.splice(0, granted.n);
        for (let i = 0; i < batch.length; i++) {
          // A handler's synchronous work delays the next start. Past half the window, a move of
          // the grant might land after other workers saw it leave: the rest wait for another.
          if (i > 0 && this.#o.now() > granted.startBy) {
            this.#waiting.unshift(...batch.slice(i));
            break;
          }
          this.#o.start(batch[i]!, granted.grant);
        }
      }
    } finally {
      this.#pumping = false;
      this.#idle();
    }
  }

  /** One try at the shared window: starts granted now (null after waiting for the next chance). */
  async #take(limit: RateLimit): Promise<{ n: number; grant: Grant; startBy: number } | null> {
    let kv: KV;
    let entry;
    try {
      // A grant's pair still to be moved would let this read see it leave the window too soon.
      await this.#restamps;
      kv = await this.#o.kv();
      entry = await kv.get(this.#o.key);
    } catch (error) {
      this.#o.log.debug({ err: error, queue: this.#o.key }, 'could not read the rate window; trying again');
      await this.#sleep(RETRY_MS);
      return null;
    }
    const state = decodeWindow(entry && entry.operation === 'PUT' ? entry.string() : null);
    // Stamped with the time the jobs will start, not the time of the write: they start when it
    // is stored, and a stamp earlier than the start would let the next grant come too soon.
    const lead = Math.min(MAX_LEAD_MS, Math.max(MIN_LEAD_MS, Math.ceil(2 * this.#writeMs)));
    const writeAt = this.#o.now();
    const at = writeAt + lead;
    // As many as wait now: pulling may have stopped (all given back) during the reads.
    const want = this.#waiting.length;
    if (want === 0) return null;
    const t = take(state, limit, at, want);
    if (t.next === null) {
      await this.#sleep(Math.min(Math.max(1, t.waitMs - lead), RECHECK_MS));
      return null;
    }
    try {
      const bytes = encodeJson(t.next);
      if (entry) await kv.update(this.#o.key, bytes, entry.revision);
      else await kv.create(this.#o.key, bytes);
      const stored = this.#o.now();
      this.#writeMs = 0.8 * this.#writeMs + 0.2 * (stored - writeAt);
      // Never before the stamp (a poke may end a sleep early): the window let these start at `at`, not sooner.
      for (let now = stored; now < at; now = this.#o.now()) await this.#sleep(at - now);
      const pair: Pair = { stored: at, wanted: at, n: t.granted, toleranceMs: Math.ceil(slackMs(limit) / 2), spanMs: limit.durationMs + slackMs(limit) };
      return { n: t.granted, grant: { began: (startedAt) => this.#began(pair, startedAt) }, startBy: at + Math.floor(limit.durationMs / 2) };
    } catch (error) {
      // Another worker took from the window first: read it again at once.
      if (isWrongLastSequence(error)) return null;
      this.#o.log.debug({ err: error, queue: this.#o.key }, 'could not write the rate window; trying again');
      await this.#sleep(RETRY_MS);
      return null;
    }
  }

  /**
   * A job of a grant started at `startedAt`. The window counts the grant until its stamp +
   * duration + slack; a start later than stamp + slack / 2 moves the stamp to slack / 2 after
   * it (so the next few late starts need no write of their own), and the window stays strict.
   */
  #began(pair: Pair, startedAt: number): void {
    if (startedAt <= pair.wanted + pair.toleranceMs) return;
    if (startedAt >= pair.stored + pair.spanMs) this.#o.log.warn({ queue: this.#o.key, lateMs: startedAt - pair.stored }, 'a job started after its grant had left the rate window: the limit may have been exceeded by its start');
    pair.wanted = startedAt + pair.toleranceMs;
    this.#restamps = this.#restamps.then(() => this.#restamp(pair));
  }

  /**
   * Moves the pair to where it is wanted, revision-checked; never rejects. Tried again (after a
   * conflict at once, after a failure a moment later) for as long as the pair could still count.
   * The window's rule for it (a pair no longer there is added again) is moveGrant's.
   */
  async #restamp(pair: Pair): Promise<void> {
    let failure: unknown;
    while (pair.stored < pair.wanted && this.#o.now() < pair.wanted + pair.spanMs) {
      try {
        const kv = await this.#o.kv();
        const entry = await kv.get(this.#o.key);
        const current = entry && entry.operation === 'PUT' ? entry : null;
        const wanted = pair.wanted;
        const bytes = encodeJson(moveGrant(decodeWindow(current?.string()), [pair.stored, pair.n], wanted));
        if (current) await kv.update(this.#o.key, bytes, current.revision);
        else await kv.create(this.#o.key, bytes);
        pair.stored = wanted;
      } catch (error) {
        if (isWrongLastSequence(error)) continue;
        failure = error;
        // Unref'd: a worker stopping while the server is away must not wait for this.
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
      }
    }
    if (pair.stored < pair.wanted) this.#o.log.warn({ err: failure, queue: this.#o.key }, 'could not move a late grant in the rate window: the limit may have been exceeded by its starts');
  }
}
