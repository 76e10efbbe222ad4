/**
 * Pulls a queue's priority lanes (one workqueue consumer per level, Layout.laneToken) and
 * hands the worker the most urgent job it holds. Pull requests are sent by hand, not through
 * the client's consume(): that one pulls again whenever its iterator is read, so a lane could
 * only be bounded by leaving jobs in the client's buffer, where nothing keeps them alive. Here
 * every job pulled is held in view: at most `cap` per lane, each kept alive (+WPI) while it
 * waits, and a less urgent lane is pulled only while no more urgent one holds a job.
 */
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { ACK } from '../nats/pub-frames.js';
import { pendingAfter, type Delivery } from './delivery.js';

/** One priority level of the queue. */
export interface Lane {
  /** The subject token of its jobs (`<queue>` or `<queue>~<level>`). */
  token: string;
  /** Its durable consumer. */
  consumer: string;
}

export interface LanePullerOptions {
  nc: Pick<NatsConnection, 'subscribe' | 'publish'>;
  /** `$JS.API` unless a JetStream domain or prefix says otherwise. */
  apiPrefix: string;
  stream: string;
  /** The subjects' prefix before the lane token, e.g. `naq.jobs.`. */
  subjectPrefix: string;
  /** Most urgent first. */
  lanes: Lane[];
  /** Jobs held per lane at most (and asked for in one pull). */
  cap: number;
  ackWaitMs: number;
  /** How long a pull request lives on the server. */
  expiresMs: number;
  now(): number;
  /** A job is held: the worker may take it. */
  onReady(): void;
  /** A lane's consumer (or the stream) is gone; pulling stopped. */
  onMissing(error: Error): void;
  /**
   * A pull went unanswered for a second past its expiry and is sent again. One reason: it
   * reached its consumer while the stream was being deleted, and the server dropped it without
   * a word (it answers a pull to a consumer already gone with nothing at all either), so
   * whether the consumers still exist is worth a look.
   */
  onLost?(): void;
  /** Nothing may be subscribed to or pulled (permissions, the connection closed): pulling stopped. */
  onError(error: Error): void;
  /**
   * Sends a pull request later in the turn, with the worker's other writes (AsyncPublisher.later):
   * one socket write instead of two. Without it, a pull is published at once.
   */
  defer?(send: () => void): void;
}

const NAK = Uint8Array.of(45, 78, 65, 75);
const WPI = Uint8Array.of(43, 87, 80, 73);
const encoder = new TextEncoder();

/** A pulled job: answers on its ack subject, once (a later ack or NAK is ignored, as JsMsg does). */
export class PulledJob implements Delivery {
  #done = false;
  constructor(
    readonly msg: Msg,
    /** The lane's index (0 is the most urgent). */
    readonly lane: number,
  ) {}
  get data(): Uint8Array {
    return this.msg.data;
  }
  get subject(): string {
    return this.msg.subject;
  }
  get headers(): MsgHdrs | undefined {
    return this.msg.headers;
  }
  get reply(): string | undefined {
    return this.msg.reply;
  }
  /** What deliveryCount falls back to for an ack subject of a form its fast parse does not know. */
  get info(): { deliveryCount: number } {
    const tokens = (this.msg.reply ?? '').split('.');
    const n = Number(tokens.length === 9 ? tokens[4] : tokens[6]);
    return { deliveryCount: Number.isInteger(n) && n >= 1 ? n : 1 };
  }
  ack(): void {
    this.#answer(ACK, true);
  }
  /** The ack, written by the publisher with its next batch (AsyncPublisher.ackLater): the subject, once. */
  ackSubject(): string | null {
    const reply = this.msg.reply;
    if (this.#done || !reply) return null;
    this.#done = true;
    return reply;
  }
  nak(delayMs?: number): void {
    this.#answer(delayMs ? encoder.encode(`-NAK {"delay":${Math.round(delayMs) * 1_000_000}}`) : NAK, true);
  }
  working(): void {
    this.#answer(WPI, false);
  }
  #answer(payload: Uint8Array, final: boolean): void {
    if (this.#done) return;
    if (final) this.#done = true;
    this.msg.respond(payload);
  }
}


/**
 * How long a worker waits for a more urgent lane's open pull, when the server said jobs wait
 * there, before it starts a less urgent job it holds (another worker may have taken them).
 */
export const URGENT_WAIT_MS = 25;

/** A pull request that neither delivered, expired nor failed for this long is taken as lost (its consumer's leader moved). */
const LOST_AFTER_MS = 1000;
/** Before asking again after the server refused a pull for a reason that passes (too many waiting pulls). */
const REFUSED_RETRY_MS = 250;

export class LanePuller {
  readonly #o: LanePullerOptions;
  readonly #inbox = createInbox();
  readonly #held: PulledJob[][];
  readonly #heldAt: number[][];
  /** Jobs asked for and not yet delivered, per lane (over one or two open requests). */
  readonly #asked: number[];
  /** When the lane's open request was sent or last heard from. */
  readonly #heard: number[];
  readonly #retryAt: number[];
  /**
   * Jobs the server says wait in each lane beyond those delivered (from the last delivery's ack
   * subject; 0 after a pull expired unfilled; 1, "maybe", before the lane's first answer).
   */
  readonly #backlog: number[];
  #waiting: ReturnType<typeof setTimeout> | null = null;
  /** The most urgent lane the running wait is for. */
  #waitingFor = 0;
  readonly #byToken = new Map<string, number>();
  #sub: Subscription | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #count = 0;
  #stopped = false;

