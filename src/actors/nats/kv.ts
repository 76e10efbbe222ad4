/** The kv service actor: KV operations as messages, on any bucket, with handles pooled. */
import type { KV, KvEntry } from '@nats-io/kv';
import type { ReplyTo } from '../../core/ask.js';
import { KeyExistsError, RevisionMismatchError } from '../../core/errors.js';
import { withRetry } from '../../core/retry.js';
import { serviceLogic } from '../service-logic.js';
import type { BucketOptions } from './bucket-pool.js';
import type { NaqContext } from './context.js';
import { isWrongLastSequence } from './jetstream.js';


/** A KV entry as replies carry it: values are UTF-8 text (naq stores JSON). */
export interface KvRecord {
  bucket: string;
  key: string;
  value: string;
  revision: number;
  created: string;
  operation: 'PUT' | 'DEL' | 'PURGE';
}

export interface KvWatchHandle extends AsyncIterable<KvRecord> {
  stop(): void;
}

type Value = string | Uint8Array;

/** Requests the kv actor accepts; each is answered on its `replyTo`. */
export type KvRequest =
  | { type: 'kv.ensureBucket'; bucket: string; options?: BucketOptions; replyTo: ReplyTo<{ bucket: string }> }
  | { type: 'kv.get'; bucket: string; key: string; replyTo: ReplyTo<KvRecord | null> }
  | { type: 'kv.put'; bucket: string; key: string; value: Value; replyTo: ReplyTo<number> }
  | { type: 'kv.create'; bucket: string; key: string; value: Value; replyTo: ReplyTo<number> }
  | { type: 'kv.update'; bucket: string; key: string; value: Value; revision: number; replyTo: ReplyTo<number> }
  | { type: 'kv.delete'; bucket: string; key: string; revision?: number; replyTo: ReplyTo<void> }
  | { type: 'kv.purge'; bucket: string; key: string; replyTo: ReplyTo<void> }
  | { type: 'kv.keys'; bucket: string; filter?: string; replyTo: ReplyTo<string[]> }
  | { type: 'kv.watch'; bucket: string; filter?: string; replyTo: ReplyTo<KvWatchHandle> }
  | { type: 'kv.getMany'; bucket: string; keys: string[]; replyTo: ReplyTo<Array<KvRecord | null>> }
  | { type: 'kv.putMany'; bucket: string; entries: Array<{ key: string; value: Value }>; replyTo: ReplyTo<number[]> };

export const KV_REQUESTS: ReadonlyArray<KvRequest['type']> = [
  'kv.ensureBucket',
  'kv.get',
  'kv.put',
  'kv.create',
  'kv.update',
  'kv.delete',
  'kv.purge',
  'kv.keys',
  'kv.watch',
  'kv.getMany',
  'kv.putMany',
];

export function toRecord(e: KvEntry): KvRecord {
  return {
    bucket: e.bucket,
    key: e.key,
    value: e.string(),
    revision: e.revision,
    created: e.created.toISOString(),
    operation: e.operation,
  };
}

export 
function watchHandle(iterator: AsyncIterable<KvEntry> & { stop(): void }): KvWatchHandle {
  return {
    stop: () => iterator.stop(),
    async *[Symbol.asyncIterator]() {
      for await (const e of iterator) yield toRecord(e);
    },
  };
}

export async function handleKv(request: KvRequest, ctx: NaqContext): Promise<unknown> {
  const retry = ctx.retry;
  const pool = ctx.buckets;
  const { bucket } = request;
  const op = (name: string, fn: (kv: KV) => Promise<unknown>) =>
    withRetry(`kv ${name} ${bucket}`, retry, async () => fn(await pool.open(bucket)));
  switch (request.type) {
    case 'kv.ensureBucket':
      await withRetry(`kv ensure ${bucket}`, retry, () => pool.ensure(bucket, request.options));
      return { bucket };
    case 'kv.get':
      return op(`get ${request.key}`, async (kv) => {
        const e = await kv.get(request.key);
        return e && e.operation === 'PUT' ? toRecord(e) : null;
      });
    case 'kv.put':
      return op(`put ${request.key}`, (kv) => kv.put(request.key, request.value));
    case 'kv.create':
      return op(`create ${request.key}`, (kv) =>
        kv.create(request.key, request.value).catch((error) => {
          if (isWrongLastSequence(error)) throw new KeyExistsError(bucket, request.key, { cause: error });
          throw error;
        }),
      );
    case 'kv.update':
      return op(`update ${request.key}`, (kv) =>
        kv.update(request.key, request.value, request.revision).catch((error) => {
          if (isWrongLastSequence(error)) throw new RevisionMismatchError(bucket, request.key, request.revision, { cause: error });
          throw error;
        }),
      );
    case 'kv.delete':
      return op(`delete ${request.key}`, async (kv) => {
        await kv.delete(request.key, request.revision !== undefined ? { previousSeq: request.revision } : undefined).catch((error) => {
          if (isWrongLastSequence(error)) throw new RevisionMismatchError(bucket, request.key, request.revision ?? 0, { cause: error });
          throw error;
        });
      });
    case 'kv.purge':
      return op(`purge ${request.key}`, async (kv) => {
        await kv.purge(request.key);
      });
    case 'kv.keys':
      return op('keys', async (kv) => {
        const keys: string[] = [];
        for await (const k of await kv.keys(request.filter ?? '>')) keys.push(k);
        return keys.sort();
      });
    case 'kv.watch':
      return op('watch', async (kv) => watchHandle(await kv.watch(request.filter ? { key: request.filter } : {})));
    case 'kv.getMany':
      // The client pipelines the requests: one batch of round trips, not one after another.
      return op('getMany', (kv) =>
        Promise.all(request.keys.map(async (k) => {
          const e = await kv.get(k);
          return e && e.operation === 'PUT' ? toRecord(e) : null;
        })),
      );
    case 'kv.putMany':
      return op('putMany', (kv) => Promise.all(request.entries.map((e) => kv.put(e.key, e.value))));
  }
}

/** The kv service actor. */
export function kvLogic() {
  return serviceLogic<KvRequest>({
    accepts: KV_REQUESTS,
    handle: handleKv,
  });
}

export type { BucketOptions } from './bucket-pool.js';
