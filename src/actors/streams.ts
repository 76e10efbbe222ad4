import {
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  type StoredMsg,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ReplyTo } from '../ask.js';
import type { NaqConfig } from '../config.js';
import type { Logger } from '../log.js';
import { NotFoundError } from '../errors.js';
import { isPermissionDenied, toPermissionDenied } from '../permissions.js';
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

function sameSetting(have: unknown, want: unknown): boolean {
  if (Array.isArray(want)) return Array.isArray(have) && [...want].sort().join('\0') === [...have].sort().join('\0');
  return want === undefined || JSON.stringify(have) === JSON.stringify(want);
}

/** The settings the caller asked for that the stream does not have. */
function differences(existing: StreamConfig, wanted: WantedStream): string[] {
  return Object.entries(wanted)
    .filter(([key, value]) => !sameSetting((existing as unknown as Record<string, unknown>)[key], value))
    .map(([key]) => key);
}

/** A setting naq wants on an existing stream that the server would not change. */
export interface RefusedSetting {
  stream: string;
  setting: string;
  have: unknown;
  want: unknown;
  error: unknown;
}

export interface EnsureStreamOptions {
  /**
   * Settings the server refuses to change on an existing stream (storage, retention, or any
   * update this user may not make) are reported here and left as they are, instead of failing
   * the whole ensure. Without it, a refused update throws.
   */
  onRefused?: (refused: RefusedSetting) => void;
  /** Told when the stream did not exist and was created. */
  onCreated?: (stream: string) => void;
  /** Told about each setting that was changed to match. */
  onUpdated?: (change: { stream: string; setting: string; from: unknown; to: unknown }) => void;
}

/**
 * Create the stream, or update it to the wanted settings; a no-op when it already matches.
 * Settings that differ are applied where the server allows it; with `onRefused`, each one it
 * will not change is reported with both values and the rest still applied.
 */
export async function ensureStream(jsm: JetStreamManager, wanted: WantedStream, options: EnsureStreamOptions = {}): Promise<StreamInfo> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(wanted.name);
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
    const created = await jsm.streams.add(wanted);
    options.onCreated?.(wanted.name);
    return created;
  }
  const changed = differences(info.config, wanted);
  if (changed.length === 0) return info;
  const setting = (config: StreamConfig, key: string) => (config as unknown as Record<string, unknown>)[key];
  const report = (before: StreamConfig, keys: string[]) => {
    for (const key of keys) options.onUpdated?.({ stream: wanted.name, setting: key, from: setting(before, key), to: setting(wanted as StreamConfig, key) });
  };
  try {
    const updated = await jsm.streams.update(wanted.name, { ...info.config, ...wanted });
    report(info.config, changed);
    return updated;
  } catch (error) {
    if (!options.onRefused || !(error instanceof JetStreamApiError || isRefusal(error))) throw error;
  }
  // One setting at a time, so each refusal names its setting and the others still apply.
  for (const key of changed) {
    try {
      const updated = await jsm.streams.update(wanted.name, { ...info.config, [key]: setting(wanted as StreamConfig, key) } as StreamConfig);
      report(info.config, [key]);
      info = updated;
    } catch (error) {
      if (!(error instanceof JetStreamApiError || isRefusal(error))) throw error;
      options.onRefused({ stream: wanted.name, setting: key, have: setting(info.config, key), want: setting(wanted as StreamConfig, key), error: toPermissionDenied(error) ?? error });
    }
  }
  return info;
}

/** naq's own streams and buckets: a setting changed to match, or left, is a warning naming it. */
export function reportDrift(log: Logger): EnsureStreamOptions {
  return {
    onUpdated: ({ stream, setting, from, to }) => log.warn({ stream, setting, from, to }, `${stream}: ${setting} changed to match the config`),
    onRefused: ({ stream, setting, have, want, error }) =>
      log.warn(
        { stream, setting, have, want, err: error },
        `${stream}: ${setting} is ${JSON.stringify(have)} on the server but the config wants ${JSON.stringify(want)}; the server did not change it, so its value applies`,
      ),
  };
}

/** A refusal that is not a JetStream API error: the user may not make the update at all. */
function isRefusal(error: unknown): boolean {
  return isPermissionDenied(error);
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
