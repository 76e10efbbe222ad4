/**
 * Inbound MSG and HMSG frames read with `indexOf`: the mirror of pub-frames.ts. nats.js's
 * parser (a port of nats.go's) walks every byte of a frame's control line and trailer through
 * a state machine in JS, then walks the line again to split it: ~2 µs of a draining worker's
 * job in profiles (the job's delivery and its record's PubAck), ~9 % of its CPU. FrameReader
 * finds the line's end with the typed array's own search and its tokens in one tight loop, and
 * hands the client's dispatcher what the client's parser would: the same MsgArg, with views of
 * the same bytes. Any other frame (PING, INFO, +OK, -ERR), and any MSG it does not read as
 * the server writes it (lowercase, tabs, a bad number), goes to the client's parser, which
 * FrameReader extends, so what that parser accepts or refuses stays its own. `nc.protocol`
 * and `@nats-io/nats-core/internal` are not nats.js's documented API: without the shape
 * expected nothing is installed and the client reads as before (test/unit/msg-frames.test.ts
 * holds the reader to the client's parser on split and joined streams).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Kind, Parser, State, type MsgArg } from '@nats-io/nats-core/internal';

const NL = 10;
const CR = 13;
const SPACE = 32;
const H = 72;
const M = 77;
const S = 83;
const G = 71;
/** The client's own bound on a frame's sizes. */
const MAX_SIZE = 64 * 1024 * 1024;
/** The typed array's own search: a socket chunk is a Buffer, whose indexOf costs a few checks in JS first. */
const indexOf = Uint8Array.prototype.indexOf;

