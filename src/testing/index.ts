/**
 * `naq/testing`: testing your handlers, two ways.
 *
 * **Without NATS** — `createTestNaq({ handlers, middleware?, clock?, config? })` runs jobs in
 * this process through the real worker's job path (src/actors/worker/job-path.ts), on an
 * in-memory queue: the same retries and backoff (fixed, exponential, list; jitter), timeouts
 * (`JobTimeoutError` on the handler's `AbortSignal`), cancel (delayed, waiting, pending and
 * running jobs), dependencies (`dependsOn`: runs after all of them completed; fails naming the
 * one that failed or was cancelled, and a cycle is refused at enqueue), delayed jobs
 * (`enqueueIn`, `enqueueAt`), results and job logs in the record, dead letters after the last
 * attempt, unknown handlers (dead-lettered at once), middleware, priorities (strict, per
 * queue), `ctx.rateLimit` (the queue is held), idempotent enqueue of a chosen `jobId`, flows
 * (`enqueueFlow`: a parent after its children, `ctx.childResults()` / `ctx.childFailures()`,
 * each `onFailure`, `getFlow`, cancel of a waiting parent) and batches (`enqueueBatch`, the
 * completion job once with `ctx.batch`, `getBatch`), planned as the real ones are, and job
 * option validation (`buildJob`: a bad option throws the error production throws). Time is a
 * `ManualClock` by default: `advance(ms)`, `runUntilIdle()`, `drain()` and `waitFor(id)` move
 * it, so backoff waits, delays and timeouts take no real time.
 *
 * **Against a real server** — `startTestServer()` starts a throwaway nats-server (`-js`, a
 * free port, a temp store, killed when the process exits) for `createNaq({ nats: { url },
 * roles: ['worker'] }, { handlers })`.
 *
 * How the test mode differs from the real system:
 * - One process, one worker per queue with `worker.concurrency` slots, for every queue a job
 *   names (`worker.queues` is not consulted); no NATS, so nothing of
 *   the layout exists (streams, buckets, consumers, the event log's stream). No redelivery
 *   after a crash: a delivery is retried after `worker.ackWaitMs` only when its outcome could
 *   not be recorded, which memory never refuses.
 * - Not supported: dedupe windows (the `dedupe` option throws), group turns and group limits
 *   (a job's `group` is recorded but takes no turn; a grouped job's rate limit holds nothing),
 *   queue rate limits and pause (`setQueueLimit`, `pauseQueue`), recurring schedules, listings
 *   and the admin calls (`listJobs`, `retryDead`, `promote`, `removeJob`, …), `jobData`, the
 *   event log's queries (the emitted events are in `events`), metrics and tracing.
 * - A flow or batch is created in one step (memory cannot fail midway, so there is nothing to
 *   take back). Handlers run in the test's own process: `worker.sandbox` does not apply.
 * - A delayed job starts exactly at its time (the real scheduler leader fires it within its
 *   tick); there is no leader election.
 * - `stop()` aborts running jobs at once (no drain grace period). `waitFor` of an id never
 *   enqueued throws NotFoundError at once (a real one waits for it until its timeout).
 * - Enqueue times come from the test clock; two enqueues of one chosen id at the same virtual
 *   millisecond get times one millisecond apart, so they stay two enqueues.
 */
export { createTestNaq, type TestNaq, type TestNaqOptions, type DrainOptions, type TestEvent } from './test-naq.js';
export { ManualClock, settle } from './clock.js';
export { startTestServer, freePort, type TestServer, type TestServerOptions } from './server.js';
export type { Clock } from '../core/clock.js';
