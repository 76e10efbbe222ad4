/**
 * The inbound frame reader (msg-frames.ts), without a server: fed any stream of frames cut at
 * any points, it dispatches what nats.js's own parser dispatches, in the same order, and
 * refuses what that parser refuses.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Parser, type ParserEvent } from '@nats-io/nats-core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameReader, readFramesFast } from '../../src/actors/nats/msg-frames.js';

const te = new TextEncoder();
const td = new TextDecoder();

/** What a dispatcher saw, copied at once (the parsers hand out views of their buffers). */
function recorder() {
  const seen: string[] = [];
  return {
    seen,
    push(e: ParserEvent) {
      const m = e.msg;
      seen.push(
        JSON.stringify({
          kind: e.kind,
          ...(m ? { subject: td.decode(m.subject), reply: m.reply ? td.decode(m.reply) : null, sid: m.sid, hdr: m.hdr, size: m.size } : {}),
          data: e.data ? Buffer.from(e.data).toString('hex') : null,
        }),
      );
    },
  };
}

/** Feeds `chunks` to a parser of each kind; what each dispatched, or the error it threw. */
function both(chunks: Uint8Array[]) {
  const run = (make: (d: ReturnType<typeof recorder>) => Parser) => {
    const d = recorder();
    const parser = make(d);
    try {
      for (const c of chunks) parser.parse(c);
      return { seen: d.seen, state: parser.state };
    } catch (error) {
      // The label, not the bytes quoted after it: the client's parser quotes the rest of the
      // buffer it was given, the reader hands it one line at a time.
      return { seen: d.seen, error: (error as Error).message.split(':')[0] };
    }
  };
  return { client: run((d) => new Parser(d)), reader: run((d) => new FrameReader(d)) };
}

function cut(bytes: Uint8Array, at: number[]): Uint8Array[] {
  const points = [...new Set(at.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    if (p > from) chunks.push(Buffer.from(bytes.subarray(from, p)));
    from = p;
  }
  return chunks;
}

function join(frames: (string | Uint8Array)[]): Uint8Array {
  return Buffer.concat(frames.map((f) => (typeof f === 'string' ? te.encode(f) : f)));
}

const token = fc.stringMatching(/^[A-Za-z0-9_$.>*-]{1,40}$/);
const payload = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  { weight: 1, arbitrary: fc.constantFrom(te.encode('\r\n'), te.encode('MSG x 1 2\r\n'), new Uint8Array(0)) },
  { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 140_000 }).map((n) => new Uint8Array(n).fill(65)) },
);

/** A frame as the server writes it. */
const serverFrame = fc.oneof(
  {
    weight: 6,
    // Without a reply, nats-server 2.9 writes two spaces before the size.
    arbitrary: fc.record({ subject: token, sid: fc.nat(1_000_000), reply: fc.option(token), two: fc.boolean(), data: payload }).map(({ subject, sid, reply, two, data }) =>
      join([`MSG ${subject} ${sid} ${reply ? `${reply} ` : two ? ' ' : ''}${data.length}\r\n`, data, '\r\n']),
    ),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({ subject: token, sid: fc.nat(1_000_000), reply: fc.option(token), value: token, data: payload })
      .map(({ subject, sid, reply, value, data }) => {
        const h = te.encode(`NATS/1.0\r\nNats-Msg-Id: ${value}\r\n\r\n`);
        return join([`HMSG ${subject} ${sid} ${reply ? `${reply} ` : ''}${h.length} ${h.length + data.length}\r\n`, h, data, '\r\n']);
      }),
  },
  { weight: 1, arbitrary: fc.constantFrom('PING\r\n', 'PONG\r\n', '+OK\r\n', "-ERR 'Permissions Violation for Publish to \"x\"'\r\n", 'INFO {"server_id":"x","max_payload":1048576}\r\n').map((s) => te.encode(s)) },
);

/** Frames the server does not write but the client's parser reads: the reader must agree. */
const oddFrame = fc.constantFrom(
  'msg a 1 3\r\nabc\r\n',
  'MSG  a 1 3\r\nabc\r\n',
  'MSG a\t1 3\r\nabc\r\n',
  'MSG a 1 3 \r\nabc\r\n',
  'MSG a 1 3\nabc\r\n',
  'MSG a 1 r 3\r\nabc\r\n',
  'HMSG a 1 12 12\r\nNATS/1.0\r\n\r\n\r\n',
  'MSG a 1 3\r\nabcXY',
  'MSG a 1 3\r\nabc\n',
);

