/**
 * OpenTelemetry (issue 11): with the host's SDK registered (here the in-memory exporter), an
 * enqueue makes a PRODUCER span whose W3C context travels in the job's headers, and the worker
 * makes a CONSUMER span around the handler, a child of it, inside which the handler's own
 * spans nest. Without an SDK nothing is carried.
 */
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connectTo, startServer, stopAllServers, until } from '../support/harness.js';
import { producer, stopNaqs, worker } from '../support/naqs.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

const exporter = new InMemorySpanExporter();

function register() {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

function unregister() {
  trace.disable();
  context.disable();
  propagation.disable();
}

async function headersOf(server: Parameters<typeof connectTo>[0], subject: string) {
  const nc = await connectTo(server);
  try {
    const m = await (await jetstreamManager(nc)).streams.getMessage('NAQ_JOBS', { last_by_subj: subject });
    return m?.header;
  } finally {
    await nc.close();
  }
}

describe('OpenTelemetry', () => {
  it('without an SDK registered, a job carries no trace headers', async () => {
    const server = await startServer();
    const ops = await producer(server);
    const id = await ops.enqueue('x', null, { queue: 'unserved' });
    const headers = await headersOf(server, `naq.jobs.unserved.${id}`);
    expect(headers?.has('traceparent') ?? false).toBe(false);
  });

  it('enqueue → PRODUCER span, context in the headers → CONSUMER span around the handler, its child; failures marked', async () => {
    register();
    try {
      const server = await startServer();
      const app = trace.getTracer('app');
      const w = await worker(server, {
        work: async (n: number) => app.startActiveSpan('inside the handler', (s) => (s.end(), n * 2)),
        fail: async () => {
          throw new Error('broken');
        },
      });
      let requestSpanId = '';
      const id = await app.startActiveSpan('request', async (span) => {
        requestSpanId = span.spanContext().spanId;
        try {
          return await w.enqueue('work', 21);
        } finally {
          span.end();
        }
      });
      expect(await w.waitFor(id, { timeoutMs: 5000 })).toBe(42);
      const failed = await w.enqueue('fail', null);
      await expect(w.waitFor(failed, { timeoutMs: 5000 })).rejects.toThrow('broken');
      const parked = await w.enqueue('work', 1, { queue: 'unserved' });
      expect((await headersOf(server, `naq.jobs.unserved.${parked}`))?.get('traceparent')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

      let spans: ReadableSpan[] = [];
      await until(() => (spans = exporter.getFinishedSpans()).filter((s) => s.kind === SpanKind.CONSUMER).length >= 2);
      const byName = (name: string, kind?: SpanKind) => spans.filter((s) => s.name === name && (kind === undefined || s.kind === kind));
      const [publish] = byName('default publish', SpanKind.PRODUCER).filter((s) => s.attributes['messaging.message.id'] === id);
      const [processSpan] = byName('default process', SpanKind.CONSUMER).filter((s) => s.attributes['messaging.message.id'] === id);
      const [inner] = byName('inside the handler');
      expect(publish!.parentSpanContext?.spanId).toBe(requestSpanId);
      expect(processSpan!.spanContext().traceId).toBe(publish!.spanContext().traceId);
      expect(processSpan!.parentSpanContext?.spanId).toBe(publish!.spanContext().spanId);
      expect(processSpan!.attributes).toMatchObject({ 'messaging.system': 'nats', 'naq.job.name': 'work', 'naq.job.attempt': 1 });
      expect(inner!.parentSpanContext?.spanId).toBe(processSpan!.spanContext().spanId);
      expect(processSpan!.status.code).not.toBe(SpanStatusCode.ERROR);
      const [failedSpan] = byName('default process', SpanKind.CONSUMER).filter((s) => s.attributes['messaging.message.id'] === failed);
      expect(failedSpan!.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'broken' });
      expect(failedSpan!.events.map((e) => e.name)).toContain('exception');
    } finally {
      unregister();
    }
  });
});
