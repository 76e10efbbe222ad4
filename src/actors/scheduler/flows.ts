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
import { MAX_FAILED_IDS, type ChildNotice, type FlowRecord } from '../../model/flow.js';
import { encodeJson, type JobRecord } from '../../model/job.js';
import { publishJob } from '../jobs/enqueue.js';
import { failUnstarted } from '../jobs/fail-unstarted.js';
import { summarize } from '../jobs/flow-reads.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import type { NaqContext } from '../nats/context.js';

/** After a failed step (a publish, a read), the parent is looked at again this much later. */
const RETRY_MS = 1000;
/** A notice stream read that ended is opened again after this long. */
const REOPEN_MS = 1000;
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
    if (this.#closed.has(parentId)) {
      // A child that finished after its parent was released or failed: only dropped.
      void this.#purge(subject).catch(() => {});
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
      if (!parent.fatal && this.#isFatal(parent.record.value, notice)) parent.fatal = notice;
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

  async #evaluate(id: string, parent: Parent): Promise<void> {
    if (parent.closed || this.#stopped) return;
    if (parent.record === undefined) await this.#load(id, parent);
    const record = parent.record?.value;
    if (!record || record.state !== 'waiting') return this.#close(id, parent);
    if (parent.fatal) return this.#fail(id, parent, parent.fatal);
    if (parent.count >= record.total) await this.#release(id, parent);
  }

  /** A flow child (onFailure `fail`, the default) that failed for good or was cancelled. */
  #isFatal(record: FlowRecord, notice: ChildNotice): boolean {
    return record.kind === 'flow' && notice.status !== 'completed' && !record.onFailure?.[notice.id];
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
      if (!parent.fatal && this.#isFatal(value, notice)) parent.fatal = notice;
    }
  }

  /** Every child finished: the parent is published (once), its record closed, its notices purged. */
  async #release(id: string, parent: Parent): Promise<void> {
    // Read again: a cancel may have closed it since it was first read.
    await this.#load(id, parent);
    const current = parent.record;
    if (!current || current.value.state !== 'waiting') return this.#close(id, parent);
    if (parent.fatal) return this.#fail(id, parent, parent.fatal);
    const record = current.value;
    const summary = record.kind === 'batch' ? summarize(id, record.total, parent.finished.values(), MAX_FAILED_IDS) : undefined;
    const job = summary ? { ...record.job, batch: summary } : record.job;
    if (!(await this.#ranAlready(job.id, job.ts))) await publishJob(this.#ctx, job, encodeJson(job), `${job.id}:${job.ts}:release`);
    this.#log.debug({ parent: id, kind: record.kind, children: record.total }, 'children finished; parent released');
    await this.#closeRecord(current, { ...record, state: 'released', closedAt: Date.now(), ...(summary ? { summary } : {}) });
    await this.#close(id, parent);
  }

  /** A flow child with onFailure `fail` failed for good or was cancelled: the parent fails, naming it. */
  async #fail(id: string, parent: Parent, notice: ChildNotice): Promise<void> {
    const current = parent.record!;
    const job = current.value.job;
    const why = notice.status === 'cancelled' ? 'was cancelled' : `failed: ${notice.error?.message ?? 'no error given'}`;
    const error: ErrorInfo & { code: string } = { name: 'ChildFailedError', code: 'CHILD_FAILED', message: `child ${notice.id} ${why}` };
    if (!(await this.#ranAlready(job.id, job.ts))) await failUnstarted(this.#ctx, job, error, { child: notice.id });
    await this.#closeRecord(current, { ...current.value, state: 'failed', reason: error.message, closedAt: Date.now() });
    await this.#close(id, parent);
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

  async #closeRecord(current: { value: FlowRecord; revision: number }, closed: FlowRecord): Promise<void> {
    try {
      await (await this.#ctx.storage.flowsKv()).update(closed.id, encodeJson(closed), current.revision);
    } catch (error) {
      // Closed meanwhile (a cancel, an earlier leader): that one stands.
      if (!isWrongLastSequence(error)) throw error;
    }
  }

  /** Its notices are not needed any more; a late one (a child still running) is purged when it comes. */
  async #close(id: string, parent: Parent): Promise<void> {
    parent.closed = true;
    this.#parents.delete(id);
    this.#closed.add(id);
    if (this.#closed.size > CLOSED_KEPT) this.#closed.delete(this.#closed.values().next().value!);
    await this.#purge(this.#ctx.layout.flowNoticeSubject(id, '>'));
  }

  async #purge(filter: string): Promise<void> {
    const jsm = await this.#ctx.jsm();
    await jsm.streams.purge(this.#ctx.layout.flowsStream, { filter });
  }
}