describe('FrameReader', () => {
  it('dispatches what the client parser dispatches, for any frames cut anywhere', () => {
    fc.assert(
      fc.property(fc.array(serverFrame, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, at) => {
        const bytes = join(frames);
        const { client, reader } = both(cut(bytes, at));
        expect(client.error).toBeUndefined();
        expect(reader).toEqual(client);
        expect(reader.seen).toHaveLength(frames.length);
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with the client parser on frames the server does not write, and where they leave it', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(serverFrame, oddFrame.map((s) => te.encode(s))), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), (frames, at) => {
        const { client, reader } = both(cut(join(frames), at));
        expect(reader).toEqual(client);
      }),
      { numRuns: 300 },
    );
  });

  it('throws what the client parser throws on bytes that are no frame', () => {
    const { client, reader } = both([te.encode('PING\r\nXYZ\r\n')]);
    expect(client.error).toMatch(/parse error/);
    expect(reader).toEqual(client);
  });

  it('a message split in many chunks is dispatched once, whole, after its last chunk', () => {
    const data = new Uint8Array(200_000).map((_, i) => i % 251);
    const bytes = join([`MSG big 7 reply.to ${data.length}\r\n`, data, '\r\nPING\r\n']);
    const chunks = cut(bytes, Array.from({ length: 40 }, (_, i) => i * 5_003 + 3));
    const d = recorder();
    const reader = new FrameReader(d);
    for (const c of chunks.slice(0, -1)) reader.parse(c);
    expect(d.seen).toHaveLength(0);
    reader.parse(chunks.at(-1)!);
    expect(d.seen).toEqual(both(chunks).client.seen);
  });
});

describe('FrameReader reads for itself', () => {
  it('the frames after one the client parser had to finish (its trailer cut off)', () => {
    const frames = ['MSG a 1  5\r\nhello\r\n', 'MSG b 2 inbox.x 5\r\nworld\r\n', 'MSG c 3 6\r\nagain!\r\n'];
    const bytes = join(frames);
    const cutAt = frames[0]!.length - 1;
    const given: number[] = [];
    const clientParse = Parser.prototype.parse;
    Parser.prototype.parse = function (this: Parser, buf: Uint8Array) {
      given.push(buf.length);
      clientParse.call(this, buf);
    };
    const d = recorder();
    const reader = new FrameReader(d);
    try {
      reader.parse(Buffer.from(bytes.subarray(0, cutAt)));
      reader.parse(Buffer.from(bytes.subarray(cutAt)));
    } finally {
      Parser.prototype.parse = clientParse;
    }
    expect(d.seen).toHaveLength(3);
    // The first frame, then its last byte: nothing of the two frames after it.
    expect(given).toEqual([cutAt, 1]);
  });
});

describe('FrameReader joins', () => {
  it('only the frame cut between two chunks: the frames after it are read in place', () => {
    const frames = ['MSG a 1 5\r\nhello\r\n', 'MSG b 2 inbox.x 5\r\nworld\r\n', 'MSG c 3  6\r\nagain!\r\n'];
    const bytes = join(frames);
    for (const cutAt of [frames[0]!.length + 3, frames[0]!.length + 20, frames[0]!.length + frames[1]!.length - 1]) {
      const first = new Uint8Array(bytes.subarray(0, cutAt));
      const second = new Uint8Array(bytes.subarray(cutAt));
      const data: Uint8Array[] = [];
      const reader = new FrameReader({ push: (e: ParserEvent) => void (e.data && data.push(e.data)) });
      reader.parse(first);
      reader.parse(second);
      expect(data.map((d) => td.decode(d))).toEqual(['hello', 'world', 'again!']);
      expect(data[0]!.buffer).toBe(first.buffer);
      expect(data[1]!.buffer).not.toBe(second.buffer);
      expect(data[1]!.byteLength).toBe(5);
      expect(data[2]!.buffer).toBe(second.buffer);
    }
  });
});

describe('readFramesFast', () => {
  it('carries on where the client parser is, mid-frame, and wraps the parser a reconnect makes', () => {
    const bytes = join(['MSG a 1 5\r\nhello\r\n', 'MSG b 2 inbox.x 5\r\nworld\r\n', 'PONG\r\n']);
    const d = recorder();
    const protocol = { parser: new Parser(d) as Parser };
    const nc = { protocol } as unknown as NatsConnection;
    protocol.parser.parse(bytes.subarray(0, 25));
    expect(readFramesFast(nc)).toBe(true);
    expect(protocol.parser).toBeInstanceOf(FrameReader);
    protocol.parser.parse(bytes.subarray(25));
    expect(d.seen).toEqual(both([bytes]).client.seen);

    // The client makes a new parser on every reconnect: it is read with a FrameReader too.
    protocol.parser = new Parser(d);
    expect(protocol.parser).toBeInstanceOf(FrameReader);
    protocol.parser.parse(te.encode('MSG c 3 1\r\nx\r\n'));
    expect(d.seen).toHaveLength(4);
  });

  it('changes nothing on a connection without the parser it knows', () => {
    const protocol = { parser: { parse() {} } };
    expect(readFramesFast({ protocol } as unknown as NatsConnection)).toBe(false);
    expect(readFramesFast({} as NatsConnection)).toBe(false);
    expect(protocol.parser).not.toBeInstanceOf(FrameReader);
  });
});
