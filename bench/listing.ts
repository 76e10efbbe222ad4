/**
 * The listing line: pages of 50 among 100,000 stored job records (issue 11's target: under
 * 200 ms). The records and their index batches are written straight in the wire format
 * (docs/wire-format.md, sections 5 and 11), as workers would have left them, which takes
 * seconds instead of running 100,000 jobs.
 */
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CreateNaqLike } from './naq-contract.js';
import { resetJetStream, wallNow } from './util.js';

export const LISTING_RECORDS = 100_000;
const QUEUE = 'bench';
/** One record in this many is a failed job of another name: a rare state to find. */
const RARE_EVERY = 100;
const TIMES = 5;
const BATCH = 25;
const TARGET_MS = 200;

export interface ListingResult {
  records: number;
  /** Median milliseconds per kind of page. */
  pages: Array<{ label: string; ms: number }>;
}

async function fill(nc: NatsConnection): Promise<void> {
  const js = jetstream(nc);
  const now = Date.now();
  for (let i = 0; i < LISTING_RECORDS; i += 2000) {
    const writes: Promise<unknown>[] = [];
    // A busy worker writes a batch per event-loop turn: tens of jobs each.
    const batches = new Map<string, Array<[string, number]>>();
    for (let j = i; j < Math.min(i + 2000, LISTING_RECORDS); j++) {
      const id = `job-${String(j).padStart(7, '0')}`;
      const failed = j % RARE_EVERY === 0;
      const name = failed ? 'flaky' : 'noop';
      const enqueuedAt = now - LISTING_RECORDS + j;
      const record = {
        v: 1,
        id,
        name,
        queue: QUEUE,
        status: failed ? 'failed' : 'completed',
        maxAttempts: 1,
        attempts: [{ n: 1, startedAt: enqueuedAt + 1, finishedAt: enqueuedAt + 2, workerId: 'bench', ...(failed ? { error: { name: 'Error', message: 'down' } } : {}) }],
        enqueuedAt,
        startedAt: enqueuedAt + 1,
        finishedAt: enqueuedAt + 2,
        ...(failed ? { error: { name: 'Error', message: 'down' } } : { result: null }),
      };
      writes.push(js.publish(`$KV.naq_jobs.${id}`, JSON.stringify(record)));
      const subject = `naq.index.${QUEUE}.${record.status}.${name}`;
      const batch = batches.get(subject) ?? [];
      batches.set(subject, batch);
      batch.push([id, enqueuedAt]);
      if (batch.length === BATCH) writes.push(js.publish(subject, JSON.stringify(batch.splice(0))));
    }
    for (const [subject, batch] of batches) if (batch.length) writes.push(js.publish(subject, JSON.stringify(batch)));
    await Promise.all(writes);
  }
}

type Lister = NonNullable<ReturnType<CreateNaqLike>['listJobs']>;

async function timed(list: Lister, filter: Parameters<Lister>[0]): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < TIMES; i++) {
    const t0 = wallNow();
    const page = await list(filter);
    samples.push(wallNow() - t0);
    if (page.jobs.length !== 50) throw new Error(`listJobs(${JSON.stringify(filter)}) answered ${page.jobs.length} rows, not 50`);
  }
  return samples.sort((a, b) => a - b)[Math.floor(TIMES / 2)]!;
}

export async function runListing(createNaq: CreateNaqLike, jsm: JetStreamManager, nc: NatsConnection, url: string): Promise<ListingResult> {
  await resetJetStream(jsm);
  const naq = createNaq({ nats: { url }, log: { level: 'warn' } });
  await naq.start({ timeoutMs: 10_000 });
  try {
    const list = naq.listJobs;
    if (!list) throw new Error('this naq has no listJobs');
    await fill(nc);
    let cursor: string | null = null;
    for (let i = 0; i < 19; i++) cursor = (await list({ queue: QUEUE, state: 'completed', ...(cursor ? { cursor } : {}) })).cursor;
    const pages = [
      { label: 'completed, first page', ms: await timed(list, { queue: QUEUE, state: 'completed' }) },
      { label: 'completed, 20th page', ms: await timed(list, { queue: QUEUE, state: 'completed', cursor: cursor! }) },
      { label: `failed (1 in ${RARE_EVERY})`, ms: await timed(list, { queue: QUEUE, state: 'failed' }) },
      { label: `by name (1 in ${RARE_EVERY})`, ms: await timed(list, { queue: QUEUE, name: 'flaky' }) },
      { label: 'every state', ms: await timed(list, { queue: QUEUE }) },
    ];
    return { records: LISTING_RECORDS, pages };
  } finally {
    await naq.stop();
    await resetJetStream(jsm);
  }
}

export function listingLines(r: ListingResult): string[] {
  const slowest = Math.max(...r.pages.map((p) => p.ms));
  return [
    `naq listJobs, a page of 50 among ${r.records} stored records (median of ${TIMES}): ` +
      r.pages.map((p) => `${p.label} ${p.ms.toFixed(1)} ms`).join(', ') +
      ` (target < ${TARGET_MS} ms: ${slowest < TARGET_MS ? 'PASS' : 'MISS'})`,
  ];
}
