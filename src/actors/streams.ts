import {
  jetstreamManager,
  JetStreamApiError,
  type JetStreamManager,
  type StoredMsg,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ReplyTo } from '../ask.js';
import type { NaqConfig } from '../config.js';
import { NotFoundError } from '../errors.js';
import { withRetry, type RetryOptions } from '../retry.js';
import { serviceLogic } from './service-logic.js';

/** A stream as naq wants it: the name plus the settings it cares about. */
export type WantedStream = Partial<StreamConfig> & { name: string };

/** A stored message, decoded for callers that are not NATS-aware. */
export interface StreamMessage {
  stream: string;
  seq: number;
  subject: string;
  time: string;
  headers: Record<string, string[]>;
  data: string;
}

/** Requests the streams actor accepts; each is answered on its `replyTo`. */
export type StreamsRequest =
  | { type: 'streams.ensure'; config: WantedStream; replyTo: ReplyTo<StreamInfo> }
  | { type: 'streams.info'; name: string; replyTo: ReplyTo<StreamInfo> }
  | { type: 'streams.list'; replyTo: ReplyTo<StreamInfo[]> }
  | { type: 'streams.purge'; name: string; subject?: string; replyTo: ReplyTo<{ purged: number }> }
  | { type: 'streams.delete'; name: string; replyTo: ReplyTo<boolean> }
  | { type: 'streams.getMessage'; name: string; seq: number; replyTo: ReplyTo<StreamMessage> };

export const STREAMS_REQUESTS: ReadonlyArray<StreamsRequest['type']> = [
  'streams.ensure',
  'streams.info',
  'streams.list',
  'streams.purge',
  'streams.delete',
  'streams.getMessage',
];

const STREAM_NOT_FOUND = 10059;
const NO_MESSAGE_FOUND = 10037;

function notFound(error: unknown, what: string): never {
  if (error instanceof JetStreamApiError && (error.code === STREAM_NOT_FOUND || error.code === NO_MESSAGE_FOUND)) {
    throw new NotFoundError(what, { cause: error });
  }
  throw error;
}

/** True when every setting the caller asked for already holds on the stream. */
function matches(existing: StreamConfig, wanted: WantedStream): boolean {
  return Object.entries(wanted).every(([key, value]) => {
    const have = (existing as unknown as Record<string, unknown>)[key];
    if (Array.isArray(value)) return Array.isArray(have) && [...value].sort().join('\0') === [...have].sort().join('\0');
    return value === undefined || JSON.stringify(have) === JSON.stringify(value);
  });
}

/** Create the stream, or update it to the wanted settings; a no-op when it already matches. */
export async function ensureStream(jsm: JetStreamManager, wanted: WantedStream): Promise<StreamInfo> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(wanted.name);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === STREAM_NOT_FOUND) return jsm.streams.add(wanted);
    throw error;
  }
  if (matches(info.config, wanted)) return info;
  return jsm.streams.update(wanted.name, { ...info.config, ...wanted });
}

function decodeMessage(stream: string, m: StoredMsg): StreamMessage {
  const headers: Record<string, string[]> = {};
  if (m.header) for (const [k, v] of m.header) headers[k] = v;
  return { stream, seq: m.seq, subject: m.subject, time: m.time.toISOString(), headers, data: m.string() };
}

export function retryOptions(config: NaqConfig): RetryOptions {
  return { timeoutMs: config.ops.timeoutMs, initialDelayMs: config.ops.retryInitialDelayMs, maxDelayMs: config.ops.retryMaxDelayMs };
}

/** JetStream API calls get a per-request timeout well inside the operation's deadline, so there is time to retry. */
export function apiTimeoutMs(config: NaqConfig): number {
  return Math.max(250, Math.floor(config.ops.timeoutMs / 3));
}

const managers = new WeakMap<NatsConnection, Promise<JetStreamManager>>();

export function managerFor(nc: NatsConnection, config: NaqConfig): Promise<JetStreamManager> {
  let jsm = managers.get(nc);
  if (!jsm) {
    jsm = jetstreamManager(nc, { timeout: apiTimeoutMs(config) });
    // A failed lookup (server away) must not be cached.
    jsm.catch(() => managers.delete(nc));
    managers.set(nc, jsm);
  }
  return jsm;
}

export async function handleStreams(request: StreamsRequest, nc: NatsConnection, config: NaqConfig): Promise<unknown> {
  const retry = retryOptions(config);
  const jsm = () => withRetry('jetstream manager', retry, () => managerFor(nc, config));
  switch (request.type) {
    case 'streams.ensure': {
      const m = await jsm();
      return withRetry(`ensure stream ${request.config.name}`, retry, () => ensureStream(m, request.config));
    }
    case 'streams.info': {
      const m = await jsm();
      return withRetry(`stream info ${request.name}`, retry, () => m.streams.info(request.name).catch((e) => notFound(e, `stream ${request.name}`)));
    }
    case 'streams.list': {
      const m = await jsm();
      return withRetry('list streams', retry, async () => {
        const all: StreamInfo[] = [];
        for await (const s of m.streams.list()) all.push(s);
        return all;
      });
    }
    case 'streams.purge': {
      const m = await jsm();
      return withRetry(`purge stream ${request.name}`, retry, async () => {
        const r = await m.streams
          .purge(request.name, request.subject ? { filter: request.subject } : undefined)
          .catch((e) => notFound(e, `stream ${request.name}`));
        return { purged: r.purged };
      });
    }
    case 'streams.delete': {
      const m = await jsm();
      return withRetry(`delete stream ${request.name}`, retry, () => m.streams.delete(request.name).catch((e) => notFound(e, `stream ${request.name}`)));
    }
    case 'streams.getMessage': {
      const m = await jsm();
      return withRetry(`get message ${request.name}#${request.seq}`, retry, async () => {
        const msg = await m.streams
          .getMessage(request.name, { seq: request.seq })
          .catch((e) => notFound(e, `message ${request.seq} in stream ${request.name}`));
        if (!msg) throw new NotFoundError(`message ${request.seq} in stream ${request.name}`);
        return decodeMessage(request.name, msg);
      });
    }
  }
}

/** The streams service actor. */
export function streamsLogic(config: NaqConfig) {
  return serviceLogic<StreamsRequest>({
    accepts: STREAMS_REQUESTS,
    // Ready means JetStream answers: fail (and be restarted) rather than serve a server without it.
    setup: async (nc) => {
      await withRetry('jetstream manager', retryOptions(config), () => managerFor(nc, config));
    },
    handle: (request, nc) => handleStreams(request, nc, config),
  });
}
