import { fromCallback, fromPromise, type EventObject } from 'xstate';
import { answer, replyError, type ReplyTo } from '../core/ask.js';
import { InvalidArgumentError } from '../core/errors.js';
import { serviceMachine, type ServiceInput } from '../machines/service.js';
import { contextOf, type NaqContext } from './nats/context.js';

export interface ServiceDefinition<R extends EventObject & { replyTo: ReplyTo<never> }> {
  /** Runs once per start, before the service reports ready (ensure streams, buckets). */
  setup?: (ctx: NaqContext) => Promise<void>;
  /** Serves one request; its result or error is the reply. Requests are served concurrently. */
  handle: (request: R, ctx: NaqContext) => Promise<unknown>;
  /** Request types this service accepts; anything else is refused with a clear error. */
  accepts: ReadonlyArray<R['type']>;
  /** Work that runs while the service is ready; returns its cleanup. */
  background?: (ctx: NaqContext) => () => void;
  /** Runs when the service is stopped (drain): flush what is buffered. */
  teardown?: (ctx: NaqContext) => Promise<void>;
}

/** A service actor: the shared service machine with this service's NATS work provided. */
export function serviceLogic<R extends EventObject & { replyTo: ReplyTo<never> }>(definition: ServiceDefinition<R>) {
  const accepted = new Set<string>(definition.accepts);
  return serviceMachine.provide({
    actors: {
      setup: fromPromise<void, ServiceInput>(async ({ input }) => {
        await definition.setup?.(contextOf(input.connection));
      }),
      teardown: fromPromise<void, ServiceInput>(async ({ input }) => {
        await definition.teardown?.(contextOf(input.connection));
      }),
      handler: fromCallback<EventObject, ServiceInput>(({ receive, input }) => {
        const cleanup = definition.background?.(contextOf(input.connection));
        receive((event) => {
          const request = event as R;
          if (!accepted.has(request.type)) {
            replyError(request.replyTo, new InvalidArgumentError(`${input.name} does not accept ${request.type}`));
            return;
          }
          void answer(request.replyTo as ReplyTo<unknown>, () => definition.handle(request, contextOf(input.connection)));
        });
        return cleanup;
      }),
    },
  });
}
