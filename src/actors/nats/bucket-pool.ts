/**
 * Bucket handles of one connection: opening a bucket costs a round trip (stream info), so it
 * is done once per bucket, not once per operation. Each connection's context has its own.
 */
import { JetStreamApiCodes, JetStreamApiError, StorageType } from '@nats-io/jetstream';
import type { KV, Kvm, KvOptions } from '@nats-io/kv';
import type { NaqConfig } from '../../config/index.js';
import { NotFoundError } from '../../core/errors.js';

export interface BucketOptions {
  /** Entry TTL in ms; 0 = keep forever. */
  ttlMs?: number;
  history?: number;
  storage?: 'file' | 'memory';
  replicas?: number;
}

function bucketOptions(config: NaqConfig, options: BucketOptions = {}): Partial<KvOptions> {
  return {
    ttl: options.ttlMs ?? 0,
    history: options.history ?? 1,
    storage: (options.storage ?? config.storage.storage) === 'memory' ? StorageType.Memory : StorageType.File,
    replicas: options.replicas ?? config.storage.replicas,
  };
}

/**
 * Bucket handles of one connection: opening a bucket costs a round trip (stream info), so it
 * is done once per bucket, not once per operation. Each connection's context has its own.
 */
export class BucketPool {
  readonly #pool = new Map<string, Promise<KV>>();
  constructor(
    private readonly kvm: () => Kvm,
    private readonly config: NaqConfig,
  ) {}

  #cache(bucket: string, open: () => Promise<KV>): Promise<KV> {
    let kv = this.#pool.get(bucket);
    if (!kv) {
      kv = open();
      kv.catch(() => this.#pool.delete(bucket));
      this.#pool.set(bucket, kv);
    }
    return kv;
  }

  ensure(bucket: string, options?: BucketOptions): Promise<KV> {
    this.#pool.delete(bucket);
    return this.#cache(bucket, () => this.kvm().create(bucket, bucketOptions(this.config, options)));
  }

  open(bucket: string): Promise<KV> {
    return this.#cache(bucket, async () => {
      const kv = await this.kvm().open(bucket);
      // open() is lazy on some paths; a status call proves the bucket exists.
      try {
        await kv.status();
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
          throw new NotFoundError(`bucket ${bucket}`, { cause: error });
        }
        throw error;
      }
      return kv;
    });
  }
}
