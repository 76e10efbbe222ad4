/**
 * OpenTelemetry through `@opentelemetry/api` only: a no-op unless the host registers an SDK
 * (a tracer provider, and a propagator for the trace to cross from producer to worker).
 * Enqueue opens a PRODUCER span and carries its W3C trace context (`traceparent`,
 * `tracestate`) in the job message's headers; the worker opens a CONSUMER span around the
 * handler, a child of that context (docs/wire-format.md, 3.1).
 */
import { context, propagation, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter } from '@opentelemetry/api';
import type { MsgHdrs } from '@nats-io/transport-node';
import { errorInfo } from '../core/errors.js';

/** A proxy: it follows a provider the host registers later. */
const tracer = trace.getTracer('naq');

/**
 * Whether a host registered a tracer provider or a propagator. Without either, the API hands
 * out its own proxy provider and an empty field list: then the job path does nothing more.
 */
function tracingOn(): boolean {
  return !(trace.getTracerProvider() instanceof ProxyTracerProvider) || propagation.fields().length > 0;
}

/**
 * A PRODUCER span for publishing `jobs` (one span for a bulk), and the headers that carry its
 * context. Null when no SDK is registered: the common case costs one check.
 */
export function producerSpan(queue: string, jobs: number, firstId: string): { span: Span; headers: Record<string, string> } | null {
  if (!tracingOn()) return null;
  const span = tracer.startSpan(`${queue} publish`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      'messaging.system': 'nats',
      'messaging.operation.type': 'publish',
      'messaging.destination.name': queue,
      ...(jobs === 1 ? { 'messaging.message.id': firstId } : { 'messaging.batch.message_count': jobs }),
    },
  });
  const headers: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), headers);
  return { span, headers };
}

/** Ends a span, with the error it failed with; never throws (a thrown value may be hostile). */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    try {
      const info = errorInfo(error);
      span.recordException({ name: info.name, message: info.message, ...(info.code !== undefined ? { code: info.code } : {}) });
      span.setStatus({ code: SpanStatusCode.ERROR, message: info.message });
    } catch {
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }
  span.end();
}

const headerGetter: TextMapGetter<MsgHdrs> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => (carrier.has(key) ? carrier.get(key) : undefined),
};

/** The context a job's headers carry, or the root context. */
function extracted(headers: MsgHdrs | undefined): Context {
  return headers ? propagation.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
}

export interface ConsumerSpan {
  span: Span;
  /** The context to run the handler in, so the handler's own spans are children of this one. */
  context: Context;
}

/**
 * A CONSUMER span around one attempt, a child of the context the job's headers carry. Null
 * when no SDK is registered (the headers are then not even read).
 */
export function consumerSpan(queue: string, job: { id: string; name: string }, attempt: number, headers: () => MsgHdrs | undefined): ConsumerSpan | null {
  if (!tracingOn()) return null;
  const parent = propagation.fields().length ? extracted(headers()) : ROOT_CONTEXT;
  const span = tracer.startSpan(
    `${queue} process`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'process',
        'messaging.destination.name': queue,
        'messaging.message.id': job.id,
        'naq.job.name': job.name,
        'naq.job.attempt': attempt,
      },
    },
    parent,
  );
  if (!span.isRecording()) {
    span.end();
    return null;
  }
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs `fn` with `ctx` active (the host's context manager carries it through awaits). */
export function within<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}