/** The decimal number in `buf[from, to)`, or -1 when it is not one (empty, other bytes, over 15 digits). */
function decimal(buf: Uint8Array, from: number, to: number): number {
  if (to <= from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

const MSG_LINE = [M, S, G, SPACE];
const HMSG_LINE = [H, M, S, G, SPACE];

/** `buf` from `i` on is the start of `MSG ` or `HMSG ` (as far as it goes). */
function startsFrame(buf: Uint8Array, i: number): boolean {
  const line = buf[i] === H ? HMSG_LINE : MSG_LINE;
  for (let k = 0; k < line.length && i + k < buf.length; k++) if (buf[i + k] !== line[k]) return false;
  return true;
}

/** Where each token of the control line being read starts and ends (reused: one line at a time). */
const starts = new Int32Array(5);
const ends = new Int32Array(5);

/** Incomplete: the frame needs more bytes than the buffer has. */
const MORE = -2;
/** Not read here: the client's parser reads it (or says what is wrong with it). */
const NOT_MINE = -1;

export class FrameReader extends Parser {
  /** The start of a frame the last chunk ended in, and what the next chunks gave it so far. */
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** The bytes the held frame needs in all, once its control line is whole (0: not known yet). */
  #need = 0;

  override parse(chunk: Uint8Array): void {
    if (this.#heldBytes === 0) return this.#read(chunk);
    // The frame the last chunk ended in is completed first, from as little of this one as it
    // needs (through its line's end; or its payload and CRLF), so the rest is read in place.
    let take: number;
    if (this.#need > 0) take = Math.min(chunk.length, this.#need - this.#heldBytes + 2);
    else {
      const nl = indexOf.call(chunk, NL);
      take = nl === -1 ? chunk.length : nl + 1;
    }
    this.#held.push(take === chunk.length ? chunk : chunk.subarray(0, take));
    this.#heldBytes += take;
    const lineCut = this.#need === 0 && chunk[take - 1] !== NL;
    if (lineCut || this.#need > this.#heldBytes) return;
    // A Buffer, as the socket's chunks are: the reads below see one kind of array.
    const joined = Buffer.concat(this.#held, this.#heldBytes);
    this.#held = [];
    this.#heldBytes = 0;
    this.#need = 0;
    this.#read(joined);
    if (take < chunk.length) this.parse(chunk.subarray(take));
  }

  #read(buf: Uint8Array): void {
    const end = buf.length;
    let i = 0;
    while (i < end) {
      // A frame the client's parser began and has not finished: it reads that frame's bytes
      // and no more (the rest of its payload, else through the line's end), so that the next
      // frame is read here again, not every chunk after by the client's parser.
      if (this.state !== State.OP_START) {
        const payload = this.state === State.MSG_PAYLOAD && this.msgBuf !== undefined ? this.ma.size - this.msgBuf.length : 0;
        let to: number;
        if (payload > 0) to = Math.min(end, i + payload);
        else {
          const nl = indexOf.call(buf, NL, i);
          to = nl === -1 ? end : nl + 1;
        }
        super.parse(i === 0 && to === end ? buf : buf.subarray(i, to));
        i = to;
        continue;
      }
      const nl = indexOf.call(buf, NL, i);
      const op = buf[i];
      if (nl === -1) {
        // The start of a MSG or HMSG line is held until the line is whole; anything else is
        // the client's to read (and to refuse at once, as it would).
        if (startsFrame(buf, i)) this.#hold(buf.subarray(i), 0);
        else super.parse(buf.subarray(i));
        return;
      }
      if (op === M || op === H) {
        const next = this.#frame(buf, i, nl, op === H);
        if (next === MORE) return;
        if (next !== NOT_MINE) {
          i = next;
          continue;
        }
        // One it does not read: the client's parser reads the rest of the chunk from here.
        super.parse(buf.subarray(i));
        return;
      }
      // Any other frame is one line: the client's parser reads it and is back at the start.
      super.parse(buf.subarray(i, nl + 1));
      i = nl + 1;
    }
  }

  #hold(part: Uint8Array, need: number): void {
    this.#held.push(part);
    this.#heldBytes = part.length;
    this.#need = need;
  }

  /**
   * Reads the frame at `i` whose control line ends at `nl`; returns where the next frame
   * starts, MORE (held until it is whole) or NOT_MINE.
   */
  #frame(buf: Uint8Array, i: number, nl: number, headers: boolean): number {
    let p = i;
    if (headers && buf[p++] !== H) return NOT_MINE;
    if (buf[p] !== M || buf[p + 1] !== S || buf[p + 2] !== G || buf[p + 3] !== SPACE) return NOT_MINE;
    p += 4;
    const lineEnd = buf[nl - 1] === CR ? nl - 1 : nl;
    // The tokens: subject, sid, [reply], [header size], size. The server separates them by
    // one space or more (two before the size when there is no reply); a tab or another control
    // byte, on which the client's parser splits too, leaves the line to that parser.
    let n = 0;
    let k = p;
    while (k < lineEnd) {
      let b = buf[k];
      while (b === SPACE) b = buf[++k];
      if (k >= lineEnd) break;
      if (n === 5) return NOT_MINE;
      starts[n] = k;
      while (b! > SPACE) b = buf[++k];
      if (k > lineEnd) k = lineEnd;
      ends[n++] = k;
      if (b !== SPACE && k < lineEnd) return NOT_MINE;
    }
    // MSG: subject sid [reply] size; HMSG: subject sid [reply] hdr size.
    const withReply = n === (headers ? 5 : 4);
    if (!withReply && n !== (headers ? 4 : 3)) return NOT_MINE;
    const sid = decimal(buf, starts[1]!, ends[1]!);
    const size = decimal(buf, starts[n - 1]!, ends[n - 1]!);
    const hdr = headers ? decimal(buf, starts[n - 2]!, ends[n - 2]!) : -1;
    if (sid < 0 || size < 0 || size > MAX_SIZE || (headers && (hdr < 0 || hdr > size))) return NOT_MINE;
    const from = nl + 1;
    const to = from + size;
    if (to > buf.length) {
      this.#hold(buf.subarray(i), to - i);
      return MORE;
    }
    // The client's parser dispatches a message before its trailer: one cut there, or without
    // CRLF, is its to read.
    if (to + 2 > buf.length || buf[to] !== CR || buf[to + 1] !== NL) return NOT_MINE;
    // Built in the order the client's parser builds it (newMsgArg), so every MsgArg has one shape.
    const ma = { sid: -1, hdr: -1, size: -1 } as MsgArg;
    ma.subject = buf.subarray(starts[0]!, ends[0]!);
    ma.sid = sid;
    ma.reply = withReply ? buf.subarray(starts[2]!, ends[2]!) : undefined;
    ma.hdr = hdr;
    ma.size = size;
    this.dispatcher.push({ kind: Kind.MSG, msg: ma, data: buf.subarray(from, to) });
    return to + 2;
  }
}

/** A FrameReader that carries on where the client's parser `p` is, mid-frame or not. */
function adopt(p: Parser): Parser {
  if (p instanceof FrameReader) return p;
  const reader = new FrameReader(p.dispatcher);
  Object.assign(reader, p);
  return reader;
}

/**
 * Makes the connection read with a FrameReader, now and after every reconnect (the client
 * makes a new parser each time: it is wrapped as it is set). Returns false, and changes
 * nothing, when this version of nats.js does not have the shape used.
 */
export function readFramesFast(nc: NatsConnection): boolean {
  const protocol = (nc as unknown as { protocol?: { parser?: unknown } }).protocol;
  if (!protocol || !(protocol.parser instanceof Parser) || typeof (protocol.parser as Parser).dispatcher?.push !== 'function') return false;
  let current: unknown = adopt(protocol.parser);
  Object.defineProperty(protocol, 'parser', {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: (p: unknown) => {
      current = p instanceof Parser ? adopt(p) : p;
    },
  });
  return true;
}
