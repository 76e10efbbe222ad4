import type { ReplyTo } from '../ask.js';
import type { NaqConfig } from '../config.js';
import {
  counters,
  ensureEventsStream,
  eventLogFor,
  eventsStreamOptions,
  history,
  stats,
  subscribe,
  type EventFilter,
  type EventLogCounters,
  type EventStats,
  type EventSubscription,
  type HistoryFilter,
  type StatsFilter,
  type StoredEvent,
} from '../event-log.js';
import { layout } from '../layout.js';
import type { Logger } from '../log.js';
import { withRetry } from '../retry.js';
import { serviceLogic } from './service-logic.js';
import { jobsRuntimeFor } from './jobs-runtime.js';
import { managerFor, reportDrift, retryOptions } from './streams.js';

/** Requests the events actor accepts. Emitting is not one of them: it is a direct, synchronous call (eventLogFor). */
export type EventsRequest =
  | { type: 'events.history'; filter: HistoryFilter; replyTo: ReplyTo<StoredEvent[]> }
  | { type: 'events.stats'; filter: StatsFilter; replyTo: ReplyTo<EventStats> }
  | { type: 'events.subscribe'; filter: EventFilter; replyTo: ReplyTo<EventSubscription> }
  | { type: 'events.flush'; replyTo: ReplyTo<EventLogCounters> };

export const EVENTS_REQUESTS: ReadonlyArray<EventsRequest['type']> = ['events.history', 'events.stats', 'events.subscribe', 'events.flush'];

/** The events service actor: ensures NAQ_EVENTS, answers queries, flushes the buffer when stopped. */
export function eventsLogic(config: NaqConfig, log: Logger) {
  const { eventsStream } = layout(config.prefix);
  const retry = retryOptions(config);
  // A scan that stalls this long is a failure; a long scan that keeps receiving is not.
  const query = { idleTimeoutMs: config.ops.timeoutMs };
  let stopFollowingRepairs: (() => void) | undefined;
  return serviceLogic<EventsRequest>({
    accepts: EVENTS_REQUESTS,
    setup: async (nc) => {
      // First use creates the connection's buffer, with this logger.
      eventLogFor(nc, config, log);
      if (!config.events.enabled) return;
      const jsm = await withRetry('jetstream manager', retry, () => managerFor(nc, config));
      const ensure = () => withRetry(`ensure stream ${eventsStream}`, retry, () => ensureEventsStream(jsm, config.prefix, eventsStreamOptions(config), reportDrift(log)));
      await ensure();
      // When a write found a stream missing, the job layer is checked again; the log is ours.
      stopFollowingRepairs?.();
      stopFollowingRepairs = jobsRuntimeFor(nc, config, log).onRepair(() => {
        ensure().catch((error: unknown) => log.warn({ err: error }, `could not recreate ${eventsStream}`));
      });
    },
    teardown: async (nc) => {
      stopFollowingRepairs?.();
      stopFollowingRepairs = undefined;
      const eventLog = eventLogFor(nc, config, log);
      await eventLog.flush();
      if (eventLog.buffered > 0) log.warn(counters(eventLog), 'events still buffered at stop');
    },
    handle: async (request, nc) => {
      switch (request.type) {
        case 'events.history':
          return history(nc, config.prefix, request.filter, query);
        case 'events.stats':
          return stats(nc, config.prefix, request.filter, query);
        case 'events.subscribe':
          return subscribe(nc, config.prefix, request.filter);
        case 'events.flush': {
          const eventLog = eventLogFor(nc, config, log);
          await eventLog.flush();
          return counters(eventLog);
        }
      }
    },
  });
}
