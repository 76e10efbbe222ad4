/**
 * Reading JetStream's answer to a publish. Every job's record write gets one, so the common
 * answer, `{"stream":"<name>", "seq":<n>}` as nats-server writes it (with `,"duplicate": true`
 * for a repeated msg id), is read from the bytes without decoding them to a string and parsing
 * JSON. Anything else (an error, a domain, a stream name that is not plain ASCII, a field order
 * the server may choose one day) goes through JSON.parse, so the answer read is the same either
 * way (test/unit/pub-ack.test.ts; test/integration/jetstream-api.test.ts holds it to a real
 * server's answers, which the first version of this reader missed for want of their space).
 */

/** The answer's fields naq reads; `error` set when the server refused the publish. */
export interface PubAckBody {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: { err_code?: number; code?: number; description?: string };
}

const decoder = new TextDecoder();
const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const STREAM_KEY = ascii('{"stream":"');
const SEQ_KEY = ascii('"seq"');
const DUPLICATE_KEY = ascii('"duplicate"');
const TRUE = ascii('true');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const CLOSE = 0x7d;

/** The last stream name read, and its bytes: nearly every answer names the same stream. */
let lastName = '';
let lastBytes = new Uint8Array(0);

function startsWithAt(data: Uint8Array, at: number, bytes: Uint8Array): boolean {
  if (at + bytes.length > data.length) return false;
  for (let i = 0; i < bytes.length; i++) if (data[at + i] !== bytes[i]) return false;
  return true;
}

/** Past JSON's whitespace (space, tab, LF, CR): nats-server writes `, "seq":` and `"duplicate": true`. */
function skipSpace(data: Uint8Array, i: number): number {
  for (; i < data.length; i++) {
    const c = data[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return i;
  }
  return i;
}

/** Past `<ws><byte><ws>`, or -1 when the byte is not there. */
function past(data: Uint8Array, i: number, byte: number): number {
  i = skipSpace(data, i);
  return data[i] === byte ? skipSpace(data, i + 1) : -1;
}

function streamName(data: Uint8Array, from: number, to: number): string {
  const length = to - from;
  if (length === lastBytes.length) {
    let same = true;
    for (let i = 0; i < length; i++) {
      if (data[from + i] !== lastBytes[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastName;
  }
  lastBytes = data.slice(from, to);
  lastName = String.fromCharCode(...lastBytes);
  return lastName;
}

/**
 * The common answer read in place, or undefined when it is not that shape. nats-server (2.9
 * and later) writes `{"stream":"<name>", "seq":<n>}` and `{"stream":"<name>", "seq":<n>,"duplicate": true}`;
 * any JSON whitespace between the tokens is taken.
 */
export function commonPubAck(data: Uint8Array): PubAckBody | undefined {
  if (!startsWithAt(data, 0, STREAM_KEY)) return undefined;
  let i = STREAM_KEY.length;
  const nameFrom = i;
  for (; i < data.length && data[i] !== QUOTE; i++) {
    const c = data[i]!;
    // Escapes and anything beyond printable ASCII: JSON.parse reads those right.
    if (c === BACKSLASH || c < 0x20 || c > 0x7e) return undefined;
  }
  const nameTo = i;
  if (nameTo === nameFrom || i === data.length) return undefined;
  i = past(data, i + 1, COMMA);
  if (i < 0 || !startsWithAt(data, i, SEQ_KEY)) return undefined;
  i = past(data, i + SEQ_KEY.length, COLON);
  if (i < 0) return undefined;
  let seq = 0;
  const digitsFrom = i;
  for (; i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39; i++) seq = seq * 10 + (data[i]! - 0x30);
  // Beyond 2^53 the digits would not be read exactly; no stream gets there, but JSON.parse agrees.
  if (i === digitsFrom || i - digitsFrom > 15 || (data[digitsFrom] === 0x30 && i - digitsFrom > 1)) return undefined;
  let duplicate = false;
  i = skipSpace(data, i);
  if (data[i] === COMMA) {
    i = skipSpace(data, i + 1);
    if (!startsWithAt(data, i, DUPLICATE_KEY)) return undefined;
    i = past(data, i + DUPLICATE_KEY.length, COLON);
    if (i < 0 || !startsWithAt(data, i, TRUE)) return undefined;
    duplicate = true;
    i = skipSpace(data, i + TRUE.length);
  }
  if (data[i] !== CLOSE || skipSpace(data, i + 1) !== data.length) return undefined;
  const stream = streamName(data, nameFrom, nameTo);
  return duplicate ? { stream, seq, duplicate } : { stream, seq };
}

/** The server's answer to a publish; throws (a SyntaxError) when it is not JSON. */
export function readPubAck(data: Uint8Array): PubAckBody {
  return commonPubAck(data) ?? (JSON.parse(decoder.decode(data)) as PubAckBody);
}
