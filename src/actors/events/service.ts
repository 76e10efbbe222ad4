/** The events service actor: ensures NAQ_EVENTS, answers queries, flushes the buffer when stopped. */
import type { ReplyTo } from '../../core/ask.js';
import type { NaqConfig } from '../../config/index.js';
import type { Logger } from '../../core/log.js';
import type { StoredEvent } from '../../model/event.js';
import { withRetry } from '../../core/retry.js';
import type { NaqContext } from '../nats/context.js';
import { reportDrift } from '../nats/jetstream.js';
import { serviceLogic } from '../service-logic.js';
import { counters, type EventLogCounters } from './buffer.js';
import { history, stats, subscribe, type EventFilter, type EventStats, type EventSubscription, type HistoryFilter, type StatsFilter } from './queries.js';
import { ensureEventsStream, eventsStreamOptions } from './stream.js';

/** Requests the events actor accepts. Emitting is not one of them: it is a direct, synchronous call (the context's event buffer). */
export type EventsRequest =
  | { type: 'events.history'; filter: HistoryFilter; replyTo: ReplyTo<StoredEvent[]> }
  | { type: 'events.stats'; filter: StatsFilter; replyTo: ReplyTo<EventStats> }
  | { type: 'events.subscribe'; filter: EventFilter; replyTo: ReplyTo<EventSubscription> }
  | { type: 'events.flush'; replyTo: ReplyTo<EventLogCounters> };

export const EVENTS_REQUESTS: ReadonlyArray<EventsRequest['type']> = ['events.history', 'events.stats', 'events.subscribe', 'events.flush'];

export function eventsLogic(config: NaqConfig, log: Logger) {
  // A scan that stalls this long is a failure; a long scan that keeps receiving is not.
  const query = { idleTimeoutMs: config.ops.timeoutMs };
  const ensure = (ctx: NaqContext) =>
    withRetry(`ensure stream ${ctx.layout.eventsStream}`, ctx.retry, async () =>
      ensureEventsStream(await ctx.jsm(), config.prefix, eventsStreamOptions(config), reportDrift(log)),
    );
  return serviceLogic<EventsRequest>({
    accepts: EVENTS_REQUESTS,
    setup: async (ctx) => {
      if (config.events.enabled) await ensure(ctx);
    },
    background: (ctx) => {
      if (!config.events.enabled) return () => {};
      // When a write found a stream missing, the job layer is checked again; the log is ours.
      return ctx.storage.onRepair(() => {
        ensure(ctx).catch((error: unknown) => log.warn({ err: error }, `could not recreate ${ctx.layout.eventsStream}`));
      });
    },
    teardown: async (ctx) => {
      await ctx.events.flush();
      if (ctx.events.buffered > 0) log.warn(counters(ctx.events), 'events still buffered at stop');
    },
    handle: async (request, ctx) => {
      switch (request.type) {
        case 'events.history':
          return history(ctx.nc, config.prefix, request.filter, query);
        case 'events.stats':
          return stats(ctx.nc, config.prefix, request.filter, query);
        case 'events.subscribe':
          return subscribe(ctx.nc, config.prefix, request.filter);
        case 'events.flush':
          await ctx.events.flush();
          return counters(ctx.events);
      }
    },
  });
}
