/**
 * The job path's collaborators in memory: `memoryIO()` is a `JobIO` that keeps records, dead
 * letters, events and index entries in plain collections, and `fakeDelivery()` a `Delivery`
 * that remembers what was done with it. The job path's unit tests (test/unit/job-path.test.ts)
 * check each step against them; the test mode (test-naq.ts) runs real jobs on them.
 */
import type { Delivery } from '../actors/worker/delivery.js';
import type { JobIO } from '../actors/worker/job-io.js';
import type { NaqEventInput } from '../model/event.js';
import type { IndexEntry } from '../model/job-index.js';
import type { DeadLetter, JobRecord } from '../model/job.js';

const decoder = new TextDecoder();

/** The largest message a default nats-server takes (max_payload, 1 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_576;

export interface MemoryIO {
  io: JobIO;
  /** The jobs bucket: the latest record of each id. */
  records: Map<string, JobRecord>;
  /** Every record write, in order. */
  writes: JobRecord[];
  /** The dead-letter stream; a letter's sequence is its index + 1. */
  dead: DeadLetter[];
  events: NaqEventInput[];
  indexed: IndexEntry[];
  /** Index entries, record writes and parent notices, in the order they were made ("index completed", "record retrying", "told failed"). */
  order: string[];
  /** `hold(ms)` calls of the queue, and of groups as [ms, group]. */
  holds: number[];
  groupHolds: Array<[number, string]>;
  /** Ids of grouped jobs that reached their final outcome. */
  groupsDone: string[];
  /** Notices to flow parents: `<parent> <child> <status>`, in order (with the acks, in `order`). */
  told: string[];
  /** Sends the acks queued with `ackLater` (the real worker sends them with its next batch of writes). */
  flush(): void;
  /** The event types emitted so far. */
  types(): string[];
}

/** Records and dead letters in memory; acks queued with `ackLater` go out when `flush()` is called. */
export function memoryIO(): MemoryIO {
  const records = new Map<string, JobRecord>();
  const writes: JobRecord[] = [];
  const dead: DeadLetter[] = [];
  const events: NaqEventInput[] = [];
  const acks: Array<{ ack(): void }> = [];
  const indexed: IndexEntry[] = [];
  const holds: number[] = [];
  const groupHolds: Array<[number, string]> = [];
  const groupsDone: string[] = [];
  const told: string[] = [];
  const order: string[] = [];
  const io: JobIO = {
    // A copy, as a read from the bucket would be: the reader cannot change what is stored.
    readRecord: async (id) => {
      const record = records.get(id);
      return record ? structuredClone(record) : null;
    },
    writeRecord: async (id, bytes) => {
      const record = JSON.parse(decoder.decode(bytes)) as JobRecord;
      records.set(id, record);
      writes.push(record);
      order.push(`record ${record.status}`);
    },
    index: (entry) => {
      indexed.push(entry);
      order.push(`index ${entry.state}`);
    },
    deadLetter: async (_queue, bytes) => {
      dead.push(JSON.parse(decoder.decode(bytes)) as DeadLetter);
      return dead.length;
    },
    ackLater: (msg) => void acks.push(msg),
    emit: (event) => void events.push(event),
    maxMessageBytes: () => DEFAULT_MAX_MESSAGE_BYTES,
    hold: (ms, group) => void (group === undefined ? holds.push(ms) : groupHolds.push([ms, group])),
    groupDone: (job) => void groupsDone.push(job.id),
    tellParent: async (parent, child, status) => {
      told.push(`${parent} ${child} ${status}`);
      order.push(`told ${status}`);
    },
    // No flow parent here has children: a test that needs some sets its own.
    children: async () => ({ results: {}, failures: {} }),
  };
  const flush = () => acks.splice(0).forEach((m) => m.ack());
  return { io, records, writes, dead, events, indexed, order, holds, groupHolds, groupsDone, told, flush, types: () => events.map((e) => e.type) };
}

/** What a fake delivery does besides remembering the call. */
export interface DeliveryHooks {
  ack?(): void;
  nak?(delayMs: number | undefined): void;
}

/** A delivery that remembers what was done with it, in `calls`: 'ack', 'nak', 'nak 750', 'working'. */
export function fakeDelivery(data: Uint8Array, subject: string, hooks: DeliveryHooks = {}): Delivery & { calls: string[] } {
  const calls: string[] = [];
  return {
    data,
    subject,
    calls,
    ack: () => {
      calls.push('ack');
      hooks.ack?.();
    },
    nak: (delayMs?: number) => {
      calls.push(delayMs === undefined ? 'nak' : `nak ${delayMs}`);
      hooks.nak?.(delayMs);
    },
    working: () => void calls.push('working'),
  };
}
