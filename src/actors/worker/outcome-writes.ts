/**
 * The job path's last step (job-path.ts): an outcome is written, a flow's child tells its
 * parent, and only then is the delivery acked, together with any copy delivered while it ran;
 * a job given back NAKs its copies too; an outcome that could not be written leaves the
 * delivery unacked, to be redelivered. At least once: never an ack before the record.
 */
import type { Logger } from '../../core/log.js';
import type { PermissionDeniedError } from '../../core/errors.js';
import { toPermissionDenied } from '../../core/permissions.js';
import { TERMINAL_STATUSES, type JobRecord } from '../../model/job.js';
import { isIndexedState } from '../../model/job-index.js';
import { encodeRecord } from '../../model/record-codec.js';
import type { Delivery } from './delivery.js';
import type { DeliveryMemory } from './delivery-memory.js';
import type { JobIO } from './job-io.js';
import type { RunningJob } from './running-job.js';

export interface OutcomeWritesOptions {
  /** The job path's running jobs, by id: a job leaves it once its outcome is settled. */
  running: Map<string, RunningJob>;
  /** Final outcomes are remembered there, so a redelivery is acked without a run. */
  memory: DeliveryMemory;
  io: JobIO;
  log: Logger;
  onRefused(error: PermissionDeniedError): void;
}

export class OutcomeWrites {
  readonly #o: OutcomeWritesOptions;

  constructor(options: OutcomeWritesOptions) {
    this.#o = options;
  }

  /** At-least-once: the ack goes out only after the outcome is recorded. */
  async finish(msg: Delivery, record: JobRecord): Promise<void> {
    try {
      await this.write(record);
      await this.toldParent(record);
    } catch (error) {
      return this.notRecorded(msg, record.id, error);
    }
    this.recorded(msg, record.id, record.status === 'retrying' ? undefined : record.enqueuedAt);
  }

  /**
   * The outcome is stored: ack it (and any copy delivered meanwhile) with the next batch. A
   * final outcome is remembered (`enqueuedAt`), so a redelivery is acked without a run.
   */
  recorded(msg: Delivery, id: string, enqueuedAt: number | undefined): void {
    const duplicates = this.#o.running.get(id)?.duplicates;
    this.#o.running.delete(id);
    if (enqueuedAt !== undefined) this.#o.memory.remember(id, enqueuedAt);
    this.ackLater(msg, duplicates);
  }

  /**
   * A final outcome of a flow's or batch's child is told to its parent before the ack: a crash
   * in between redelivers the job, and its recorded outcome is told again (the notice replaces
   * itself).
   */
  toldParent(record: JobRecord): Promise<unknown> | undefined {
    if (record.parent === undefined || !TERMINAL_STATUSES.has(record.status)) return undefined;
    return this.#o.io.tellParent(record.parent, record.id, record.status as 'completed' | 'failed' | 'cancelled', record.error);
  }

  ackLater(msg: Delivery, duplicates: Delivery[] | undefined) {
    this.#o.io.ackLater(msg);
    if (duplicates) for (const d of duplicates) this.#o.io.ackLater(d);
  }

  /** Not recorded: the message stays unacked, so it is redelivered after ack_wait. */
  notRecorded(msg: Delivery, id: string, error: unknown): void {
    this.#o.running.delete(id);
    const denied = toPermissionDenied(error);
    if (denied) {
      // Another worker (allowed to write records) can take it at once.
      msg.nak();
      this.#o.onRefused(denied);
      return;
    }
    this.#o.log.warn({ err: error, jobId: id }, 'outcome not recorded; the job will be redelivered');
  }

  /** A record write, cut down to fit one message if it has to be. */
  write(record: JobRecord): Promise<unknown> {
    if (isIndexedState(record.status)) this.#o.io.index({ id: record.id, queue: record.queue, name: record.name, state: record.status, enqueuedAt: record.enqueuedAt });
    return this.#o.io.writeRecord(record.id, encodeRecord(record, this.#o.io.maxMessageBytes()));
  }

  /** The job was given back (retry, drain): its duplicate deliveries go back too. */
  releaseDuplicates(id: string) {
    const duplicates = this.#o.running.get(id)?.duplicates;
    if (duplicates) for (const d of duplicates) d.nak();
    this.#o.running.delete(id);
  }
}
