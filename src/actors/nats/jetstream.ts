/**
 * JetStream helpers every service uses: make a stream match what naq wants (reporting what
 * the server would not change), and the retry and request deadlines from config.
 */
import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { NaqConfig } from '../../config/index.js';
import type { Logger } from '../../core/log.js';
import { isPermissionDenied, toPermissionDenied } from '../../core/permissions.js';
import { PublishRejectedError } from './publisher.js';
import type { RetryOptions } from '../../core/retry.js';

/** A stream as naq wants it: the name plus the settings it cares about. */
export type WantedStream = Partial<StreamConfig> & { name: string };

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

export function retryOptions(config: NaqConfig): RetryOptions {
  return { timeoutMs: config.ops.timeoutMs, initialDelayMs: config.ops.retryInitialDelayMs, maxDelayMs: config.ops.retryMaxDelayMs };
}

/** JetStream API calls get a per-request timeout well inside the operation's deadline, so there is time to retry. */
export function apiTimeoutMs(config: NaqConfig): number {
  return Math.max(250, Math.floor(config.ops.timeoutMs / 3));
}

/** A revision-checked write (KV create / update, expected last sequence) found another revision. */
export function isWrongLastSequence(error: unknown): boolean {
  const code = error instanceof JetStreamApiError ? error.code : error instanceof PublishRejectedError ? error.errCode : undefined;
  return code === JetStreamApiCodes.StreamWrongLastSequence || code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
}

/** One page of the consumer names API's answer (the server gives up to 1024 names a page). */
interface ConsumerNamesPage {
  total?: number;
  consumers?: string[] | null;
  error?: { code: number; err_code: JetStreamApiCodes; description: string };
}

/**
 * The names of a stream's consumers. Not `jsm.consumers.list()`: that one answers with every
 * consumer's info, and the server works out each info's pending count by matching its filter
 * against every subject in the stream — with one subject per job, a cost that grows with the
 * backlog, paid per consumer (a queue has one per priority level and a staging one), every
 * time. Names cost the server nothing of the kind. A user whose permissions allow only the
 * list (`$JS.API.CONSUMER.LIST.<stream>`, what docs/security.md gave before) still gets the
 * names, through the list.
 */
export async function consumerNames(nc: Pick<NatsConnection, 'request'>, jsm: JetStreamManager, stream: string, timeoutMs?: number): Promise<string[]> {
  try {
    return await namesByPage(nc, jsm, stream, timeoutMs);
  } catch (error) {
    if (!isPermissionDenied(error)) throw error;
    try {
      const names: string[] = [];
      for await (const c of jsm.consumers.list(stream)) names.push(c.name);
      return names;
    } catch {
      // Neither is allowed: the refusal to report is the one of the subject the docs grant.
      throw error;
    }
  }
}

async function namesByPage(nc: Pick<NatsConnection, 'request'>, jsm: JetStreamManager, stream: string, timeoutMs?: number): Promise<string[]> {
  const prefix = jsm.getOptions().apiPrefix ?? '$JS.API';
  const names: string[] = [];
  for (;;) {
    const reply = await nc.request(`${prefix}.CONSUMER.NAMES.${stream}`, JSON.stringify({ offset: names.length }), timeoutMs ? { timeout: timeoutMs } : undefined);
    const page = reply.json<ConsumerNamesPage>();
    if (page.error) throw new JetStreamApiError(page.error);
    const got = page.consumers ?? [];
    names.push(...got);
    if (got.length === 0 || names.length >= (page.total ?? 0)) return names;
  }
}

/** Which of `wanted` the stream has no consumer for (all of them when the stream is gone), by name. */
export async function missingConsumers(nc: Pick<NatsConnection, 'request'>, jsm: JetStreamManager, stream: string, wanted: string[], timeoutMs?: number): Promise<string[]> {
  const names = await consumerNames(nc, jsm, stream, timeoutMs).catch((error: unknown): string[] => {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return [];
    throw error;
  });
  return wanted.filter((name) => !names.includes(name));
}