  constructor(options: LanePullerOptions) {
    this.#o = options;
    const n = options.lanes.length;
    this.#held = Array.from({ length: n }, () => []);
    this.#heldAt = Array.from({ length: n }, () => []);
    this.#asked = new Array<number>(n).fill(0);
    this.#heard = new Array<number>(n).fill(0);
    this.#retryAt = new Array<number>(n).fill(0);
    this.#backlog = new Array<number>(n).fill(1);
    options.lanes.forEach((lane, i) => this.#byToken.set(lane.token, i));
  }

  /** Jobs held, not yet taken. */
  get held(): number {
    return this.#count;
  }

  start(): void {
    this.#sub = this.#o.nc.subscribe(`${this.#inbox}.*`, { callback: (err, msg) => (err ? this.#fail(err) : this.#receive(msg)) });
    // Checks lost pulls and keeps held jobs alive; its period bounds how late either happens.
    const period = Math.max(100, Math.min(LOST_AFTER_MS, Math.floor(this.#o.ackWaitMs / 3)));
    this.#timer = setInterval(() => this.#tick(), period);
    this.#timer.unref?.();
    this.#pullAll();
  }

  /**
   * The most urgent job held, or null. Strict: while a more urgent lane has jobs waiting on the
   * server and a pull open for them, nothing less urgent is given (each wait at most
   * URGENT_WAIT_MS: a delivery of the lane waited for ends it, and the next one starts afresh).
   * Taking a job may ask its lane (or a less urgent one) for more.
   */
  take(): PulledJob | null {
    for (let i = 0; i < this.#held.length; i++) {
      const lane = this.#held[i]!;
      if (lane.length === 0) {
        if (this.#backlog[i]! > 0 && this.#sub) {
          this.#pull(i);
          if (this.#asked[i]! > 0) {
            // Lanes before this one and this one hold nothing: the wait only matters when a less
            // urgent lane holds a job that would be given instead. Otherwise the next delivery
            // calls onReady anyway, and a timer per dry moment of a busy lane is pure cost.
            if (this.#count > 0) this.#waitForUrgent(i);
            return null;
          }
        }
        continue;
      }
      const job = lane.shift()!;
      this.#heldAt[i]!.shift();
      this.#count--;
      if (lane.length === 0) this.#pullAll();
      else this.#pull(i);
      return job;
    }
    return null;
  }

  /** After URGENT_WAIT_MS, a backlog that has not arrived is taken as gone, and the worker asks again. */
  #waitForUrgent(lane: number): void {
    if (this.#waiting) {
      this.#waitingFor = Math.min(this.#waitingFor, lane);
      return;
    }
    this.#waitingFor = lane;
    this.#waiting = setTimeout(() => {
      this.#waiting = null;
      if (this.#stopped) return;
      for (let i = 0; i < this.#held.length; i++) if (this.#held[i]!.length === 0) this.#backlog[i] = 0;
      this.#o.onReady();
    }, URGENT_WAIT_MS);
  }

  /** Stops pulling; every job held goes back (NAK: it is redelivered at once, to any worker). */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#waiting) clearTimeout(this.#waiting);
    this.#waiting = null;
    for (const lane of this.#held) for (const job of lane.splice(0)) job.nak();
    for (const at of this.#heldAt) at.length = 0;
    this.#count = 0;
    // Jobs the server sends before it sees the unsubscribe still reach the callback: they go back too.
    const sub = this.#sub;
    this.#sub = null;
    if (sub) void sub.drain().catch(() => {});
  }

  #receive(msg: Msg): void {
    if (msg.subject.startsWith(this.#inbox)) {
      this.#status(Number(msg.subject.slice(this.#inbox.length + 1)), msg);
      return;
    }
    const end = msg.subject.lastIndexOf('.');
    const i = this.#byToken.get(msg.subject.slice(this.#o.subjectPrefix.length, end));
    if (i === undefined || this.#stopped) {
      // Pulled after a stop (or not ours at all): back to the queue, for whoever pulls next.
      if (msg.reply) msg.respond(NAK);
      return;
    }
    if (this.#asked[i]! > 0) this.#asked[i]!--;
    // The lane waited for answered: that wait is over. A later one gets its own moment; left
    // running, this timer would end it early and give a less urgent job ahead of the backlog.
    if (this.#waiting && i <= this.#waitingFor) {
      clearTimeout(this.#waiting);
      this.#waiting = null;
    }
    this.#backlog[i] = pendingAfter(msg.reply);
    this.#heard[i] = this.#o.now();
    this.#held[i]!.push(new PulledJob(msg, i));
    this.#heldAt[i]!.push(this.#heard[i]!);
    this.#count++;
    this.#o.onReady();
  }

  /** A status on a lane's inbox: heartbeat, the request expired, or the server refused it. */
  #status(i: number, msg: Msg): void {
    if (this.#stopped || !(i >= 0 && i < this.#held.length)) return;
    const code = msg.headers?.code ?? 0;
    const description = (msg.headers?.description ?? '').toLowerCase();
    this.#heard[i] = this.#o.now();
    if (code === 100) return;
    // 408: a request expired (answered in part, or not at all); 404: nothing to deliver. The
    // status says how many of that request's jobs will not come; without it, none will.
    const unfilled = Number(msg.headers?.get('Nats-Pending-Messages') || NaN);
    this.#asked[i] = Number.isFinite(unfilled) ? Math.max(0, this.#asked[i]! - unfilled) : 0;
    if (code === 408 || code === 404) {
      this.#backlog[i] = 0;
      this.#pull(i);
      return;
    }
    if (code === 503 || (code === 409 && description.includes('consumer deleted'))) {
      const name = this.#o.lanes[i]!.consumer;
      this.#o.onMissing(new Error(code === 503 ? `no responders for consumer ${name}` : `consumer deleted: ${name}`));
      return;
    }
    // 409 for a reason that passes (too many waiting pulls, a leadership change): ask again shortly.
    this.#retryAt[i] = this.#o.now() + REFUSED_RETRY_MS;
  }

  #fail(error: Error): void {
    if (this.#stopped) return;
    this.stop();
    this.#o.onError(error);
  }

  #tick(): void {
    if (this.#stopped) return;
    const now = this.#o.now();
    let lost = false;
    for (let i = 0; i < this.#asked.length; i++) {
      if (this.#asked[i]! > 0 && now - this.#heard[i]! > this.#o.expiresMs + LOST_AFTER_MS) {
        this.#asked[i] = 0;
        lost = true;
      }
    }
    this.#pullAll();
    if (lost) this.#o.onLost?.();
    // Held jobs wait for a slot; a slow handler ahead of them must not let them be redelivered.
    // Looked at every tick, so none goes longer than a third of ack_wait plus a tick unrenewed.
    const keepAlive = Math.floor(this.#o.ackWaitMs / 3);
    if (this.#count === 0) return;
    for (let i = 0; i < this.#held.length; i++) {
      const at = this.#heldAt[i]!;
      this.#held[i]!.forEach((job, k) => {
        if (now - at[k]! >= keepAlive) {
          job.working();
          at[k] = now;
        }
      });
    }
  }

  /** Asks every lane that may pull now (see #pull), most urgent first. */
  #pullAll(): void {
    for (let i = 0; i < this.#held.length; i++) this.#pull(i);
  }

  /**
   * Asks lane `i` for jobs when what it holds and has asked for is at most 3/4 of its cap (so a
   * busy lane has its next batch on the way well before the last runs out), and no more urgent lane
   * holds a job (those would start first: a job pulled here would only wait).
   */
  #pull(i: number): void {
    if (this.#stopped || !this.#sub) return;
    const held = this.#held[i]!.length;
    if (held + this.#asked[i]! > (this.#o.cap * 3) / 4) return;
    for (let j = 0; j < i; j++) if (this.#held[j]!.length > 0) return;
    const now = this.#o.now();
    if (now < this.#retryAt[i]!) return;
    const batch = this.#o.cap - held - this.#asked[i]!;
    this.#asked[i]! += batch;
    this.#heard[i] = now;
    if (this.#o.defer) this.#o.defer(() => this.#request(i, batch));
    else this.#request(i, batch);
  }

  /** The pull request itself; not sent once pulling stopped (its jobs would reach no subscription). */
  #request(i: number, batch: number): void {
    if (this.#stopped || !this.#sub) return;
    const o = this.#o;
    try {
      o.nc.publish(`${o.apiPrefix}.CONSUMER.MSG.NEXT.${o.stream}.${o.lanes[i]!.consumer}`, encoder.encode(`{"batch":${batch},"expires":${o.expiresMs * 1_000_000}}`), {
        reply: `${this.#inbox}.${i}`,
      });
    } catch (error) {
      // Published at once, it would throw into take(); deferred, it has no caller: both stop here.
      this.#fail(error as Error);
    }
  }
}
