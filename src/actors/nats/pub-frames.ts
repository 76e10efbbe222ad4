/**
 * Core PUB frames written straight into one buffer for the publisher's batch (publisher.ts):
 * the job records and the acks a worker sends every turn. Through `nc.publish`, each message
 * had its protocol line built as a string and encoded on its own by TextEncoder, and its
 * subjects checked by a regular expression: ~13 % of a worker's CPU in profiles, the encoding
 * alone ~6 %. The bytes written are exactly those `nc.publish` writes, and they go to the
 * client's own outbound buffer (its `sendCommand`), so ordering, flushing and reconnects are
 * the client's as before. `nc.protocol` is not part of nats.js's documented API: outboundOf
 * checks its shape, and without it every publish goes through `nc.publish` as before
 * (test/integration/jetstream-api.test.ts runs the frames against a real server).
 */
import type { NatsConnection } from '@nats-io/transport-node';

/** JetStream's ack payload (`+ACK`): written by the publisher's frames and by a delivery's own ack. */
export const ACK = Uint8Array.of(43, 65, 67, 75);

/** What is used of the client's protocol handler (nats.js v3's `nc.protocol`). */
export interface Outbound {
  sendCommand(cmd: Uint8Array): void;
  info?: { max_payload?: number };
  noMorePublishing?: boolean;
  outMsgs: number;
  outBytes: number;
}

/** The client's outbound, when this version of nats.js offers it (else: publish one by one). */
export function outboundOf(nc: NatsConnection): Outbound | undefined {
  const protocol = (nc as unknown as { protocol?: Partial<Outbound> }).protocol;
  return protocol && typeof protocol.sendCommand === 'function' && typeof protocol.outMsgs === 'number' ? (protocol as Outbound) : undefined;
}

/**
 * A subject the PUB line carries as it is: printable ASCII without spaces. Anything else
 * goes through `nc.publish`, which refuses what the server would (whitespace, empty).
 */
export function plainSubject(subject: string): boolean {
  if (subject.length === 0) return false;
  for (let i = 0; i < subject.length; i++) {
    const c = subject.charCodeAt(i);
    if (c <= 32 || c > 126) return false;
  }
  return true;
}

function digits(n: number): number {
  return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10_000 ? 4 : n < 100_000 ? 5 : n < 1_000_000 ? 6 : n < 10_000_000 ? 7 : n < 100_000_000 ? 8 : String(n).length;
}

/** The bytes of `PUB <subject> [<reply>] <size>\r\n<payload>\r\n`; the reply is `replyLength` long (0: none). */
export function frameSize(subject: string, replyLength: number, size: number): number {
  return 4 + subject.length + (replyLength > 0 ? replyLength + 1 : 0) + 1 + digits(size) + 2 + size + 2;
}

function ascii(buf: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[at++] = text.charCodeAt(i);
  return at;
}

/**
 * Writes one frame at `at` and returns where it ends. The reply subject is given in two
 * pieces (the publisher's inbox prefix and the token), so it is never built as a string.
 */
export function writeFrame(buf: Uint8Array, at: number, subject: string, replyPrefix: string, replyToken: string, payload: Uint8Array): number {
  buf[at++] = 80; // P
  buf[at++] = 85; // U
  buf[at++] = 66; // B
  buf[at++] = 32;
  at = ascii(buf, at, subject);
  buf[at++] = 32;
  if (replyPrefix.length + replyToken.length > 0) {
    at = ascii(buf, at, replyPrefix);
    at = ascii(buf, at, replyToken);
    buf[at++] = 32;
  }
  at = ascii(buf, at, String(payload.length));
  buf[at++] = 13;
  buf[at++] = 10;
  buf.set(payload, at);
  at += payload.length;
  buf[at++] = 13;
  buf[at++] = 10;
  return at;
}
