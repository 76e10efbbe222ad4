/**
 * The live side of the dashboard: one tail of the event log for the whole process (feeding the
 * throughput chart and telling browsers what changed) and the server-sent-event streams the
 * pages listen to. Browsers get a `tick` with every queue's counts each second (less often when
 * reading them is slow, see #tick), and `jobs` with the job events of the last moment, then
 * fetch what their page shows.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from '../core/log.js';
import type { QueueStats } from '../model/job.js';
import type { EventSubscription } from '../actors/events/queries.js';
import type { DashboardBackend } from './backend.js';
import { Throughput, WINDOW_MS } from './throughput.js';

const TICK_MS = 1000;
const JOB_EVENTS_FLUSH_MS = 250;
const MAX_JOB_EVENTS_PER_MESSAGE = 200;
/** Far beyond what a busy queue does in 15 minutes of a demo, well short of an unbounded scan. */
const SEED_LIMIT = 200_000;
const RESUBSCRIBE_MS = 2000;

export interface JobEventBrief {
  type: string;
  queue: string;
  jobId?: string;
}

export class LiveFeed {
  readonly throughput = new Throughput();
  readonly #clients = new Set<ServerResponse>();
  #pending: JobEventBrief[] = [];
  #flushTimer: NodeJS.Timeout | null = null;
  #tickTimer: NodeJS.Timeout | null = null;
  #subscription: EventSubscription | null = null;
  #stopped = false;
  #lastQueues: QueueStats[] | null = null;
  /** No read of the counts before then (see #tick); Infinity while one runs. */
  #notBefore = 0;

  constructor(
    private readonly backend: DashboardBackend,
    private readonly logger: Logger,
    /** How a message is written: the server's, which scrubs the config's secrets. */
    private readonly encode: (data: unknown) => string = JSON.stringify,
  ) {}

  start(): void {
    void this.#follow(true);
  }

  async #follow(seed: boolean): Promise<void> {
    let following = false;
    while (!this.#stopped) {
      try {
        const since = Date.now();
        this.#subscription = await this.backend.subscribe({});
        following = true;
        if (this.#stopped) break;
        // Subscribed first, so nothing falls between the history and the tail.
        if (seed) void this.#seed(since);
        seed = false;
        for await (const event of this.#subscription) {
          this.throughput.add(event);
          if (!event.type.startsWith('events.')) {
            this.#queue({ type: event.type, queue: event.queue, ...(event.jobId ? { jobId: event.jobId } : {}) });
          }
        }
      } catch (error) {
        // Not yet connected is the normal start of a dashboard; losing a tail it had is worth a warning.
        if (!this.#stopped) this.logger[following ? 'warn' : 'debug']({ err: error }, 'dashboard: the event log tail stopped; following it again shortly');
        following = false;
      }
      if (!this.#stopped) await new Promise((r) => setTimeout(r, RESUBSCRIBE_MS).unref());
    }
  }

  async #seed(until: number): Promise<void> {
    try {
      const events = await this.backend.history({ since: until - WINDOW_MS, types: ['job.completed', 'job.failed'], limit: SEED_LIMIT });
      for (const event of events) if (event.ts < until) this.throughput.add(event);
    } catch (error) {
      this.logger.warn({ err: error }, 'dashboard: could not read the last 15 minutes of the event log; the chart starts empty');
    }
  }

  #queue(brief: JobEventBrief): void {
    if (this.#clients.size === 0) return;
    if (this.#pending.length < MAX_JOB_EVENTS_PER_MESSAGE) this.#pending.push(brief);
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = null;
      const events = this.#pending;
      this.#pending = [];
      this.#broadcast('jobs', events);
    }, JOB_EVENTS_FLUSH_MS);
  }

  /** Adds a browser's event stream; it gets the last counts at once. */
  attach(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    this.#clients.add(res);
    res.on('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0 && this.#tickTimer) {
        clearInterval(this.#tickTimer);
        this.#tickTimer = null;
      }
    });
    if (this.#lastQueues) this.#send(res, 'tick', { queues: this.#lastQueues });
    this.#tickTimer ??= setInterval(() => void this.#tick(), TICK_MS);
  }

  /**
   * Every queue's counts cost the server a pass over the queue's backlog per consumer (it
   * counts each one's pending jobs): on a long backlog, longer than a tick. Ticks that
   * overlapped would stack those passes until the server did nothing else, and back-to-back
   * reads would keep it busy: after a read, the next waits three times as long as it took, so
   * reading the counts takes at most about a quarter of the server's time.
   */
  async #tick(): Promise<void> {
    const started = Date.now();
    if (started < this.#notBefore) return;
    this.#notBefore = Number.POSITIVE_INFINITY;
    try {
      this.#lastQueues = await this.backend.listQueues();
      this.#broadcast('tick', { queues: this.#lastQueues });
    } catch (error) {
      this.#broadcast('tick', { error: error instanceof Error ? error.message : String(error) });
    } finally {
      const now = Date.now();
      this.#notBefore = now + 3 * (now - started);
    }
  }

  #broadcast(event: string, data: unknown): void {
    for (const res of this.#clients) this.#send(res, event, data);
  }

  #send(res: ServerResponse, event: string, data: unknown): void {
    res.write(`event: ${event}\ndata: ${this.encode(data)}\n\n`);
  }

  stop(): void {
    this.#stopped = true;
    this.#subscription?.stop();
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    if (this.#tickTimer) clearInterval(this.#tickTimer);
    for (const res of this.#clients) res.end();
    this.#clients.clear();
  }
}
