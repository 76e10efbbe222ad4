/**
 * JetStream API helpers naq calls instead of the client's, against a real server.
 */
import { headers } from '@nats-io/transport-node';
import { AckPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { consumerNames, missingConsumers } from '../../src/actors/nats/jetstream.js';
import { FrameReader, readFramesFast } from '../../src/actors/nats/msg-frames.js';
import { commonPubAck } from '../../src/actors/nats/pub-ack.js';
import { AsyncPublisher } from '../../src/actors/nats/publisher.js';
import { toPermissionDenied } from '../../src/core/permissions.js';
import { connectTo, startServer, stopAllServers, until } from '../support/harness.js';

afterAll(stopAllServers);

/** A server of its own, a connection to it and its JetStream manager. */
async function freshServer() {
  const nc = await connectTo(await startServer());
  return { nc, jsm: await jetstreamManager(nc) };
}

describe('consumerNames', () => {
  it('names every consumer of the stream, over more than one page of the API, and only its own', async () => {
    const { nc, jsm } = await freshServer();
    await jsm.streams.add({ name: 'MANY', subjects: ['many.>'] });
    await jsm.streams.add({ name: 'OTHER', subjects: ['other.>'] });
    await jsm.consumers.add('OTHER', { durable_name: 'not-this-one', ack_policy: AckPolicy.Explicit });
    // The server answers 1024 names a page: 1030 need a second one.
    const wanted: string[] = [];
    for (let i = 0; i < 1030; i++) wanted.push(`c-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < wanted.length; i += 50) {
      await Promise.all(wanted.slice(i, i + 50).map((name) => jsm.consumers.add('MANY', { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: `many.${name}` })));
    }
    const names = await consumerNames(nc, jsm, 'MANY', 5000);
    expect(names).toHaveLength(wanted.length);
    expect([...names].sort()).toEqual(wanted);
    await nc.close();
  }, 60_000);

  it('a stream that does not exist is the API error that says so', async () => {
    const { nc, jsm } = await freshServer();
    const error = await consumerNames(nc, jsm, 'MISSING').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JetStreamApiError);
    expect((error as JetStreamApiError).code).toBe(JetStreamApiCodes.StreamNotFound);
    await nc.close();
  });
});

describe('missingConsumers', () => {
  it('names the wanted consumers a stream does not have, and all of them when the stream is gone', async () => {
    const { nc, jsm } = await freshServer();
    await jsm.streams.add({ name: 'SOME', subjects: ['some.>'] });
    await jsm.consumers.add('SOME', { durable_name: 'a', ack_policy: AckPolicy.Explicit });
    expect(await missingConsumers(nc, jsm, 'SOME', ['a', 'b'])).toEqual(['b']);
    await jsm.streams.delete('SOME');
    expect(await missingConsumers(nc, jsm, 'SOME', ['a', 'b'])).toEqual(['a', 'b']);
    await nc.close();
  });
});

describe('consumerNames with the permissions of an older deployment', () => {
  it('a user allowed the consumer list but not the names API still gets the names; one allowed neither is refused the names', async () => {
    const server = await startServer({
      configText: `authorization {
  users = [
    { user: admin, password: admin-pw }
    { user: lister, password: lister-pw, permissions: { publish: { allow: ["$JS.API.CONSUMER.LIST.OLD", "_INBOX.>"] }, subscribe: { allow: ["_INBOX.>"] } } }
    { user: nobody, password: nobody-pw, permissions: { publish: { allow: ["_INBOX.>"] }, subscribe: { allow: ["_INBOX.>"] } } }
  ]
}`,
    });
    const admin = await connectTo(server, { user: 'admin', pass: 'admin-pw' });
    const adminJsm = await jetstreamManager(admin);
    await adminJsm.streams.add({ name: 'OLD', subjects: ['old.>'] });
    for (const name of ['a', 'b', 'c']) await adminJsm.consumers.add('OLD', { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: `old.${name}` });

    const lister = await connectTo(server, { user: 'lister', pass: 'lister-pw' });
    const jsm = await jetstreamManager(lister, { checkAPI: false });
    expect((await consumerNames(lister, jsm, 'OLD', 2000)).sort()).toEqual(['a', 'b', 'c']);

    // Allowed neither: the refusal named is the one of the names API, what the docs grant.
    const nobody = await connectTo(server, { user: 'nobody', pass: 'nobody-pw' });
    const refused = await consumerNames(nobody, await jetstreamManager(nobody, { checkAPI: false }), 'OLD', 2000).catch((e: unknown) => e);
    expect(toPermissionDenied(refused)?.subject).toBe('$JS.API.CONSUMER.NAMES.OLD');
  });
});

describe('publish answers', () => {
  it("the server's answers to a write and to a repeated msg id are read in place, as JSON.parse reads them", async () => {
    // Every job's record write waits for this answer; a shape the in-place reader misses costs
    // each job a decode and a JSON.parse (the first reader expected no space before "seq").
    const { nc, jsm } = await freshServer();
    await jsm.streams.add({ name: 'ANSWERS', subjects: ['answers.>'] });
    const h = headers();
    h.set('Nats-Msg-Id', 'one');
    const texts: string[] = [];
    for (let i = 0; i < 2; i++) texts.push((await nc.request('answers.x', 'hi', { headers: h, timeout: 5000 })).string());
    texts.push((await nc.request('answers.y', 'hi')).string());
    expect(JSON.parse(texts[1]!)).toMatchObject({ stream: 'ANSWERS', seq: 1, duplicate: true });
    for (const text of texts) expect(commonPubAck(new TextEncoder().encode(text)), text).toEqual(JSON.parse(text));
    await nc.close();
  });
});

describe("the publisher's frames (pub-frames.ts) on a real server", () => {
  it('a turn of writes, one with headers among them, is stored in the order it was made, and acks written as frames are taken', async () => {
    const { nc, jsm } = await freshServer();
    await jsm.streams.add({ name: 'FRAMES', subjects: ['frames.>'] });
    const publisher = new AsyncPublisher(nc, { timeoutMs: 10_000 });
    const te = new TextEncoder();
    const before = nc.stats().outMsgs;
    // One turn: frames, a publish with a msg id (written by the client), frames again.
    const writes = [
      publisher.publish('frames.a', te.encode('1')),
      publisher.publish('frames.a', te.encode('2'), { msgId: 'two' }),
      publisher.publish('frames.a', te.encode('3')),
    ];
    for (let i = 0; i < 2000; i++) writes.push(publisher.publish(`frames.b.${i}`, te.encode(`{"n":${i},"pad":"${'x'.repeat(i % 300)}"}`)));
    const acks = await Promise.all(writes);
    expect(acks.map((a) => a.seq)).toEqual(acks.map((_, i) => i + 1));
    const js = jetstream(nc);
    expect((await jsm.streams.getMessage('FRAMES', { seq: 2 }))!.header.get('Nats-Msg-Id')).toBe('two');
    expect((await jsm.streams.getMessage('FRAMES', { last_by_subj: 'frames.a' }))!.string()).toBe('3');
    expect((await jsm.streams.getMessage('FRAMES', { last_by_subj: 'frames.b.1999' }))!.json()).toMatchObject({ n: 1999 });
    expect(nc.stats().outMsgs - before).toBeGreaterThanOrEqual(2003);

    await jsm.consumers.add('FRAMES', { durable_name: 'c', ack_policy: AckPolicy.Explicit, filter_subject: 'frames.b.>' });
    const consumer = await js.consumers.get('FRAMES', 'c');
    const pulled: JsMsg[] = [];
    for await (const m of await consumer.fetch({ max_messages: 50, expires: 2000 })) {
      pulled.push(m);
      if (pulled.length === 50) break;
    }
    expect(pulled).toHaveLength(50);
    expect((await jsm.consumers.info('FRAMES', 'c')).num_ack_pending).toBe(50);
    for (const m of pulled) {
      const reply = (m as JsMsg & { reply?: string }).reply!;
      publisher.ackLater({ ack: () => m.ack(), ackSubject: () => reply });
    }
    await until(async () => (await jsm.consumers.info('FRAMES', 'c')).num_ack_pending === 0, 10_000);
    expect((await jsm.consumers.info('FRAMES', 'c')).ack_floor.stream_seq).toBe(53);
    publisher.close();
    await nc.close();
  });
});

describe("the frame reader (msg-frames.ts) on a real server", () => {
  it('reads deliveries of every size, with headers and without, and reads for the connection again after the server restarts', async () => {
    const server = await startServer();
    const nc = await connectTo(server, { reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    expect(readFramesFast(nc)).toBe(true);
    const protocol = (nc as unknown as { protocol: { parser: unknown } }).protocol;
    expect(protocol.parser).toBeInstanceOf(FrameReader);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'READ', subjects: ['read.>'] });
    const js = jetstream(nc);
    // Sizes around the socket's read chunks (64 KiB) and up to near max_payload, so frames are cut.
    const sizes = [0, 1, 2, 100, 65_535, 65_536, 65_537, 200_000, 1_000_000, ...Array.from({ length: 300 }, (_, i) => (i * 7_919) % 3_000)];
    const body = (n: number, i: number) => new Uint8Array(n).map((_, k) => (k * 31 + i) % 256);
    const sent = await Promise.all(
      sizes.map((n, i) => {
        const h = headers();
        h.set('N', String(i));
        return js.publish(`read.${i}`, body(n, i), i % 2 ? { headers: h } : undefined);
      }),
    );
    expect(sent.map((a) => a.seq)).toEqual(sizes.map((_, i) => i + 1));
    await jsm.consumers.add('READ', { durable_name: 'c', ack_policy: AckPolicy.Explicit });
    const consumer = await js.consumers.get('READ', 'c');
    const read = async (count: number) => {
      const got: JsMsg[] = [];
      const messages = await consumer.consume({ max_messages: 100 });
      for await (const m of messages) {
        got.push(m);
        m.ack();
        if (got.length === count) break;
      }
      return got;
    };
    const got = await read(sizes.length);
    for (const m of got) {
      const i = Number(m.subject.split('.')[1]);
      expect(Buffer.from(m.data).equals(Buffer.from(body(sizes[i]!, i)))).toBe(true);
      expect(m.headers?.get('N')).toBe(i % 2 ? String(i) : undefined);
    }
    expect(new Set(got.map((m) => m.seq)).size).toBe(sizes.length);

    // The client makes a new parser when it reconnects: it reads with a FrameReader too.
    const before = protocol.parser;
    await server.restart();
    await until(async () => {
      try {
        await nc.flush();
        return protocol.parser !== before;
      } catch {
        return false;
      }
    });
    expect(protocol.parser).toBeInstanceOf(FrameReader);
    const again = await js.publish('read.again', body(70_000, 7));
    const m = await js.consumers.get('READ', 'c').then((c) => c.next({ expires: 5_000 }));
    expect(m?.seq).toBe(again.seq);
    expect(Buffer.from(m!.data).equals(Buffer.from(body(70_000, 7)))).toBe(true);
    await nc.close();
  }, 60_000);
});
