/**
 * The flow tracker (flows and batches; docs/wire-format.md 3.9). Each child of a flow or batch
 * sends one notice when it reaches its final outcome. The process leading the firing of
 * schedules reads every notice, from the start of the notice stream, and counts them per
 * parent: when all of a parent's children finished, it publishes the parent (a batch's
 * completion job with the counts); when a flow child with onFailure `fail` failed, it fails
 * the parent at once. Then it closes the parent's record and purges its notices.
 *
 * No polling per child, and no counter shared between processes: one reader counts. A new
 * leader reads the notices still in the stream (those of parents not yet released) and goes
 * on. A parent is published once: with a Nats-Msg-Id, and not at all when a record of its run
 * already exists.
 */
import { jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import type { ErrorInfo } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { BatchSummary, ChildNotice, FlowRecord } from '../../model/flow.js';
import { encodeJson, type JobMessage, type JobRecord } from '../../model/job.js';
import { publishJob } from '../jobs/enqueue.js';
import { cancelUnstarted, failUnstarted } from '../jobs/fail-unstarted.js';
import { tellParent } from '../jobs/flow-notice.js';
import { closedRecord, isFatal } from '../jobs/flow-reads.js';
import { pendingMessage } from '../jobs/reads.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { NaqContext } from '../nats/context.js';

/** After a failed step (a publish, a read), the parent is looked at again this much later. */
const RETRY_MS = 1000;
/** A notice stream read that ended is opened again after this long. */
const REOPEN_MS = 1000;
const NOTICE_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
/** Parents closed lately, remembered so that their children's late notices cost no read. */
const CLOSED_KEPT = 10_000;

interface Parent {
  /** Notices by child id. */
  finished: Map<string, ChildNotice>;
  /** Its record and revision once read; null: none (rolled back, expired). */
  record: { value: FlowRecord; revision: number } | null | undefined;
  /** A flow's children (notices of other ids are not counted). */
  children: Set<string> | null;
  /** Children counted towards the total. */
  count: number;
  /** A flow child with onFailure `fail` that did not complete: the parent fails. */
  fatal: ChildNotice | null;
  /** Released, failed or cancelled: notices are only purged. */
  closed: boolean;
  /** The steps for this parent, one after another. */
  chain: Promise<void>;
}

export class FlowTracker {
  readonly #ctx: NaqContext;
  readonly #log: Logger;
  readonly #parents = new Map<string, Parent>();
  readonly #closed = new Set<string>();
  readonly #purging = new Set<string>();
  readonly #noticePrefix: string;
  #messages: ConsumerMessages | null = null;
  #stopped = false;

  constructor(ctx: NaqContext, log: Logger) {
    this.#ctx = ctx;
    this.#log = log;
    this.#noticePrefix = ctx.layout.flowNoticeSubject('', '').slice(0, -1);
  }

  /** Reads the notices until stop(); a read that could not start or ended is started again. */
  start(): void {
    this.#read().catch((error: unknown) => {
      if (this.#stopped) return;
      this.#log.warn({ err: error }, 'could not read the flow notices; trying again');
      setTimeout(() => this.start(), REOPEN_MS).unref();
    });
  }

  async #read(): Promise<void> {
    if (this.#stopped) return;
    // One subject as a string: a list needs server 2.10.
    const consumer = await jetstream(this.#ctx.nc).consumers.get(this.#ctx.layout.flowsStream, { filter_subjects: this.#ctx.layout.allFlowNotices });
    const messages = await consumer.consume();
    if (this.#stopped) return void messages.stop();
    this.#messages = messages;
    void (async () => {
      for await (const m of messages) {
        if (this.#stopped) break;
        this.#notice(m.subject, m.data);
      }
    })()
      .catch((error: unknown) => this.#log.warn({ err: error }, 'flow notices read ended'))
      .finally(() => {
        if (this.#stopped || this.#messages !== messages) return;
        // Read again from the start: counts are rebuilt, as by a new leader.
        this.#parents.clear();
        setTimeout(() => this.start(), REOPEN_MS).unref();
      });
  }

  stop(): void {
    this.#stopped = true;
    this.#messages?.stop();
    this.#messages = null;
  }

  #notice(subject: string, data: Uint8Array): void {
    const rest = subject.slice(this.#noticePrefix.length);
    const dot = rest.indexOf('.');
    if (dot <= 0) return;
    const parentId = rest.slice(0, dot);
    let notice: ChildNotice;
    try {
      notice = JSON.parse(new TextDecoder().decode(data)) as ChildNotice;
    } catch {
      return;
    }
    // The child is the subject's (one message per subject is what makes a notice count once).
    notice.id = rest.slice(dot + 1);
    if (!NOTICE_STATUSES.has(notice.status)) return;
    if (this.#closed.has(parentId)) {
      // A child that finished after its parent was released or failed: dropped, in one purge.
      this.#purgeSoon(parentId);
      return;
    }
    let parent = this.#parents.get(parentId);
    if (!parent) {
      parent = { finished: new Map(), record: undefined, children: null, count: 0, fatal: null, closed: false, chain: Promise.resolve() };
      this.#parents.set(parentId, parent);
    }
    const isNew = !parent.finished.has(notice.id);
    parent.finished.set(notice.id, notice);
    if (parent.record && (!parent.children || parent.children.has(notice.id))) {
      if (isNew) parent.count++;
      if (!parent.fatal && isFatal(parent.record.value, notice)) parent.fatal = notice;
    }
    this.#step(parentId, parent);
  }

  #step(id: string, parent: Parent): void {
    parent.chain = parent.chain
      .then(() => this.#evaluate(id, parent))
      .catch((error: unknown) => {
        if (this.#stopped) return;
        this.#log.warn({ err: error, parent: id }, 'could not settle a flow parent; trying again');
        setTimeout(() => this.#step(id, parent), RETRY_MS).unref();
      });
  }

  /**
   * A waiting parent is closed by a revision-checked update first (released, with a batch's
   * counts; or failed, naming the child), and what that means is carried out after: so a
   * cancel and a release cannot both win, and a closed record whose notices are still in the
   * stream (the leader died in between) is carried out again by the next one. Every step can
   * be made twice: the publish has a Nats-Msg-Id and is skipped when the parent is pending or
   * has a record of this enqueue; records and notices replace themselves.
   */
  async #evaluate(id: string, parent: Parent): Promise<void> {
    if (parent.closed || this.#stopped) return;
    if (parent.record === undefined) await this.#load(id, parent);
    const current = parent.record;
    // No record: rolled back, removed or expired. Not remembered: the id may be used again.
    if (!current) return this.#close(id, parent, false);
    const record = current.value;
    if (record.state === 'waiting') {
      const decided = closedRecord(record, parent.fatal, parent.count, parent.finished.values(), Date.now());
      if (!decided) return;
      const closed = fitted(decided, 'summary', this.#ctx.storage.maxMessageBytes);
      if (!(await this.#closeRecord(current, closed))) {
        // Changed meanwhile (a cancel, another leader): look again.
        await this.#load(id, parent);
        return this.#evaluate(id, parent);
      }
      return this.#carryOut(id, parent, closed);
    }
    return this.#carryOut(id, parent, record);
  }

  async #load(id: string, parent: Parent): Promise<void> {
    const entry = await (await this.#ctx.storage.flowsKv()).get(id);
    if (!entry || entry.operation !== 'PUT') {
      parent.record = null;
      return;
    }
    const value = entry.json<FlowRecord>();
    parent.record = { value, revision: entry.revision };
    parent.children = value.kind === 'flow' ? new Set(value.children ?? []) : null;
    parent.count = 0;
    parent.fatal = null;
    for (const notice of parent.finished.values()) {
      if (parent.children && !parent.children.has(notice.id)) continue;
      parent.count++;
      if (!parent.fatal && isFatal(value, notice)) parent.fatal = notice;
    }
  }

  /** What a closed record says, done (again, if an earlier leader did part of it). */
  async #carryOut(id: string, parent: Parent, record: FlowRecord): Promise<void> {
    const { job } = record;
    const ran = await this.#ranAlready(job.id, job.ts);
    if (record.state === 'released') {
      if (!ran && !(await pendingMessage(this.#ctx, job.id))) {
        const released = record.summary ? fitted({ ...job, batch: record.summary }, 'batch', Math.min(this.#ctx.storage.maxMessageBytes, this.#ctx.defaults.maxPayloadBytes)) : job;
        await publishJob(this.#ctx, released, encodeJson(released), `${job.id}:${job.ts}:release`);
      }
      this.#log.debug({ parent: id, kind: record.kind, children: record.total }, 'children finished; parent released');
    } else if (record.state === 'failed') {
      const error: ErrorInfo & { code: string } = { name: 'ChildFailedError', code: 'CHILD_FAILED', message: record.reason ?? 'a child failed' };
      if (!ran) await failUnstarted(this.#ctx, job, error, { child: record.failedBy });
      else if (job.parent !== undefined) await tellParent(this.#ctx, job.parent, job.id, 'failed', error);
    } else if (record.state === 'cancelled' && !ran) {
      // A cancel that did not get to write its record (cancel() finishes it too).
      await cancelUnstarted(this.#ctx, job, { waitingChildren: true });
    }
    await this.#close(id, parent, true);
  }

  /** A record of this enqueue of the parent exists: it was released (or failed) before. */
  async #ranAlready(id: string, ts: number): Promise<boolean> {
    const entry = await (await this.#ctx.storage.jobsKv()).get(id);
    if (!entry || entry.operation !== 'PUT') return false;
    try {
      return entry.json<JobRecord>().enqueuedAt === ts;
    } catch {
      return false;
    }
  }

  /** The revision-checked close; false when the record changed meanwhile. */
  async #closeRecord(current: { value: FlowRecord; revision: number }, closed: FlowRecord): Promise<boolean> {
    try {
      await (await this.#ctx.storage.flowsKv()).update(closed.id, encodeJson(closed), current.revision);
      return true;
    } catch (error) {
      if (isWrongLastSequence(error)) return false;
      throw error;
    }
  }

  /**
   * Its notices are not needed any more. A parent closed by its record is remembered, so a
   * late notice (a child still running) is only dropped.
   */
  async #close(id: string, parent: Parent, remember: boolean): Promise<void> {
    parent.closed = true;
    this.#parents.delete(id);
    if (remember) {
      this.#closed.add(id);
      if (this.#closed.size > CLOSED_KEPT) this.#closed.delete(this.#closed.values().next().value!);
    }
    await this.#purge(id);
  }

  /** One purge per closed parent and second, however many late notices come. */
  #purgeSoon(id: string): void {
    if (this.#purging.has(id)) return;
    this.#purging.add(id);
    setTimeout(() => {
      this.#purging.delete(id);
      if (!this.#stopped) void this.#purge(id).catch(() => {});
    }, RETRY_MS).unref();
  }

  async #purge(id: string): Promise<void> {
    const jsm = await this.#ctx.jsm();
    await jsm.streams.purge(this.#ctx.layout.flowsStream, { filter: this.#ctx.layout.flowNoticeSubject(id, '>') });
  }
}

/**
 * `value` cut to fit one message: the failed ids of its batch summary (at `key`: a closed
 * batch's record, a completion job) halved until it does. The counts stay exact.
 */
function fitted<K extends string, T extends { [k in K]?: BatchSummary }>(value: T, key: K, maxBytes: number): T {
  let out = value;
  for (let s = out[key]; s && s.failedIds.length > 0 && encodeJson(out).length > maxBytes; s = out[key]) {
    out = { ...out, [key]: { ...s, failedIds: s.failedIds.slice(0, Math.floor(s.failedIds.length / 2)) } };
  }
  return out;
}
