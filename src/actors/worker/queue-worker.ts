/**
 * Consumes one queue: pulls its priority lanes (the queue's shared durable consumers, one per
 * level, through lanes.ts), runs up to `concurrency` jobs at once through the job path
 * (job-path.ts), most urgent first, sends heartbeats and cancel notices, and stops loudly when
 * the server refuses a subject it needs.
 */
import { hostname } from 'node:os';
import type { JsMsg } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { systemClock, type Clock } from '../../core/clock.js';
import type { PermissionDeniedError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { encodeJson, type WorkerInfo } from '../../model/job.js';
import type { JobMetrics } from '../../metrics/metrics.js';
import { toPermissionDenied } from '../../core/permissions.js';
import type { NaqContext } from '../nats/context.js';
import { apiTimeoutMs, missingConsumers } from '../nats/jetstream.js';
import { deliveryCount, type Delivery } from './delivery.js';
import type { Handlers } from './handler.js';
import { JobPath } from './job-path.js';
import { natsJobIO } from './nats-job-io.js';
import { QueueSettingsWatch } from './queue-settings-watch.js';
import { LanePuller } from './lanes.js';
import { laneToken, PRIORITIES } from '../../model/layout.js';
import { RateGate, type Grant } from './rate-gate.js';

export interface QueueWorkerSettings {
  concurrency: number;
  ackWaitMs: number;
  activeAfterMs: number;
  /** Lines of ctx.log kept with a job's record. */
  maxLogLines?: number;
  metrics?: JobMetrics;
}

const RESOLVED = Promise.resolve();

/** How long a pull request lives on the server (see #startPulling for why it is short). */
const PULL_EXPIRES_MS = 5000;

export class QueueWorker {
  readonly id: string;
  readonly #ctx: NaqContext;
  readonly #queue: string;
  readonly #settings: QueueWorkerSettings;
  readonly #log: Logger;
  readonly #path: JobPath;
  readonly #startedAt: number;
  /** Pulls the queue's lanes while running; replaced by every pause and resume. */
  #puller: LanePuller | null = null;
  #maxAckPending = 1;
  #cancelSub: Subscription | null = null;
  /** Deliveries taken and not yet through the job path (their outcome may be on its way). */
  #inFlight = 0;
  /** Deliveries taken whose handler has not settled yet: at most `concurrency`. */
  #busy = 0;
  /** A #fill is queued for the next microtask (see #handlerDone). */
  #fillQueued = false;
  #status: 'running' | 'paused' | 'draining' | 'stopped' = 'paused';
  #idle: (() => void) | null = null;
  #onError: ((error: Error) => void) | undefined;
  #denied: PermissionDeniedError | undefined;
  #unlisten: (() => void) | undefined;
  /** The link is up (RESUME came, PAUSE did not follow). */
  #linkUp = false;
  /** An operator paused the queue. */
  #held = false;
  /** The queue's pause, rate limit and hold, followed from its settings. */
  readonly #settingsWatch: QueueSettingsWatch;
  /** Rate limits and holds: deliveries wait here before they start (only while one is set). */
  readonly #gate: RateGate;
  /** Looking for the consumers after an unanswered pull (one look at a time). */
  #checking = false;

  constructor(ctx: NaqContext, queue: string, handlers: Handlers, settings: QueueWorkerSettings, log: Logger, clock: Clock = systemClock) {
    this.#ctx = ctx;
    this.#queue = queue;
    this.#settings = settings;
    this.#log = log;
    this.#startedAt = clock.now();
    this.id = `${hostname()}-${process.pid}-${queue}`.replace(/[^A-Za-z0-9_=-]/g, '_');
    this.#path = new JobPath({
      queue,
      workerId: this.id,
      handlers,
      ackWaitMs: settings.ackWaitMs,
      activeAfterMs: settings.activeAfterMs,
      ...(settings.maxLogLines !== undefined ? { maxLogLines: settings.maxLogLines } : {}),
      clock,
      io: natsJobIO(ctx, (ms, group) => this.#settingsWatch.hold(ms, group)),
      log,
      onRefused: (error) => this.#refused(error),
      onHandlerDone: () => this.#handlerDone(),
      ...(settings.metrics ? { metrics: settings.metrics } : {}),
    });
    this.#gate = new RateGate({
      kv: () => ctx.storage.ratesKv(),
      key: queue,
      ackWaitMs: settings.ackWaitMs,
      now: () => clock.now(),
      log,
      start: (msg, grant) => this.#startAdmitted(msg, grant),
    });
    this.#settingsWatch = new QueueSettingsWatch({ ctx, queue, workerId: this.id, gate: this.#gate, log, onRefused: (error) => this.#refused(error) });
  }

  get inFlight() {
    return this.#inFlight;
  }
  get processed() {
    return this.#path.processed;
  }

  /**
   * Cancel notices are heard; refusals are watched. Does not pull yet. The queue's consumers
   * are made first, by whoever starts it (the worker machine's `setup`, logic.ts): made here
   * again, each start asked the server twice for what every consumer info costs it.
   * `maxAckPending` is what they are made again with if they disappear.
   */
  async prepare(maxAckPending: number): Promise<void> {
    this.#maxAckPending = maxAckPending;
    const ctx = this.#ctx;
    const consumers = PRIORITIES.map((p) => ctx.layout.consumerName(this.#queue, p));
    const ackPrefixes = consumers.map((c) => `$JS.ACK.${ctx.layout.jobsStream}.${c}.`);
    const pulls = new Set(consumers.map((c) => `$JS.API.CONSUMER.MSG.NEXT.${ctx.layout.jobsStream}.${c}`));
    const cancel = ctx.layout.cancelSubject(this.#queue);
    this.#unlisten = ctx.publisher.onPermissionError((error) => {
      if (pulls.has(error.subject) || error.subject === cancel || ackPrefixes.some((a) => error.subject.startsWith(a))) this.#refused(error);
    });
    this.#cancelSub = ctx.nc.subscribe(cancel, {
      callback: (err, msg) => {
        if (err) {
          const denied = toPermissionDenied(err);
          if (denied) this.#refused(denied);
          return;
        }
        this.#path.cancel(msg.string());
      },
    });
  }

  /**
   * The queue is paused by an operator now (read once before the first pull, so a worker
   * started while paused never pulls); its rate limit and hold are taken up too.
   */
  readPaused(): Promise<boolean> {
    return this.#settingsWatch.readPaused();
  }

  /** Follows the queue's pause setting: `onChange` gets its current value, then every change. */
  watchPaused(onChange: (paused: boolean) => void): void {
    this.#settingsWatch.watchPaused(onChange);
  }

  /** The link is up: pull, unless an operator holds the queue. */
  resume(onError: (error: Error) => void): void {
    this.#linkUp = true;
    this.#onError = onError;
    this.#startPulling();
  }

  /** An operator paused the queue: stop taking jobs; running ones finish. */
  hold(): void {
    this.#held = true;
    if (this.#status === 'running') this.#status = 'paused';
    this.#stopPulling();
  }

  /** The operator's pause was lifted: pull again if the link is up. */
  release(): void {
    this.#held = false;
    if (this.#linkUp) this.#startPulling();
  }

  #startPulling(): void {
    const onError = this.#onError;
    if (!onError || this.#held || this.#status === 'draining' || this.#status === 'stopped' || this.#puller) return;
    if (this.#denied) {
      onError(this.#denied);
      return;
    }
    this.#status = 'running';
    this.#path.resumed();
    const ctx = this.#ctx;
    const puller: LanePuller = new LanePuller({
      nc: ctx.nc,
      apiPrefix: '$JS.API',
      stream: ctx.layout.jobsStream,
      subjectPrefix: `${ctx.layout.prefix}.jobs.`,
      lanes: PRIORITIES.map((p) => ({ token: laneToken(this.#queue, p), consumer: ctx.layout.consumerName(this.#queue, p) })),
      // At most `concurrency` held per lane beyond those running, so a held job's ack_wait is
      // not eaten up waiting for a slot (and they are kept alive while they wait).
      cap: this.#settings.concurrency,
      ackWaitMs: this.#settings.ackWaitMs,
      // Pull requests live on the consumer's leader. When a cluster moves that leader (its node
      // died), they vanish without a word; a request not heard from a second past its expiry is
      // sent again, so a short expiry bounds that stall (~6 s), for one pull per lane every 5 s
      // when the queue is idle.
      expiresMs: PULL_EXPIRES_MS,
      now: () => Date.now(),
      onReady: this.#fill,
      defer: (send) => ctx.publisher.later(send),
      onMissing: (error) => this.#missing(puller, error),
      onLost: () => void this.#checkConsumers(puller),
      onError: (error) => {
        if (this.#puller !== puller) return;
        const denied = toPermissionDenied(error);
        if (denied) return this.#refused(denied);
        this.#pullFailed(error);
      },
    });
    this.#puller = puller;
    puller.start();
  }

  /** The puller found a lane's consumer or the stream gone: stop it, make them again, pull again. */
  #missing(puller: LanePuller, error: Error): void {
    if (this.#puller !== puller) return;
    this.#stopPulling();
    this.#recreate(error).then(
      () => this.#startPulling(),
      (e: unknown) => this.#pullFailed(e),
    );
  }

  /** A pull went unanswered: a lane's consumer or the stream may be gone (nothing would ever answer). By name: an info makes the server count the backlog. */
  async #checkConsumers(puller: LanePuller): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    const { nc, layout, config } = this.#ctx;
    const lanes = PRIORITIES.map((p) => layout.consumerName(this.#queue, p));
    try {
      const [missing] = await missingConsumers(nc, await this.#ctx.jsm(), layout.jobsStream, lanes, apiTimeoutMs(config));
      if (missing) this.#missing(puller, new Error(`consumer ${missing} not found after a pull went unanswered`));
    } catch (error) {
      // The server away, say: the next unanswered pull looks again.
      this.#log.debug({ err: error, queue: this.#queue }, 'could not check the queue consumers after an unanswered pull');
    } finally {
      this.#checking = false;
    }
  }

  #pullFailed(error: unknown): void {
    if (this.#status !== 'running') return;
    this.#stopPulling();
    this.#onError?.(error instanceof Error ? error : new Error(String(error)));
  }

  /** The link went down: stop pulling; jobs already running go on. */
  pause(): void {
    this.#linkUp = false;
    if (this.#status === 'running') this.#status = 'paused';
    this.#stopPulling();
    this.#path.verifyAfterRestart();
  }

  /** Starts the most urgent jobs held while slots are free (a job arrived, or one finished). */
  readonly #fill = () => {
    const puller = this.#puller;
    if (!puller) return;
    const concurrency = this.#settings.concurrency;
    // A slot is free once its handler settled, so the next job does not wait for the server's
    // answer to the outcome's write: at most 2 × concurrency deliveries are taken, running or
    // having their outcome written.
    while (this.#busy < concurrency && this.#inFlight < 2 * concurrency) {
      const msg = puller.take();
      if (!msg) return;
      this.#inFlight++;
      this.#busy++;
      if (this.#gate.active) this.#gate.admit(msg);
      // One handler pair, not .catch().finally(): a promise less per job on the hot path.
      else void this.#path.process(msg, deliveryCount(msg as unknown as JsMsg)).then(this.#released, this.#failedOnTheWay);
    }
  };

  /** Through the gate: started, unless pulling stopped meanwhile (then it goes back, as in #consume). */
  #startAdmitted(msg: Delivery, grant?: Grant): void {
    if (this.#status !== 'running') {
      msg.nak();
      this.#givenBack();
      return;
    }
    void this.#path.process(msg, deliveryCount(msg as unknown as JsMsg), grant).then(this.#released, this.#failedOnTheWay);
  }

  readonly #released = () => this.#release();

  /** A delivery that never reached the job path (the gate gave it back): its slot and its count. */
  readonly #givenBack = () => {
    this.#busy--;
    this.#release();
  };

  #handlerDone(): void {
    this.#busy--;
    // Not at once: this is called from inside the job path, whose job has yet to take its
    // finish time and send its outcome (the next handler's synchronous work would come first),
    // and deliveries that run no handler would recurse through #fill without a bound.
    if (this.#fillQueued) return;
    this.#fillQueued = true;
    // A reaction of a settled promise, not queueMicrotask (which makes an AsyncResource a call).
    RESOLVED.then(this.#fillSoon);
  }

  readonly #fillSoon = () => {
    this.#fillQueued = false;
    this.#fill();
  };

  /**
   * A write that failed on the way (the server away past its deadline): the job is not acked,
   * so it comes back after ack_wait. Never an unhandled rejection.
   */
  readonly #failedOnTheWay = (error: unknown) => {
    this.#release();
    const denied = toPermissionDenied(error);
    if (denied) this.#refused(denied);
    else this.#log.warn({ err: error }, 'job left unacknowledged; it will be redelivered');
  };

  /** The jobs stream or the queue's consumer is gone: make the layout and the consumer again. */
  async #recreate(error: unknown): Promise<void> {
    this.#log.warn({ err: error, queue: this.#queue }, "the jobs stream or this queue's consumer disappeared; recreating it");
    const storage = this.#ctx.storage;
    await storage.repairLayout(`consumer ${this.#ctx.layout.consumerName(this.#queue)}: ${(error as Error).message}`);
    await storage.ensureLayout();
    await storage.ensureConsumer(this.#queue, this.#maxAckPending);
  }

  #stopPulling() {
    // The puller goes first: a slot the gate gives back must not be filled from it again.
    const puller = this.#puller;
    this.#puller = null;
    puller?.stop();
    this.#gate.giveBack(this.#givenBack);
  }

  #release() {
    this.#inFlight--;
    if (this.#inFlight === 0 && this.#idle) this.#idle();
    else this.#fill();
  }

  /** Stops pulling and resolves once every running job has finished (or was given back). */
  drain(): Promise<void> {
    this.#status = 'draining';
    this.#stopPulling();
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#idle = resolve));
  }

  /** Grace period over: abort what still runs and NAK it, so another worker takes it at once. */
  nakRest(): void {
    this.#path.abandonAll();
    // Their handlers may never settle; the drain does not wait for them.
    if (this.#idle) this.#idle();
  }

  /** A subject this worker needs is refused: running on would only redeliver jobs for ever. */
  #refused(error: PermissionDeniedError) {
    if (this.#denied) return;
    this.#denied = error;
    this.#log.error({ err: error, subject: error.subject, queue: this.#queue }, `worker stops: ${error.message}`);
    this.#stopPulling();
    this.#onError?.(error);
  }

  async stop(): Promise<void> {
    this.#unlisten?.();
    this.#status = 'stopped';
    this.#path.stop();
    // The last jobs' index entries go out now, not after the link closes.
    this.#ctx.storage.flushIndex();
    this.#stopPulling();
    this.#cancelSub?.unsubscribe();
    this.#cancelSub = null;
    this.#settingsWatch.stop();
    this.#gate.stop();
  }

  info(): WorkerInfo {
    return {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      queues: [this.#queue],
      inFlight: this.#inFlight,
      processed: this.#path.processed,
      failed: this.#path.failed,
      status: this.#status,
      concurrency: this.#settings.concurrency,
      startedAt: this.#startedAt,
      ts: Date.now(),
    };
  }

  /** Worker lifecycle events (started, paused, resumed, stopped). */
  emitWorker(type: 'worker.started' | 'worker.paused' | 'worker.resumed' | 'worker.stopped'): void {
    this.#ctx.events.emit({
      type,
      queue: this.#queue,
      workerId: this.id,
      data: { concurrency: this.#settings.concurrency, processed: this.#path.processed, failed: this.#path.failed, pid: process.pid },
    });
  }

  heartbeat(): void {
    this.#ctx.publisher.publish(`$KV.${this.#ctx.layout.workersBucket}.${this.id}`, encodeJson(this.info())).catch((error: unknown) => {
      const denied = toPermissionDenied(error);
      if (denied) this.#refused(denied);
      else this.#log.debug({ err: error }, 'heartbeat not written');
    });
  }

  async removeHeartbeat(): Promise<void> {
    await (await this.#ctx.storage.workersKv()).delete(this.id).catch(() => {});
  }
}

// What handler modules and hosts import from the worker.
export { JobCancelledError, JobTimeoutError, type Handler, type Handlers, type JobContext } from './handler.js';
export { deliveryCount } from './delivery.js';
