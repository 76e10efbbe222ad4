/**
 * Reading a stream by sequence ranges with the server filtering by subject: forwards in
 * windows, and backwards (newest first), which nats-server 2.9 cannot do by itself.
 */
import { DeliverPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { OperationTimeoutError } from '../../core/errors.js';
import type { NaqContext } from './context.js';

/** How long a window read may go without a message before it is given up. */
const IDLE_MS = 5000;

/** A stream message, copied out of the consumer's buffer. */
export interface Stored {
  seq: number;
  subject: string;
  data: Uint8Array;
  /** When the server stored it (ms). */
  time: number;
}

export interface BackPage<T> {
  items: T[];
  /** Nothing older is left. */
  done: boolean;
  /** Where to resume when every item was taken and it is not done: the last item's position, or a sequence to read below. */
  next: unknown;
}

interface Bounds {
  stream: string;
  first: number;
  last: number;
  messages: number;
  /** A work-queue stream takes no second consumer on its subjects: it is read message by message. */
  workqueue: boolean;
}

/** The stream's first and last sequences, or null when it does not exist. */
export async function streamBounds(ctx: NaqContext, stream: string): Promise<Bounds | null> {
  const jsm = await ctx.jsm();
  try {
    const info = await jsm.streams.info(stream);
    return { stream, first: info.state.first_seq, last: info.state.last_seq, messages: info.state.messages, workqueue: info.config.retention === RetentionPolicy.Workqueue };
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return null;
    throw error;
  }
}

/**
 * The newest `want` messages on `subject` below sequence `before`, converted (null: skipped),
 * newest first, each item resuming at its own position (`positionOf`). It reads windows that end
 * where the last one started, growing with how sparse the matches were; the server does the
 * subject filtering, so a window delivers only what matches. After `budget` sequences it
 * answers what it found, not done, to be resumed.
 */
export async function scanBack<T>(
  ctx: NaqContext,
  stream: string,
  subject: string,
  before: number | undefined,
  want: number,
  options: { budget: number; firstSpan: number },
  convert: (newestFirst: Stored[], need: number) => Promise<Array<T | null>>,
  positionOf: (item: T) => unknown,
): Promise<BackPage<T>> {
  const bounds = await streamBounds(ctx, stream);
  if (!bounds || bounds.messages === 0) return { items: [], done: true, next: 0 };
  let end = Math.min(before ?? Number.POSITIVE_INFINITY, bounds.last + 1);
  let span = options.firstSpan;
  let scanned = 0;
  const items: T[] = [];
  while (end > bounds.first) {
    const start = Math.max(bounds.first, end - span);
    const msgs = await readRange(ctx, bounds, subject, start, end);
    scanned += end - start;
    msgs.reverse();
    let found = 0;
    for (const item of await convert(msgs, want - items.length)) {
      if (item === null) continue;
      items.push(item);
      found++;
      if (items.length === want) return { items, done: false, next: positionOf(item) };
    }
    end = start;
    if (scanned >= options.budget) break;
    // Sparse matches: a wider window next; dense ones: just wide enough for what is left.
    const density = found / span;
    span = density > 0 ? Math.min(span * 8, Math.max(span, Math.ceil(((want - items.length) / density) * 1.5))) : span * 8;
  }
  return { items, done: end <= bounds.first, next: end };
}

/** Visits the messages on `subject` from the oldest, a window at a time; `visit` returns false to stop. */
export async function scanForward(ctx: NaqContext, stream: string, subject: string, visit: (window: Stored[]) => Promise<boolean>, window = 1000): Promise<void> {
  const bounds = await streamBounds(ctx, stream);
  if (!bounds || bounds.messages === 0) return;
  if (bounds.workqueue) {
    // Each get jumps to the next match: windows of `window` matches, not of sequences, so a
    // long run of other subjects costs one get, not one per `window` sequences.
    for (let start = bounds.first; start <= bounds.last; ) {
      const msgs = await readRangeByGets(ctx, bounds.stream, subject, start, bounds.last + 1, window);
      if (!msgs.length || !(await visit(msgs))) return;
      start = msgs.at(-1)!.seq + 1;
    }
    return;
  }
  for (let start = bounds.first; start <= bounds.last; start += window) {
    const msgs = await readRange(ctx, bounds, subject, start, Math.min(start + window, bounds.last + 1));
    if (msgs.length && !(await visit(msgs))) return;
  }
}

/** The messages on `subject` with sequences in [start, end), oldest first. */
export function readRange(ctx: NaqContext, bounds: Bounds, subject: string, start: number, end: number): Promise<Stored[]> {
  return bounds.workqueue ? readRangeByGets(ctx, bounds.stream, subject, start, end) : readRangeByConsumer(ctx.nc, bounds.stream, subject, start, end);
}

/** One stream message get per message, each asking for the next one on the subject (server 2.9+); at most `max`. */
async function readRangeByGets(ctx: NaqContext, stream: string, subject: string, start: number, end: number, max = Number.POSITIVE_INFINITY): Promise<Stored[]> {
  const jsm = await ctx.jsm();
  const out: Stored[] = [];
  for (let seq = start; seq < end && out.length < max; ) {
    let m;
    try {
      // next_by_subj is in the server's API (2.9) though not in the client's request type.
      m = await jsm.streams.getMessage(stream, { seq, next_by_subj: subject } as unknown as { seq: number });
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound) break;
      throw error;
    }
    if (!m || m.seq >= end) break;
    out.push({ seq: m.seq, subject: m.subject, data: m.data, time: m.time.getTime() });
    seq = m.seq + 1;
  }
  return out;
}

async function readRangeByConsumer(nc: NatsConnection, stream: string, subject: string, start: number, end: number): Promise<Stored[]> {
  const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start });
  const out: Stored[] = [];
  try {
    if ((await consumer.info(true)).num_pending === 0) return out;
    const messages = await consumer.consume({ max_messages: Math.min(1000, Math.max(16, end - start)) });
    let last = Date.now();
    const idle = setInterval(() => {
      if (Date.now() - last > IDLE_MS) messages.stop(new OperationTimeoutError(`reading ${stream}`, IDLE_MS));
    }, 250);
    try {
      for await (const m of messages) {
        last = Date.now();
        if (m.seq >= end) break;
        out.push({ seq: m.seq, subject: m.subject, data: m.data.slice(), time: m.time.getTime() });
        if (m.info.pending === 0) break;
      }
    } finally {
      clearInterval(idle);
      messages.stop();
    }
  } finally {
    consumer.delete().catch(() => {});
  }
  return out;
}
