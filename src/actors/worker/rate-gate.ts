/**
 * The gate a delivery passes before its job starts, when the queue has a rate limit or a
 * handler asked it to slow down (a hold). Deliveries wait here in order, kept alive with
 * `working()` so the server does not hand them to another worker; each grant of the shared
 * window (src/model/rate-window.ts, one revision-checked write to the rates bucket) lets as
 * many start as it covers. Without a limit and a hold, the queue worker does not call it.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from '../../core/log.js';
import type { RateLimit } from '../../model/queue-settings.js';
import { decodeWindow, slackMs, take } from '../../model/rate-window.js';
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
/** Late grants dropped in a row before one is used anyway (a server slower than MAX_LEAD_MS must not stop the queue). */
const MAX_LATE_DROPS = 3;

export interface RateGateOptions {
  /** The rates bucket. */
  kv: () => Promise<KV>;
  /** The window's key in it (the queue's name). */
  key: string;
  ackWaitMs: number;
  now: () => number;
  log: Logger;
  /** Starts a job whose delivery passed the gate. */
  start(msg: Delivery): void;
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
  #lateDrops = 0;

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
        const granted = await this.#take(limit, this.#waiting.length);
        for (const m of this.#waiting.splice(0, granted)) this.#o.start(m);
      }
    } finally {
      this.#pumping = false;
      this.#idle();
    }
  }

  /** One try at the shared window: starts granted now (0 after waiting for the next chance). */
  async #take(limit: RateLimit, want: number): Promise<number> {
    let kv: KV;
    let entry;
    try {
      kv = await this.#o.kv();
      entry = await kv.get(this.#o.key);
    } catch (error) {
      this.#o.log.debug({ err: error, queue: this.#o.key }, 'could not read the rate window; trying again');
      await this.#sleep(RETRY_MS);
      return 0;
    }
    const state = decodeWindow(entry && entry.operation === 'PUT' ? entry.string() : null);
    // Stamped with the time the jobs will start, not the time of the write: they start when it
    // is stored, and a stamp earlier than the start would let the next grant come too soon.
    const lead = Math.min(MAX_LEAD_MS, Math.max(MIN_LEAD_MS, Math.ceil(2 * this.#writeMs)));
    const writeAt = this.#o.now();
    const at = writeAt + lead;
    const t = take(state, limit, at, want);
    if (t.next === null) {
      await this.#sleep(Math.min(Math.max(1, t.waitMs - lead), RECHECK_MS));
      return 0;
    }
    try {
      const bytes = encodeJson(t.next);
      if (entry) await kv.update(this.#o.key, bytes, entry.revision);
      else await kv.create(this.#o.key, bytes);
      const stored = this.#o.now();
      this.#writeMs = 0.8 * this.#writeMs + 0.2 * (stored - writeAt);
      // Never before the stamp (a poke may end a sleep early).
      for (let now = stored; now < at; now = this.#o.now()) await this.#sleep(at - now);
      // Starting well after the stamp would let these starts share a window with the next
      // grant's: the grant is dropped (it still counts, so the window stays strict) and the
      // jobs wait for another, unless that keeps happening.
      if (this.#o.now() - at > slackMs(limit) / 2 && this.#lateDrops < MAX_LATE_DROPS) {
        this.#lateDrops++;
        return 0;
      }
      this.#lateDrops = 0;
      return t.granted;
    } catch (error) {
      // Another worker took from the window first: read it again at once.
      if (isWrongLastSequence(error)) return 0;
      this.#o.log.debug({ err: error, queue: this.#o.key }, 'could not write the rate window; trying again');
      await this.#sleep(RETRY_MS);
      return 0;
    }
  }
}
