/**
 * The group dispatcher's top (groups.ts has one queue's part and the whole design): while this
 * process leads, it finds the queues whose workers made a staging consumer, runs a GroupQueue
 * for each, and hands them the workers' notices (a grouped job finished, a group held).
 */
import type { KvEntry } from '@nats-io/kv';
import type { QueuedIterator, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../../core/log.js';
import { parseLane } from '../../model/layout.js';
import { settingsOf } from '../../model/queue-settings.js';
import { listWorkers } from '../jobs/admin.js';
import type { NaqContext } from '../nats/context.js';
import { apiTimeoutMs, consumerNames } from '../nats/jetstream.js';
import { GroupQueue } from './groups.js';

/** How often queues with a staging consumer are looked for, and the workers' slots counted. */
const DISCOVER_MS = 2000;

/** Finds the queues with a staging consumer and runs a GroupQueue for each, while this process leads. */
export class GroupDispatcher {
  readonly #ctx: NaqContext;
  readonly #log: Logger;
  readonly #queues = new Map<string, GroupQueue>();
  #subs: Subscription[] = [];
  #watch: QueuedIterator<KvEntry> | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #stopped = false;

  constructor(ctx: NaqContext, log: Logger) {
    this.#ctx = ctx;
    this.#log = log;
  }

  async start(): Promise<void> {
    const { layout, nc } = this.#ctx;
    this.#subs = [
      nc.subscribe(`${layout.prefix}.groups.*.done`, {
        callback: (err, msg) => {
          if (err) return;
          const text = msg.string();
          const space = text.indexOf(' ');
          this.#queues.get(msg.subject.split('.').at(-2)!)?.done(space < 0 ? text : text.slice(0, space));
        },
      }),
      nc.subscribe(`${layout.prefix}.groups.*.hold`, {
        callback: (err, msg) => {
          if (err) return;
          try {
            const { group, until } = msg.json<{ group: string; until: number }>();
            if (typeof group === 'string' && Number.isFinite(until)) this.#queues.get(msg.subject.split('.').at(-2)!)?.hold(group, until);
          } catch {
            // A damaged notice changes nothing.
          }
        },
      }),
    ];
    // Looked for again every DISCOVER_MS, whatever the first look gives (a failover may make it fail).
    let looking = false;
    const look = () => {
      if (looking || this.#stopped) return;
      looking = true;
      this.#discover()
        .catch((error: unknown) => this.#log.warn({ err: error }, 'group dispatcher: looking for grouped queues failed; trying again'))
        .finally(() => (looking = false));
    };
    this.#timer = setInterval(look, DISCOVER_MS);
    this.#timer.unref?.();
    look();
    void this.#followSettings();
  }

  /** Queues whose workers made a staging consumer; the slots of their live workers; keep-alives. */
  async #discover(): Promise<void> {
    const { layout, config } = this.#ctx;
    const jsm = await this.#ctx.jsm();
    const prefix = `${config.prefix}-`;
    for (const name of await consumerNames(this.#ctx.nc, jsm, layout.jobsStream, apiTimeoutMs(config))) {
      if (this.#stopped) return;
      if (!name.startsWith(prefix)) continue;
      const lane = parseLane(name.slice(prefix.length));
      if (!lane.staged || this.#queues.has(lane.queue)) continue;
      const entry = await (await this.#ctx.storage.queuesKv()).get(lane.queue);
      if (this.#stopped) return;
      const q = new GroupQueue(this.#ctx, lane.queue, this.#log);
      this.#queues.set(lane.queue, q);
      q.follow(settingsOf(entry).groups);
      this.#log.info({ queue: lane.queue }, 'group dispatcher: releasing grouped jobs in turns');
      q.run().catch((error: unknown) => {
        if (this.#stopped) return;
        this.#log.warn({ err: error, queue: lane.queue }, 'group dispatcher: the staging pull ended; starting it again');
        q.stop();
        this.#queues.delete(lane.queue);
      });
    }
    const workers = await listWorkers(this.#ctx);
    for (const [queue, q] of this.#queues) {
      q.setWindow(workers.filter((w) => w.queues.includes(queue)).reduce((sum, w) => sum + w.concurrency, 0));
      await q.sweep();
    }
  }

  async #followSettings(): Promise<void> {
    while (!this.#stopped) {
      try {
        const watch = await (await this.#ctx.storage.queuesKv()).watch();
        if (this.#stopped) return watch.stop();
        this.#watch = watch;
        for await (const e of watch) this.#queues.get(e.key)?.follow(settingsOf(e).groups);
      } catch (error) {
        this.#log.debug({ err: error }, 'group dispatcher: the queue settings watch failed');
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const s of this.#subs) s.unsubscribe();
    this.#watch?.stop();
    for (const q of this.#queues.values()) q.stop();
    this.#queues.clear();
  }
}
