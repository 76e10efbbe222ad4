/** The streams service actor: stream operations as messages (ensure, info, list, purge, delete, get). */
import { JetStreamApiCodes, JetStreamApiError, type StoredMsg, type StreamInfo } from '@nats-io/jetstream';
import type { ReplyTo } from '../../core/ask.js';
import { NotFoundError } from '../../core/errors.js';
import { withRetry } from '../../core/retry.js';
import { serviceLogic } from '../service-logic.js';
import type { NaqContext } from './context.js';
import { ensureStream, type WantedStream } from './jetstream.js';


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

function notFound(error: unknown, what: string): never {
  if (error instanceof JetStreamApiError && (error.code === JetStreamApiCodes.StreamNotFound || error.code === JetStreamApiCodes.NoMessageFound)) {
    throw new NotFoundError(what, { cause: error });
  }
  throw error;
}

function decodeMessage(stream: string, m: StoredMsg): StreamMessage {
  const headers: Record<string, string[]> = {};
  if (m.header) for (const [k, v] of m.header) headers[k] = v;
  return { stream, seq: m.seq, subject: m.subject, time: m.time.toISOString(), headers, data: m.string() };
}

export async function handleStreams(request: StreamsRequest, ctx: NaqContext): Promise<unknown> {
  const retry = ctx.retry;
  const jsm = () => ctx.jsm();
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
export function streamsLogic() {
  return serviceLogic<StreamsRequest>({
    accepts: STREAMS_REQUESTS,
    // Ready means JetStream answers: fail (and be restarted) rather than serve a server without it.
    setup: async (ctx) => {
      await ctx.jsm();
    },
    handle: handleStreams,
  });
}
