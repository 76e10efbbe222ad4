import { createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Status, type Subscription } from '@nats-io/transport-node';
import { NaqError, type PermissionDeniedError } from '../../core/errors.js';
import { deniedFrom, permissionViolation, type PermissionListener } from '../../core/permissions.js';
import { readPubAck } from './pub-ack.js';
import { ACK, frameSize, outboundOf, plainSubject, writeFrame, type Outbound } from './pub-frames.js';

/**
 * The publish-async path (DESIGN: the per-job budget). A JetStream publish is a core publish
 * with a reply subject on ONE shared inbox subscription; the server's ack comes back there and
 * is matched by token. One sweeper times out what was never acked. Compared with a promise
 * and a timer per `js.publish`, this measured ~3× the enqueue rate on this machine.
 */
export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** The server refused a publish (err_code from JetStream, e.g. 10077 = per-subject limit). */
export class PublishRejectedError extends NaqError {
  readonly errCode: number;
  constructor(subject: string, errCode: number, description: string) {
    super('PUBLISH_REJECTED', `publish to ${subject} rejected: ${description} (${errCode})`);
    this.errCode = errCode;
  }
}

/** No ack in time, or no stream listens: transient, worth a retry after a reconnect. */
export class PublishTimeoutError extends NaqError {
  constructor(subject: string, timeoutMs: number) {
    super('TIMEOUT', `publish to ${subject} was not acknowledged within ${timeoutMs} ms`);
  }
}

export class NoStreamError extends NaqError {
  constructor(subject: string) {
    super('NO_RESPONDERS', `no stream answered a publish to ${subject}`);
  }
}

/** A publish waiting for its ack; the same object waits in the cork until it is written. */
interface Pending {
  token: string;
  subject: string;
  data: Uint8Array | string;
  hdrs: MsgHdrs | undefined;
  resolve: (ack: PubAck) => void;
  reject: (error: Error) => void;
  expires: number;
}

/**
 * A delivery acked with the next batch. `ackSubject` (when it has one) hands over the subject
 * to ack on and counts the delivery as answered, so the publisher writes the ack itself; null
 * when it was answered already or has no subject.
 */
export interface Ackable {
  ack(): void;
  ackSubject?(): string | null;
}

export interface PublishOptions {
  /** Nats-Msg-Id: the server drops a second publish with the same id within its window. */
  msgId?: string;
  /** Nats-Expected-Last-Subject-Sequence: optimistic concurrency on the subject. */
  expectedLastSubjectSequence?: number;
  headers?: Record<string, string>;
}

export interface AsyncPublisherOptions {
  timeoutMs: number;
  sweepMs?: number;
  /** Told of every permission refusal on the connection (see onPermissionError). */
  onPermissionError?: PermissionListener;
  /**
   * Told when no stream answered a publish: the stream may have been deleted (or the server
   * is still starting). The owner decides whether to look; the publish itself still fails.
   */
  onNoStream?: (subject: string) => void;
}

export class AsyncPublisher {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #inboxSubject: string;
  readonly #pending = new Map<string, Pending>();
  readonly #sub: Subscription;
  readonly #sweeper: NodeJS.Timeout;
  readonly #timeoutMs: number;
  readonly #permissionListeners = new Set<PermissionListener>();
  readonly #onNoStream: ((subject: string) => void) | undefined;
  /** Set once the server refused the ack inbox: no publish of ours can be acknowledged. */
  #inboxDenied: PermissionDeniedError | undefined;
  #next = 0;

