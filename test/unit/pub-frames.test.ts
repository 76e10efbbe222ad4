/**
 * The publisher's PUB frames (pub-frames.ts) and its flush (publisher.ts), without a server:
 * the bytes are those the client writes for the same messages, in the same order.
 */
import { headers, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { AsyncPublisher } from '../../src/actors/nats/publisher.js';
import { frameSize, plainSubject, writeFrame } from '../../src/actors/nats/pub-frames.js';

const te = new TextEncoder();
const td = new TextDecoder();

/** What nats.js writes for a publish: `PUB <subject> [<reply> ]<size>\r\n<payload>\r\n` (HPUB with headers). */
function clientBytes(subject: string, reply: string, payload: Uint8Array, hdrs?: MsgHdrs): string {
  const data = td.decode(payload);
  if (hdrs) {
    const h = td.decode((hdrs as MsgHdrs & { encode(): Uint8Array }).encode());
    return `HPUB ${subject} ${reply ? `${reply} ` : ''}${h.length} ${h.length + payload.length}\r\n${h}${data}\r\n`;
  }
  return `PUB ${subject} ${reply ? `${reply} ` : ''}${payload.length}\r\n${data}\r\n`;
}

function frame(subject: string, prefix: string, token: string, payload: Uint8Array): Uint8Array {
  const size = frameSize(subject, prefix.length + token.length, payload.length);
  const buf = new Uint8Array(size);
  expect(writeFrame(buf, 0, subject, prefix, token, payload)).toBe(size);
  return buf;
}

describe('PUB frames', () => {
  it('are the bytes the client writes, with and without a reply, for payloads of every digit count', () => {
    for (const n of [0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 99_999, 100_000, 1_048_576]) {
      const payload = te.encode('x'.repeat(n));
      expect(td.decode(frame('$KV.naq_jobs.abc', '_INBOX.Q1.', 'z9', payload))).toBe(clientBytes('$KV.naq_jobs.abc', '_INBOX.Q1.z9', payload));
      expect(td.decode(frame('$JS.ACK.NAQ_JOBS.c.1.2.3.4.5', '', '', payload))).toBe(clientBytes('$JS.ACK.NAQ_JOBS.c.1.2.3.4.5', '', payload));
    }
  });

  it('carry any payload bytes as they are', () => {
    const payload = te.encode('{"result":"é ✓ \u0000\r\n"}');
    const bytes = frame('s', 'r.', '1', payload);
    const head = te.encode(`PUB s r.1 ${payload.length}\r\n`);
    expect(bytes.subarray(0, head.length)).toEqual(head);
    expect(bytes.subarray(head.length, head.length + payload.length)).toEqual(payload);
    expect(bytes.subarray(head.length + payload.length)).toEqual(te.encode('\r\n'));
  });

  it('are written only for subjects of printable ASCII without spaces', () => {
    for (const ok of ['$JS.ACK.NAQ_JOBS.naq-q.1.22.7.1796000000000000000.0', '$KV.naq_jobs.a-b_c=d/e', 'naq.events.q~3']) expect(plainSubject(ok), ok).toBe(true);
    for (const odd of ['', 'a b', 'a\tb', 'a\r\nb', 'é', 'a\u0000', 'a\u007f']) expect(plainSubject(odd), JSON.stringify(odd)).toBe(false);
  });
});

/** A connection that records, as one byte stream, what the publisher hands the client. */
function fakeConnection(maxPayload = 1000) {
  const stream: string[] = [];
  const protocol = {
    outMsgs: 0,
    outBytes: 0,
    info: { max_payload: maxPayload },
    noMorePublishing: false,
    sendCommand: (buf: Uint8Array) => void stream.push(td.decode(buf)),
  };
  let closed = false;
  const nc = {
    protocol,
    isClosed: () => closed,
    status: () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => {}) }), stop() {} }),
    subscribe: () => ({ unsubscribe() {} }),
    publish: (subject: string, data: Uint8Array | string, opts?: { reply?: string; headers?: MsgHdrs }) => {
      const payload = typeof data === 'string' ? te.encode(data) : data;
      // As the client: it refuses what the server would.
      if (payload.length > maxPayload) throw new Error('max_payload size exceeded');
      if (/\s/.test(subject) || subject.length === 0) throw new Error(`bad subject ${subject}`);
      protocol.outMsgs++;
      protocol.outBytes += payload.length;
      stream.push(clientBytes(subject, opts?.reply ?? '', payload, opts?.headers));
    },
  };
  return { nc: nc as unknown as NatsConnection, protocol, stream, close: () => (closed = true) };
}

const turn = () => new Promise((r) => setImmediate(r));

/** An ack handed to ackLater: answered once, by the publisher or by itself. */
function delivery(reply: string | undefined) {
  const calls: string[] = [];
  let done = false;
  return {
    calls,
    ack() {
      if (done) return;
      done = true;
      calls.push('ack');
    },
    ackSubject(): string | null {
      if (done || !reply) return null;
      done = true;
      calls.push('subject');
      return reply;
    },
  };
}

