import type { NatsConnection } from '@nats-io/transport-node';
import { fromCallback, fromPromise, type EventObject } from 'xstate';
import { answer, replyError, type ReplyTo } from '../ask.js';
import { InvalidArgumentError } from '../errors.js';
import { serviceMachine, type ServiceInput } from '../machines/service.js';
import { natsOf } from './nats-connection.js';

export interface ServiceDefinition<R extends EventObject & { replyTo: ReplyTo<never> }> {
  /** Runs once per start, before the service reports ready (ensure streams, buckets). */
  setup?: (nc: NatsConnection) => Promise<void>;
  /** Serves one request; its result or error is the reply. Requests are served concurrently. */
  handle: (request: R, nc: NatsConnection) => Promise<unknown>;
  /** Request types this service accepts; anything else is refused with a clear error. */
  accepts: ReadonlyArray<R['type']>;
  /** Work that runs while the service is ready; returns its cleanup. */
  background?: (nc: NatsConnection) => () => void;
  /** Runs when the service is stopped (drain): flush what is buffered. */
  teardown?: (nc: NatsConnection) => Promise<void>;
}

/** A service actor: the shared service machine with this service's NATS work provided. */
export function serviceLogic<R extends EventObject & { replyTo: ReplyTo<never> }>(definition: ServiceDefinition<R>) {
  const accepted = new Set<string>(definition.accepts);
  return serviceMachine.provide({
    actors: {
      setup: fromPromise<void, ServiceInput>(async ({ input }) => {
        await definition.setup?.(natsOf(input.connection));
      }),
      teardown: fromPromise<void, ServiceInput>(async ({ input }) => {
        await definition.teardown?.(natsOf(input.connection));
      }),
      handler: fromCallback<EventObject, ServiceInput>(({ receive, input }) => {
        const cleanup = definition.background?.(natsOf(input.connection));
        receive((event) => {
          const request = event as R;
          if (!accepted.has(request.type)) {
            replyError(request.replyTo, new InvalidArgumentError(`${input.name} does not accept ${request.type}`));
            return;
          }
          void answer(request.replyTo as ReplyTo<unknown>, () => definition.handle(request, natsOf(input.connection)));
        });
        return cleanup;
      }),
    },
  });
}
