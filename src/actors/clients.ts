import type { StreamInfo } from '@nats-io/jetstream';
import type { AnyActorRef } from 'xstate';
import { ask } from '../core/ask.js';
import type { BucketOptions, KvRecord, KvRequest, KvWatchHandle } from './nats/kv.js';
import type { WantedStream } from './nats/jetstream.js';
import type { StreamMessage, StreamsRequest } from './nats/streams.js';

/** Builds a request without its reply target (which `ask` supplies). */
type Without<R, K extends keyof R> = R extends unknown ? Omit<R, K> : never;
type Reply<R> = R extends { replyTo: { send(reply: { ok: true; value: infer T }): void } } ? T : never;

function requester<R extends { type: string; replyTo: unknown }>(lookup: () => AnyActorRef | undefined, timeoutMs: number) {
  return <T extends R['type']>(request: Without<Extract<R, { type: T }>, 'replyTo'>): Promise<Reply<Extract<R, { type: T }>>> =>
    ask(lookup(), (replyTo) => ({ ...request, replyTo }) as unknown as R & { type: string }, { timeoutMs });
}

/** Stream operations, sent as messages to the streams actor. */
export class StreamsClient {
  readonly #ask;
  constructor(lookup: () => AnyActorRef | undefined, timeoutMs: number) {
    this.#ask = requester<StreamsRequest>(lookup, timeoutMs);
  }
  ensure(config: WantedStream): Promise<StreamInfo> {
    return this.#ask({ type: 'streams.ensure', config });
  }
  info(name: string): Promise<StreamInfo> {
    return this.#ask({ type: 'streams.info', name });
  }
  list(): Promise<StreamInfo[]> {
    return this.#ask({ type: 'streams.list' });
  }
  purge(name: string, subject?: string): Promise<{ purged: number }> {
    return this.#ask({ type: 'streams.purge', name, ...(subject ? { subject } : {}) });
  }
  delete(name: string): Promise<boolean> {
    return this.#ask({ type: 'streams.delete', name });
  }
  getMessage(name: string, seq: number): Promise<StreamMessage> {
    return this.#ask({ type: 'streams.getMessage', name, seq });
  }
}

type Value = string | Uint8Array;

/** KV operations, sent as messages to the kv actor. */
export class KvClient {
  readonly #ask;
  constructor(lookup: () => AnyActorRef | undefined, timeoutMs: number) {
    this.#ask = requester<KvRequest>(lookup, timeoutMs);
  }
  ensureBucket(bucket: string, options?: BucketOptions): Promise<{ bucket: string }> {
    return this.#ask({ type: 'kv.ensureBucket', bucket, ...(options ? { options } : {}) });
  }
  get(bucket: string, key: string): Promise<KvRecord | null> {
    return this.#ask({ type: 'kv.get', bucket, key });
  }
  put(bucket: string, key: string, value: Value): Promise<number> {
    return this.#ask({ type: 'kv.put', bucket, key, value });
  }
  /** Writes only if the key is absent; otherwise KeyExistsError. */
  create(bucket: string, key: string, value: Value): Promise<number> {
    return this.#ask({ type: 'kv.create', bucket, key, value });
  }
  /** Writes only if `revision` is still the latest; otherwise RevisionMismatchError. */
  update(bucket: string, key: string, value: Value, revision: number): Promise<number> {
    return this.#ask({ type: 'kv.update', bucket, key, value, revision });
  }
  delete(bucket: string, key: string, revision?: number): Promise<void> {
    return this.#ask({ type: 'kv.delete', bucket, key, ...(revision !== undefined ? { revision } : {}) });
  }
  purge(bucket: string, key: string): Promise<void> {
    return this.#ask({ type: 'kv.purge', bucket, key });
  }
  keys(bucket: string, filter?: string): Promise<string[]> {
    return this.#ask({ type: 'kv.keys', bucket, ...(filter ? { filter } : {}) });
  }
  /** Current values first, then live updates, until `stop()`. */
  watch(bucket: string, filter?: string): Promise<KvWatchHandle> {
    return this.#ask({ type: 'kv.watch', bucket, ...(filter ? { filter } : {}) });
  }
  getMany(bucket: string, keys: string[]): Promise<Array<KvRecord | null>> {
    return this.#ask({ type: 'kv.getMany', bucket, keys });
  }
  putMany(bucket: string, entries: Array<{ key: string; value: Value }>): Promise<number[]> {
    return this.#ask({ type: 'kv.putMany', bucket, entries });
  }
}