describe('AsyncPublisher: one turn of publishes and acks', () => {
  it('writes frames for what it can, hands the rest to the client in its place, and the acks after the writes', async () => {
    const { nc, protocol, stream } = fakeConnection();
    const publisher = new AsyncPublisher(nc, { timeoutMs: 60_000 });
    const h = headers();
    h.set('Nats-Msg-Id', 'm1');
    const results = [
      publisher.publish('$KV.b.one', te.encode('1')),
      publisher.publish('$KV.b.two', te.encode('22')),
      publisher.publish('events.q', te.encode('e'), { msgId: 'm1' }),
      publisher.publish('$KV.b.three', 'text'),
      publisher.publish('$KV.b.big', new Uint8Array(1001)),
      publisher.publish('odd subject', te.encode('o')),
      publisher.publish('$KV.b.four', te.encode('4444')),
    ].map((p) => p.catch((e: Error) => e.message));
    const acked = delivery('$JS.ACK.S.c.1.2.3.4.0');
    const noSubject = delivery(undefined);
    publisher.ackLater(acked);
    publisher.ackLater(noSubject);
    await turn();
    const reply = (k: number) => expect.stringMatching(new RegExp(`^_INBOX\\.[A-Za-z0-9]+\\.${k.toString(36)}$`));
    const replies = stream.join('').match(/_INBOX\.[A-Za-z0-9]+\.[0-9a-z]+/g) ?? [];
    expect(replies).toEqual([reply(0), reply(1), reply(2), reply(3), reply(6)]);
    const inbox = replies[0]!.slice(0, replies[0]!.lastIndexOf('.') + 1);
    expect(stream).toEqual([
      // One buffer for the first two writes.
      clientBytes('$KV.b.one', `${inbox}0`, te.encode('1')) + clientBytes('$KV.b.two', `${inbox}1`, te.encode('22')),
      // Headers and a string: through the client, in their place.
      clientBytes('events.q', `${inbox}2`, te.encode('e'), h),
      clientBytes('$KV.b.three', `${inbox}3`, te.encode('text')),
      // The last write, then the ack.
      clientBytes('$KV.b.four', `${inbox}6`, te.encode('4444')) + clientBytes('$JS.ACK.S.c.1.2.3.4.0', '', te.encode('+ACK')),
    ]);
    // What the client refuses fails that publish alone.
    const settled = await Promise.race([Promise.all(results.slice(4, 6)), turn().then(() => 'pending')]);
    expect(settled).toEqual(['max_payload size exceeded', 'bad subject odd subject']);
    expect(acked.calls).toEqual(['subject']);
    expect(noSubject.calls).toEqual(['ack']);
    // The client's count of published messages includes the frames.
    expect(protocol.outMsgs).toBe(6);
    expect(protocol.outBytes).toBe(1 + 2 + 1 + 4 + 4 + 4);
    publisher.close();
  });

  it('runs what later() is given at the next flush, just before the batch, so it shares the write; a task that throws stops nothing', async () => {
    const { nc, stream } = fakeConnection();
    const publisher = new AsyncPublisher(nc, { timeoutMs: 60_000 });
    // A task alone schedules the flush.
    publisher.later(() => nc.publish('$JS.API.CONSUMER.MSG.NEXT.S.c', te.encode('{"batch":1}'), { reply: '_INBOX.P.0' }));
    expect(stream).toEqual([]);
    await turn();
    expect(stream).toEqual([clientBytes('$JS.API.CONSUMER.MSG.NEXT.S.c', '_INBOX.P.0', te.encode('{"batch":1}'))]);
    stream.length = 0;
    const write = publisher.publish('$KV.b.one', te.encode('1'));
    const order: string[] = [];
    publisher.later(() => {
      order.push('first');
      throw new Error('a bug in a task');
    });
    publisher.later(() => {
      order.push('second');
      nc.publish('$JS.API.CONSUMER.MSG.NEXT.S.c', te.encode('{"batch":2}'), { reply: '_INBOX.P.0' });
    });
    // Queued meanwhile, not yet run.
    expect(order).toEqual([]);
    await turn();
    expect(order).toEqual(['first', 'second']);
    expect(stream).toHaveLength(2);
    expect(stream[0]).toBe(clientBytes('$JS.API.CONSUMER.MSG.NEXT.S.c', '_INBOX.P.0', te.encode('{"batch":2}')));
    expect(stream[1]).toMatch(/^PUB \$KV\.b\.one _INBOX\.[A-Za-z0-9]+\.0 1\r\n1\r\n$/);
    void write.catch(() => {});
    publisher.close();
  });

  it('on a closed or draining connection every publish goes through the client, which refuses it', async () => {
    const { nc, protocol, stream, close } = fakeConnection();
    const publisher = new AsyncPublisher(nc, { timeoutMs: 60_000 });
    protocol.noMorePublishing = true;
    const first = publisher.publish('$KV.b.one', te.encode('1'));
    await turn();
    expect(stream).toHaveLength(1);
    expect(stream[0]).toMatch(/^PUB \$KV\.b\.one _INBOX\./);
    protocol.noMorePublishing = false;
    close();
    (nc as unknown as { publish: () => void }).publish = () => {
      throw new Error('closed');
    };
    await expect(publisher.publish('$KV.b.two', te.encode('2'))).rejects.toThrow('closed');
    void first.catch(() => {});
    publisher.close();
  });
});
