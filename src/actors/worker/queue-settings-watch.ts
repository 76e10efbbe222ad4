/**
 * A worker's view of its queue's settings (the queues bucket): the operator's pause, read once
 * and then followed; the rate limit and hold, handed to the worker's rate gate; and holds this
 * worker asks for when a handler is told to slow down, carried to every other worker.
 */
import type { Logger } from '../../core/log.js';
import type { PermissionDeniedError } from '../../core/errors.js';
import { toPermissionDenied } from '../../core/permissions.js';
import { settingsOf, type ActiveSettings } from '../../model/queue-settings.js';
import type { NaqContext } from '../nats/context.js';
import { updateQueueSettings } from '../nats/queue-settings.js';
import type { RateGate } from './rate-gate.js';

/** Before following the pause setting again after its watch ended. */
const PAUSE_WATCH_RETRY_MS = 1000;

export interface QueueSettingsWatchOptions {
  ctx: NaqContext;
  queue: string;
  workerId: string;
  /** Takes up the queue's rate limit and hold. */
  gate: RateGate;
  log: Logger;
  /** A write the server refused for permissions: the worker stops. */
  onRefused(error: PermissionDeniedError): void;
}

export class QueueSettingsWatch {
  readonly #o: QueueSettingsWatchOptions;
  #watch: { stop(): void } | null = null;
  #stopped = false;

  constructor(options: QueueSettingsWatchOptions) {
    this.#o = options;
  }

  /** The queue is paused by an operator now; its rate limit and hold are taken up too. */
  async readPaused(): Promise<boolean> {
    const entry = await (await this.#o.ctx.storage.queuesKv()).get(this.#o.queue);
    return this.#follow(settingsOf(entry)).paused;
  }

  /**
   * Follows the pause setting: `onChange` gets its current value, then every change. A watch
   * that ends on its own (a repair recreated the bucket) is opened again.
   */
  watchPaused(onChange: (paused: boolean) => void): void {
    const { ctx, queue, log } = this.#o;
    const open = async () => {
      const kv = await ctx.storage.queuesKv();
      const watch = await kv.watch({ key: queue });
      if (this.#stopped) return watch.stop();
      this.#watch = watch;
      for await (const e of watch) onChange(this.#follow(settingsOf(e)).paused);
    };
    const again = () => {
      if (this.#stopped) return;
      setTimeout(() => this.watchPaused(onChange), PAUSE_WATCH_RETRY_MS).unref();
    };
    open().then(again, (error: unknown) => {
      if (!this.#stopped) log.warn({ err: error, queue }, 'could not follow the queue pause setting; trying again');
      again();
    });
  }

  /**
   * A handler was told to slow down (ctx.rateLimit, RateLimitedError): nothing starts here
   * before then, and the queue's settings carry the hold to every other worker.
   */
  hold(ms: number, group?: string): void {
    const { ctx, queue, workerId, log } = this.#o;
    const until = Date.now() + ms;
    if (group !== undefined) {
      // Only the group waits: the group dispatcher releases none of its jobs before then.
      ctx.nc.publish(ctx.layout.groupNoticeSubject(queue, 'hold'), JSON.stringify({ group, until }));
      ctx.events.emit({ type: 'queue.held', queue, workerId, data: { until, ms, group } });
      return;
    }
    this.#o.gate.holdLocally(until);
    // Many jobs told to slow down at once write one hold, not one each: a hold already ending
    // within a tenth of this wait (at most a second) of this one is left as it is.
    const close = Math.min(1000, Math.floor(ms / 10));
    updateQueueSettings(ctx, queue, `hold queue ${queue}`, (s) => ((s.holdUntil ?? 0) >= until - close ? null : { ...s, holdUntil: until })).then(
      () => ctx.events.emit({ type: 'queue.held', queue, workerId, data: { until, ms } }),
      (error: unknown) => {
        const denied = toPermissionDenied(error);
        if (denied) this.#o.onRefused(denied);
        else log.warn({ err: error, queue }, 'could not hold the queue for the other workers; this one holds');
      },
    );
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.stop();
    this.#watch = null;
  }

  #follow(settings: ActiveSettings): ActiveSettings {
    this.#o.gate.follow(settings.limit, settings.holdUntil);
    return settings;
  }
}