  constructor(nc: NatsConnection, options: AsyncPublisherOptions) {
    this.#nc = nc;
    this.#timeoutMs = options.timeoutMs;
    if (options.onPermissionError) this.#permissionListeners.add(options.onPermissionError);
    this.#onNoStream = options.onNoStream;
    const inbox = createInbox();
    this.#prefix = `${inbox}.`;
    this.#inboxSubject = `${inbox}.*`;
    // Following the status before the first subscribe or publish: no refusal comes before it.
    void this.#followStatus();
    this.#sub = nc.subscribe(this.#inboxSubject, {
      // The client calls back with an error (and an empty message) when the server refuses
      // the subscription; it closes the subscription itself.
      callback: (err, msg) => (err ? this.#onInboxError(err) : this.#onAck(msg)),
    });
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepMs ?? Math.max(50, Math.min(1000, options.timeoutMs / 4)));
    this.#sweeper.unref();
  }

  /**
   * Every permission refusal the server reports on this connection reaches `listener`, as a
   * PermissionDeniedError naming the subject — this publisher's writes, and also what has no
   * caller to fail: acks, naks and `working()` (core publishes to `$JS.ACK.…`), pull requests,
   * other subscriptions. The publisher is the one reader of the connection's status for
   * this, so its owner logs refusals in one place. Returns the unsubscribe.
   */
  onPermissionError(listener: PermissionListener): () => void {
    this.#permissionListeners.add(listener);
    return () => this.#permissionListeners.delete(listener);
  }

  /**
   * The connection's status, for two things: permission refusals (#onServerError), and
   * reconnects. The client does not keep what was published while it was disconnected (nor,
   * reliably, what was in flight when the server went away), so on reconnect every publish still
   * waiting for its ack is sent again with a fresh deadline. Safe for naq's publishes: a KV
   * put rewrites the same value, a job is refused as a per-subject duplicate if it made it,
   * and event batches carry a Nats-Msg-Id.
   */
  async #followStatus() {
    const statuses = this.#nc.status();
    this.#statuses = statuses as { stop?: () => void };
    for await (const s of statuses) {
      if (s.type === 'error') {
        this.#onServerError(s);
        continue;
      }
      if (s.type === 'disconnect') this.#linkDown = true;
      if (s.type !== 'reconnect') continue;
      this.#linkDown = false;
      if (this.#pending.size === 0) continue;
      const expires = Date.now() + this.#timeoutMs;
      this.#wake();
      const queued = new Set(this.#corked);
      for (const [, entry] of this.#pending) {
        entry.expires = expires;
        if (!queued.has(entry)) this.#corked.push(entry);
      }
    }
  }
  #statuses: { stop?: () => void } | undefined;
  /** Between a disconnect and the reconnect: no ack can come back meanwhile. */
  #linkDown = false;

  /**
   * A refused publish never gets an ack: without this its caller would wait out the publish
   * timeout, and a retry loop would take that for an outage. Every publish of ours to the
   * refused subject fails now — the server refuses them all, so none will be acked.
   */
  #onServerError(status: Extract<Status, { type: 'error' }>) {
    const violation = permissionViolation(status.error);
    if (!violation) return;
    // Our own inbox: already handled by the subscription's callback.
    if (violation.operation === 'subscription' && violation.subject === this.#inboxSubject) return;
    const error = deniedFrom(violation);
    let rejected = 0;
    if (violation.operation === 'publish') {
      for (const [token, entry] of this.#pending) {
        if (entry.subject !== violation.subject) continue;
        this.#pending.delete(token);
        entry.reject(deniedFrom(violation));
        rejected++;
      }
    }
    this.#report(error, rejected);
  }

  /** Acks can never arrive: fail what waits now, and every later publish at once. */
  #onInboxError(err: Error) {
    const violation = permissionViolation(err);
    const error = violation ? deniedFrom(violation) : undefined;
    // Anything else ends the subscription too (the connection closed): close() handles that.
    if (!error) return;
    this.#inboxDenied = error;
    const rejected = this.#pending.size;
    for (const [, entry] of this.#pending) entry.reject(error);
    this.#pending.clear();
    this.#report(error, rejected);
  }

  #report(error: PermissionDeniedError, rejected: number) {
    for (const listener of this.#permissionListeners) {
      try {
        listener(error, { rejected });
      } catch {
        // A listener's bug must not stop the others, nor the status loop.
      }
    }
  }

  get pending(): number {
    return this.#pending.size;
  }

  publish(subject: string, data: Uint8Array | string, options?: PublishOptions): Promise<PubAck> {
    if (this.#inboxDenied) return Promise.reject(this.#inboxDenied);
    const token = (this.#next++).toString(36);
    let hdrs: MsgHdrs | undefined;
    if (options && (options.msgId !== undefined || options.expectedLastSubjectSequence !== undefined || options.headers)) {
      hdrs = natsHeaders();
      if (options.msgId !== undefined) hdrs.set('Nats-Msg-Id', options.msgId);
      if (options.expectedLastSubjectSequence !== undefined) hdrs.set('Nats-Expected-Last-Subject-Sequence', String(options.expectedLastSubjectSequence));
      if (options.headers) for (const [k, v] of Object.entries(options.headers)) hdrs.set(k, v);
    }
    return new Promise<PubAck>((resolve, reject) => {
      const entry: Pending = { token, subject, data, hdrs, resolve, reject, expires: Date.now() + this.#timeoutMs };
      this.#pending.set(token, entry);
      this.#wake();
      this.#corked.push(entry);
    });
  }

  /** The next turn's flush is scheduled once, by whatever is queued first. */
  #wake() {
    if (this.#corked.length === 0 && this.#acks.length === 0 && this.#tasks.length === 0) setImmediate(this.#flush);
  }

  /**
   * Runs `task` at the next flush, just before the batch is written: whatever it publishes
   * shares the batch's socket write. The client writes on a microtask after the first command
   * of a turn, so a pull request sent while the worker reads (lanes.ts) cost a write of its own:
   * 41 % of a draining worker's writes were a lone pull request, each a syscall that wakes
   * the server. A task that throws does not stop the flush.
   */
  later(task: () => void): void {
    this.#wake();
    this.#tasks.push(task);
  }

  /**
   * Publishes made in one turn of the event loop go out together: the client then writes
   * them to the socket in one go, instead of one write per job when each job's publish
   * happens in its own microtask (measured: ~17% of a worker's CPU was socket writes).
   * They are written as PUB frames into one buffer (pub-frames.ts) rather than one
   * `nc.publish` each.
   */
  #corked: Pending[] = [];
  #acks: Ackable[] = [];
  #tasks: (() => void)[] = [];
  /** Reused by every flush: the frames of the run being built, and the acks' subjects. */
  readonly #run: Pending[] = [];
  readonly #ackSubjects: string[] = [];
  readonly #flush = () => {
    // Swapped, not spliced: what a callback queues meanwhile goes out with the next turn.
    const batch = this.#corked;
    const acks = this.#acks;
    this.#corked = [];
    this.#acks = [];
    if (this.#tasks.length > 0) {
      const tasks = this.#tasks;
      this.#tasks = [];
      for (const task of tasks) {
        try {
          task();
        } catch {
          // The task's owner reports its own failures; the batch goes out regardless.
        }
      }
    }
    const out = outboundOf(this.#nc);
    if (!out || out.noMorePublishing || this.#nc.isClosed()) {
      // Closed or draining: nc.publish throws what it throws, and each publish fails with it.
      for (const m of batch) if (this.#pending.get(m.token) === m) this.#publishOne(m);
      for (const m of acks) m.ack();
      return;
    }
    const max = out.info?.max_payload ?? Number.POSITIVE_INFINITY;
    // Consecutive frames go out as one buffer. A message the client must write itself
    // (headers, a string, an odd subject, over max_payload, which it refuses) goes through
    // nc.publish in its place: writes to one subject stay in order.
    const run = this.#run;
    let size = 0;
    for (const m of batch) {
      // Answered meanwhile (a reconnect re-queued it) or failed: nothing to send.
      if (this.#pending.get(m.token) !== m) continue;
      if (m.hdrs === undefined && typeof m.data !== 'string' && m.data.length <= max && plainSubject(m.subject)) {
        run.push(m);
        size += frameSize(m.subject, this.#prefix.length + m.token.length, m.data.length);
        continue;
      }
      if (run.length > 0) {
        this.#send(out, size, 0);
        size = 0;
      }
      this.#publishOne(m);
    }
    // Acks after the writes, in the same buffer.
    const subjects = this.#ackSubjects;
    let ackSize = 0;
    for (const m of acks) {
      const subject = m.ackSubject?.() ?? null;
      if (subject === null) m.ack();
      else if (!plainSubject(subject)) this.#nc.publish(subject, ACK);
      else {
        subjects.push(subject);
        ackSize += frameSize(subject, 0, ACK.length);
      }
    }
    if (run.length > 0 || subjects.length > 0) this.#send(out, size, ackSize);
  };

  /** The run's frames (`size` bytes), then the acks' (`ackSize`), as one buffer in the client's outbound; both lists are emptied. */
  #send(out: Outbound, size: number, ackSize: number): void {
    const run = this.#run;
    const subjects = this.#ackSubjects;
    const buf = Buffer.allocUnsafe(size + ackSize);
    let at = 0;
    let bytes = 0;
    for (const m of run) {
      const data = m.data as Uint8Array;
      at = writeFrame(buf, at, m.subject, this.#prefix, m.token, data);
      bytes += data.length;
    }
    for (const subject of subjects) at = writeFrame(buf, at, subject, '', '', ACK);
    // The client's own count of what was published (nc.stats()).
    out.outMsgs += run.length + subjects.length;
    out.outBytes += bytes + subjects.length * ACK.length;
    run.length = 0;
    subjects.length = 0;
    out.sendCommand(buf);
  }

  #publishOne(m: Pending): void {
    try {
      this.#nc.publish(m.subject, m.data, m.hdrs ? { reply: this.#prefix + m.token, headers: m.hdrs } : { reply: this.#prefix + m.token });
    } catch (error) {
      this.#pending.delete(m.token);
      m.reject(error as Error);
    }
  }

  /**
   * Acks `msg` with the next batch of publishes, or in the next turn when none is queued, so
   * acknowledgements are written together too.
   */
  ackLater(msg: Ackable): void {
    this.#wake();
    this.#acks.push(msg);
  }

  #onAck(msg: Msg) {
    const token = msg.subject.slice(this.#prefix.length);
    const entry = this.#pending.get(token);
    if (!entry) return;
    this.#pending.delete(token);
    // A 503 status with no body: no stream is bound to the subject (or the server is not ready).
    if (msg.data.length === 0) {
      entry.reject(new NoStreamError(entry.subject));
      this.#onNoStream?.(entry.subject);
      return;
    }
    try {
      const ack = readPubAck(msg.data);
      if (ack.error) {
        entry.reject(new PublishRejectedError(entry.subject, ack.error.err_code ?? ack.error.code ?? 0, ack.error.description ?? 'error'));
      } else {
        entry.resolve({ stream: ack.stream ?? '', seq: ack.seq ?? 0, duplicate: Boolean(ack.duplicate) });
      }
    } catch (error) {
      entry.reject(error as Error);
    }
  }

  #sweep() {
    if (this.#pending.size === 0) return;
    const now = Date.now();
    for (const [token, entry] of this.#pending) {
      if (entry.expires <= now) {
        this.#pending.delete(token);
        entry.reject(new PublishTimeoutError(entry.subject, this.#timeoutMs));
      }
    }
  }

  /**
   * Resolves once every publish made so far has its answer (or failed), or after `timeoutMs`:
   * a connection that closes first drops the acks still on their way, and their writes would
   * be reported lost though the server has them. Only the shutdown waits on it: a poll. With
   * the link down nothing can be answered, and it does not wait.
   */
  async settled(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while ((this.#pending.size > 0 || this.#corked.length > 0) && Date.now() < until && !this.#inboxDenied && !this.#linkDown) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Rejects what is still pending and releases the inbox. */
  close() {
    clearInterval(this.#sweeper);
    this.#statuses?.stop?.();
    for (const [, entry] of this.#pending) entry.reject(new PublishTimeoutError(entry.subject, 0));
    this.#pending.clear();
    try {
      this.#sub.unsubscribe();
    } catch {
      // The connection may already be closed.
    }
  }
}

/**
 * Per-subject limit hit on a `discard_new_per_subject` stream: the job id is already pending.
 * (`JetStreamApiCodes` in @nats-io/jetstream does not name this one.)
 */
export const ERR_MAX_MSGS_PER_SUBJECT = 10077;
