/**
 * Prometheus metrics of one naq process (prom-client). Counters and histograms are fed by the
 * job path as jobs start and end (JobMetrics); queue depths, workers, the connection and the
 * event log are read when scraped, so an idle process does no work for them.
 */
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { QueueStats } from '../model/job.js';

/** What the job path reports; every call is a few label lookups, no I/O. */
export interface JobMetrics {
  started(queue: string, name: string, waitMs: number): void;
  ended(queue: string, name: string, outcome: JobOutcome, durationMs: number): void;
}

export type JobOutcome = 'completed' | 'failed' | 'retried' | 'cancelled';

/** What a scrape reads from the running process. */
export interface MetricsSource {
  listQueues(): Promise<QueueStats[]>;
  connected(): boolean;
  eventsDropped(): number;
  supervisorRestarts(): number;
}

/** Seconds: from a millisecond to ten minutes, for job run times and waits. */
const BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600];

/**
 * prom-client (a CommonJS package of some 30 modules) is required by the first NaqMetrics, not
 * by every process that imports naq: a one-shot CLI command or an app without metrics never
 * loads it.
 */
let promClient: typeof PromClient | undefined;
function prom(): typeof PromClient {
  return (promClient ??= createRequire(import.meta.url)('prom-client') as typeof PromClient);
}

export class NaqMetrics implements JobMetrics {
  readonly registry = new (prom().Registry)();
  readonly #source: MetricsSource;
  readonly #jobs = new (prom().Gauge)({ name: 'naq_jobs', help: 'Jobs by queue and state (pending, in_flight, dead), from the server', labelNames: ['queue', 'state'] as const });
  readonly #paused = new (prom().Gauge)({ name: 'naq_queue_paused', help: '1 when an operator paused the queue', labelNames: ['queue'] as const });
  readonly #workers = new (prom().Gauge)({ name: 'naq_workers', help: 'Live workers by queue, from their heartbeats', labelNames: ['queue'] as const });
  readonly #up = new (prom().Gauge)({ name: 'naq_connection_up', help: '1 while this process is connected to NATS' });
  readonly #dropped = new (prom().Gauge)({ name: 'naq_events_dropped', help: 'Events this process dropped because NATS was away too long (since start)' });
  readonly #restarts = new (prom().Gauge)({ name: 'naq_supervisor_restarts', help: 'Child actors the supervisor restarted (since start)' });
  readonly #ended = new (prom().Counter)({ name: 'naq_jobs_ended_total', help: 'Job attempts this process ended, by queue, handler name and outcome', labelNames: ['queue', 'name', 'outcome'] as const });
  readonly #duration = new (prom().Histogram)({ name: 'naq_job_duration_seconds', help: 'Run time of job attempts, by queue and handler name', labelNames: ['queue', 'name'] as const, buckets: BUCKETS });
  readonly #wait = new (prom().Histogram)({ name: 'naq_job_wait_seconds', help: 'From enqueue to the start of an attempt, by queue', labelNames: ['queue'] as const, buckets: BUCKETS });

  constructor(source: MetricsSource) {
    this.#source = source;
    for (const m of [this.#jobs, this.#paused, this.#workers, this.#up, this.#dropped, this.#restarts, this.#ended, this.#duration, this.#wait]) this.registry.registerMetric(m);
  }

  started(queue: string, _name: string, waitMs: number): void {
    this.#wait.observe({ queue }, Math.max(0, waitMs) / 1000);
  }

  ended(queue: string, name: string, outcome: JobOutcome, durationMs: number): void {
    this.#ended.inc({ queue, name, outcome });
    this.#duration.observe({ queue, name }, Math.max(0, durationMs) / 1000);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition, with what is read from the server refreshed first. */
  async text(): Promise<string> {
    this.#up.set(this.#source.connected() ? 1 : 0);
    this.#dropped.set(this.#source.eventsDropped());
    this.#restarts.set(this.#source.supervisorRestarts());
    const queues = await this.#source.listQueues().catch(() => null);
    if (queues) {
      // Queues that went away must not linger with their last values.
      this.#jobs.reset();
      this.#paused.reset();
      this.#workers.reset();
      for (const q of queues) {
        this.#jobs.set({ queue: q.queue, state: 'pending' }, q.pending);
        this.#jobs.set({ queue: q.queue, state: 'in_flight' }, q.inFlight);
        this.#jobs.set({ queue: q.queue, state: 'dead' }, q.dead);
        this.#paused.set({ queue: q.queue }, q.paused ? 1 : 0);
        this.#workers.set({ queue: q.queue }, q.workers);
      }
    }
    return this.registry.metrics();
  }
}
