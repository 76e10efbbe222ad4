/**
 * How the conformance kit looks at NATS: records, dead letters, the work-queue stream (a
 * message still there is not acked), the queue's consumer and the heartbeats — read raw, as
 * the wire format describes them, never through naq's own readers.
 */
import { JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Layout } from '../model/layout.js';
import { WIRE_VERSION, type DeadLetter, type JobRecord, type WorkerInfo } from '../model/job.js';
import { utf8 } from '../core/utf8.js';
import { CheckFailed, expect, expectEqual, waitUntil } from './checks.js';

const FINAL = new Set(['completed', 'failed', 'cancelled']);

export interface ProbeOptions {
  nc: NatsConnection;
  layout: Layout;
  queue: string;
  /** How long one job may take to reach its outcome. */
  timeoutMs: number;
}

export class Probe {
  protected readonly o: ProbeOptions;
  protected readonly js: JetStreamClient;
  #jsm!: JetStreamManager;
  #records!: KV;
  protected waiting!: KV;

  constructor(options: ProbeOptions) {
    this.o = options;
    this.js = jetstream(options.nc);
  }

  async open(): Promise<void> {
    const { layout } = this.o;
    this.#jsm = await jetstreamManager(this.o.nc);
    const kvm = new Kvm(this.o.nc);
    this.#records = await kvm.open(layout.jobsBucket);
    this.waiting = await kvm.open(layout.waitingBucket);
  }

  async record(id: string): Promise<JobRecord | null> {
    const entry = await this.#records.get(id);
    if (!entry || entry.operation !== 'PUT') return null;
    try {
      return entry.json<JobRecord>();
    } catch {
      throw new CheckFailed(`the record of ${id} is not JSON`);
    }
  }

  async writeRecord(record: JobRecord): Promise<void> {
    await this.#records.put(record.id, utf8(JSON.stringify(record)));
  }

  /** The record once it is final, checked for the fields every record has, and with `status` when given. */
  async outcome(id: string, status?: string, timeoutMs = this.o.timeoutMs): Promise<JobRecord> {
    const record = await waitUntil(`a final record for ${id}`, timeoutMs, async () => {
      const r = await this.record(id);
      return r && FINAL.has(r.status) ? r : undefined;
    });
    checkRecordShape(record, id, this.o.queue);
    if (status !== undefined && record.status !== status) {
      const error = record.error ? ` (error ${record.error.code ?? record.error.name}: ${record.error.message})` : '';
      throw new CheckFailed(`job ${id} ended ${record.status}, expected ${status}${error}`);
    }
    return record;
  }

  /** Still in the work-queue stream: not acked yet. */
  async pending(id: string): Promise<boolean> {
    try {
      return (await this.#jsm.streams.getMessage(this.o.layout.jobsStream, { last_by_subj: this.o.layout.jobSubject(this.o.queue, id) })) !== null;
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound) return false;
      throw error;
    }
  }

  /** Acked: a work-queue stream drops a message once its consumer acks it. */
  async acked(id: string, timeoutMs = 5000): Promise<void> {
    await waitUntil(`the message of ${id} acked`, timeoutMs, async () => ((await this.pending(id)) ? undefined : true));
  }

  /** The queue's consumer has delivered the message at `seq`. */
  async delivered(seq: number): Promise<void> {
    await waitUntil(`delivery of stream sequence ${seq}`, this.o.timeoutMs, async () => ((await this.#consumer()).delivered.stream_seq >= seq ? true : undefined));
  }

  async ackWaitMs(): Promise<number> {
    return Math.round(((await this.#consumer()).config.ack_wait ?? 30e9) / 1e6);
  }

  #consumer() {
    return this.#jsm.consumers.info(this.o.layout.jobsStream, this.o.layout.consumerName(this.o.queue));
  }

  /** The dead letter a failed record points at, checked for the fields every dead letter has. */
  async deadLetter(record: JobRecord): Promise<DeadLetter> {
    expect(typeof record.deadSeq === 'number', `the failed record of ${record.id} has no deadSeq`);
    const msg = await this.#jsm.streams.getMessage(this.o.layout.deadStream, { seq: record.deadSeq! });
    expect(msg, `no dead letter at sequence ${record.deadSeq} of ${this.o.layout.deadStream}`);
    expectEqual(msg!.subject, this.o.layout.deadSubject(this.o.queue), 'the dead letter subject');
    let dead: DeadLetter;
    try {
      dead = msg!.json<DeadLetter>();
    } catch {
      throw new CheckFailed(`the dead letter at sequence ${record.deadSeq} is not JSON`);
    }
    expectEqual(dead.v, WIRE_VERSION, 'the dead letter v');
    expectEqual(dead.jobId, record.id, 'the dead letter jobId');
    expectEqual(dead.queue, this.o.queue, 'the dead letter queue');
    expect(typeof dead.reason === 'string' && dead.reason.length > 0, 'the dead letter has no reason');
    expect(Number.isInteger(dead.ts), 'the dead letter has no ts');
    return dead;
  }

  async heartbeats(): Promise<WorkerInfo[]> {
    const kv = await new Kvm(this.o.nc).open(this.o.layout.workersBucket);
    const out: WorkerInfo[] = [];
    for await (const key of await kv.keys()) {
      const entry = await kv.get(key);
      if (entry?.operation !== 'PUT') continue;
      try {
        out.push(entry.json<WorkerInfo>());
      } catch {
        throw new CheckFailed(`heartbeat ${key} is not JSON`);
      }
    }
    return out;
  }
}

/** What every record must have, whoever wrote it (docs/wire-format.md, the job record). */
export function checkRecordShape(r: JobRecord, id: string, queue: string): void {
  expectEqual(r.v, WIRE_VERSION, `record ${id}: v`);
  expectEqual(r.id, id, `record ${id}: id`);
  expectEqual(r.queue, queue, `record ${id}: queue`);
  expect(typeof r.name === 'string', `record ${id}: name is not a string`);
  expect(Number.isInteger(r.maxAttempts), `record ${id}: maxAttempts is not an integer`);
  expect(Number.isInteger(r.enqueuedAt), `record ${id}: enqueuedAt is not an integer`);
  expect(Array.isArray(r.attempts), `record ${id}: attempts is not an array`);
  for (const a of r.attempts) {
    expect(Number.isInteger(a.n) && a.n >= 1, `record ${id}: an attempt without a positive n`);
    expect(Number.isInteger(a.startedAt), `record ${id}: attempt ${a.n} has no startedAt`);
  }
  if (r.status !== 'cancelled') expect(Number.isInteger(r.finishedAt), `record ${id}: a ${r.status} record has no finishedAt`);
}
