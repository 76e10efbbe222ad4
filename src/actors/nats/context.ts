/**
 * Everything that lives as long as one NATS connection: the publish-async path, the layout,
 * the job layer's streams and buckets, the event buffer, the logger. Built once, where the
 * connection comes up (nats/connection.ts), and handed to every service and worker inside the
 * connection handle of their actor input — so there is no registry keyed by connection, and
 * a module's collaborators are the ones it is given.
 */
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { NaqConfig } from '../../config/index.js';
import { NotConnectedError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { OpenWindows } from '../../model/dedupe.js';
import type { JobDefaults } from '../../model/job.js';
import { layout as makeLayout, type Layout } from '../../model/layout.js';
import { logPermissionDenied } from '../../core/permissions.js';
import { withRetry, type RetryOptions } from '../../core/retry.js';
import { DISABLED_EVENT_LOG, EventBuffer, followConnection, type EventLog } from '../events/buffer.js';
import { apiTimeoutMs, retryOptions } from './jetstream.js';
import { BucketPool } from './bucket-pool.js';
import { AsyncPublisher } from './publisher.js';
import { JobStorage } from './storage.js';

/** The context a connection handle carries (nats/connection.ts puts it there). */
export function contextOf(handle: unknown): NaqContext {
  const ctx = (handle as { context?: unknown } | null | undefined)?.context;
  if (!(ctx instanceof NaqContext)) throw new NotConnectedError();
  if (ctx.nc.isClosed()) throw new NotConnectedError('the NATS connection is closed');
  return ctx;
}

export class NaqContext {
  readonly layout: Layout;
  readonly publisher: AsyncPublisher;
  readonly storage: JobStorage;
  /** Handles of the buckets the kv service is asked about (any bucket, not only naq's). */
  readonly buckets: BucketPool;
  readonly events: EventLog;
  readonly retry: RetryOptions;
  /** The options a job gets when its enqueue does not say. */
  readonly defaults: JobDefaults;
  /** Throttle windows this process knows are open (src/actors/jobs/dedupe.ts). */
  readonly openWindows = new OpenWindows();
  #jsm: Promise<JetStreamManager> | undefined;

  constructor(
    readonly nc: NatsConnection,
    readonly config: NaqConfig,
    readonly log: Logger,
  ) {
    this.layout = makeLayout(config.prefix);
    this.retry = retryOptions(config);
    this.defaults = {
      attempts: config.jobs.attempts,
      backoff: { type: config.jobs.backoffType, delay: config.jobs.backoffDelayMs },
      maxPayloadBytes: config.jobs.maxPayloadBytes,
    };
    this.publisher = new AsyncPublisher(nc, {
      timeoutMs: config.jobs.publishTimeoutMs,
      // A write that no stream answered: a stream or bucket may have been deleted under us.
      onNoStream: (subject) => void this.storage.repairLayout(`no stream answered a publish to ${subject}`),
      onPermissionError: logPermissionDenied(log.child({ component: 'permissions' })),
    });
    const kvm = () => new Kvm(jetstream(nc, { timeout: apiTimeoutMs(config) }));
    this.storage = new JobStorage({
      nc,
      config,
      layout: this.layout,
      log: log.child({ component: 'storage' }),
      retry: this.retry,
      jsm: () => this.jsm(),
      kvm,
      publisher: this.publisher,
      maxPayload: () => nc.info?.max_payload,
    });
    this.buckets = new BucketPool(kvm, config);
    this.events = config.events.enabled ? this.#eventBuffer() : DISABLED_EVENT_LOG;
  }

  #eventBuffer(): EventBuffer {
    const buffer = new EventBuffer(
      (subject, data, options) => this.publisher.publish(subject, data, options),
      this.config.prefix,
      this.config.events,
      this.log.child({ component: 'event-log' }),
    );
    void followConnection(this.nc, buffer);
    return buffer;
  }

  /** The JetStream manager, looked up once; a failed lookup (server away) is not kept. */
  jsm(): Promise<JetStreamManager> {
    if (!this.#jsm) {
      const jsm = withRetry('jetstream manager', this.retry, () => jetstreamManager(this.nc, { timeout: apiTimeoutMs(this.config) }));
      jsm.catch(() => {
        if (this.#jsm === jsm) this.#jsm = undefined;
      });
      this.#jsm = jsm;
    }
    return this.#jsm;
  }

  /** The connection is gone: nothing more goes out through this context. */
  close(): void {
    this.events.stop();
    this.storage.flushIndex();
    this.publisher.close();
  }
}
