/** The NAQ_EVENTS stream: created, or updated to the configured limits. */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import type { NaqConfig } from '../../config/index.js';
import { layout } from '../../model/layout.js';
import { eventsWildcard } from '../../model/event.js';
import { ensureStream, type EnsureStreamOptions } from '../nats/jetstream.js';

export interface EventsStreamOptions {
  /** 0 keeps events until the stream's other limits remove them. */
  maxAgeMs: number;
  replicas: number;
  storage: 'file' | 'memory';
}

const NANOS_PER_MS = 1_000_000;
/** The server's default dedupe window; retried batches are deduplicated within it. */
const DEDUPE_WINDOW_MS = 2 * 60_000;

export function eventsStreamOptions(config: NaqConfig): EventsStreamOptions {
  return { maxAgeMs: config.events.maxAgeMs, replicas: config.storage.replicas, storage: config.storage.storage };
}

export function ensureEventsStream(jsm: JetStreamManager, prefix: string, options: EventsStreamOptions, ensure?: EnsureStreamOptions): Promise<StreamInfo> {
  const dedupeMs = options.maxAgeMs > 0 ? Math.min(DEDUPE_WINDOW_MS, options.maxAgeMs) : DEDUPE_WINDOW_MS;
  return ensureStream(jsm, {
    name: layout(prefix).eventsStream,
    subjects: [eventsWildcard(prefix)],
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    storage: options.storage === 'memory' ? StorageType.Memory : StorageType.File,
    num_replicas: options.replicas,
    max_age: options.maxAgeMs * NANOS_PER_MS,
    // The server refuses a dedupe window longer than max_age.
    duplicate_window: dedupeMs * NANOS_PER_MS,
  }, ensure);
}
