/**
 * Encoding job records and dead letters so they always fit one NATS message. A write that
 * is larger than the server's max_payload is refused by the client; for an outcome that
 * meant "not recorded, redeliver" forever, and for a dead letter a crash. So what must be
 * written is cut down until it fits, in order of what matters least, and says what was cut.
 */
import type { ErrorInfo } from '../core/errors.js';
import { WIRE_VERSION, type AttemptRecord, type DeadLetter, type JobMessage, type JobRecord, type LogLine } from './job.js';
import { utf8 } from '../core/utf8.js';
import { ByteWriter } from '../core/byte-writer.js';

/** The record as JSON bytes, or null when it cannot be encoded (only an unchecked value can do that). */
export function tryEncode(value: unknown): Uint8Array | null {
  try {
    return utf8(JSON.stringify(value));
  } catch {
    return null;
  }
}

const writer = new ByteWriter();

/**
 * The record of a first attempt that completed, as JSON bytes, written without building the
 * record object, its attempts array and the attempt, nor the text (the common outcome of every
 * job). Parsed, it equals the record `recordFromMessage(job, 'completed')` gets once the
 * attempt, the times, the result, the progress and the expiry are set
 * (test/unit/outcome.test.ts holds it to that). Throws what JSON.stringify throws on the result.
 */
export function completedFirstAttemptBytes(
  job: JobMessage,
  attempt: number,
  workerId: string,
  startedAt: number,
  finishedAt: number,
  result: unknown,
  progress: unknown,
  logs?: { lines: LogLine[]; dropped: number },
): Uint8Array {
  // What JSON.stringify encodes (a result's toJSON may run user code) is done before the
  // shared writer starts. A toJSON() that returns undefined leaves the key out, as encoding
  // the record object would.
  const resultJson = result === undefined || result === null ? 'null' : JSON.stringify(result);
  const progressJson = progress === undefined ? undefined : JSON.stringify(progress);
  const dependsOnJson = job.dependsOn ? JSON.stringify(job.dependsOn) : undefined;
  const logsJson = logs ? JSON.stringify(logs.lines) : undefined;
  const w = writer.begin();
  w.ascii(`{"v":${WIRE_VERSION},"id":`).string(job.id).ascii(',"name":').string(job.name).ascii(',"queue":').string(job.queue);
  w.ascii(',"status":"completed","maxAttempts":').number(job.attempts);
  w.ascii(',"attempts":[{"n":').number(attempt);
  // `,"startedAt":…,"finishedAt":…` is the attempt's and the record's: written once, copied once.
  const times = w.position;
  w.ascii(',"startedAt":').number(startedAt).ascii(',"finishedAt":').number(finishedAt);
  const timesEnd = w.position;
  w.ascii(',"workerId":').string(workerId).ascii('}],"enqueuedAt":').number(job.ts);
  if (dependsOnJson !== undefined) w.ascii(',"dependsOn":').json(dependsOnJson);
  if (job.priority !== undefined && job.priority !== 5) w.ascii(',"priority":').number(job.priority);
  if (job.group !== undefined) w.ascii(',"group":').string(job.group);
  if (job.parent !== undefined) w.ascii(',"parent":').string(job.parent);
  w.again(times, timesEnd);
  if (resultJson !== undefined) w.ascii(',"result":').json(resultJson);
  if (progressJson !== undefined) w.ascii(',"progress":').json(progressJson);
  if (job.resultTtlMs) w.ascii(',"expiresAt":').number(finishedAt + job.resultTtlMs);
  if (logs) {
    w.ascii(',"logs":').json(logsJson!);
    if (logs.dropped) w.ascii(',"logsDropped":').number(logs.dropped);
  }
  return w.ascii('}').take();
}

const SHORT_MESSAGE = 512;
const KEPT_ATTEMPTS_HEAD = 1;
const KEPT_ATTEMPTS_TAIL = 9;
const KEPT_DEPENDENCIES = 100;

function shortError(e: ErrorInfo): ErrorInfo {
  const short: ErrorInfo = { name: e.name.slice(0, 200), message: e.message.length > SHORT_MESSAGE ? `${e.message.slice(0, SHORT_MESSAGE)}… [cut]` : e.message };
  if (e.code !== undefined) short.code = e.code.slice(0, 200);
  return short;
}

function shortAttempt(a: AttemptRecord): AttemptRecord {
  return a.error ? { ...a, error: shortError(a.error) } : a;
}

/**
 * Steps from the least to the most drastic; each returns a smaller record (a copy) and the
 * name of what it cut.
 */
const RECORD_CUTS: ReadonlyArray<(r: JobRecord) => [JobRecord, string] | null> = [
  (r) => (r.logs !== undefined ? [{ ...r, logs: undefined, logsDropped: (r.logsDropped ?? 0) + r.logs.length }, 'logs'] : null),
  (r) => (r.result !== undefined || r.data !== undefined ? [{ ...r, result: undefined, data: undefined }, 'result'] : null),
  (r) => (r.progress !== undefined ? [{ ...r, progress: undefined }, 'progress'] : null),
  (r) => [{ ...r, attempts: (r.attempts ?? []).map(shortAttempt), ...(r.error ? { error: shortError(r.error) } : {}) }, 'error details'],
  (r) => {
    const attempts = r.attempts ?? [];
    if (attempts.length <= KEPT_ATTEMPTS_HEAD + KEPT_ATTEMPTS_TAIL) return null;
    return [{ ...r, attempts: [...attempts.slice(0, KEPT_ATTEMPTS_HEAD), ...attempts.slice(-KEPT_ATTEMPTS_TAIL)] }, 'attempts'];
  },
  (r) => (r.dependsOn && r.dependsOn.length > KEPT_DEPENDENCIES ? [{ ...r, dependsOn: r.dependsOn.slice(0, KEPT_DEPENDENCIES) }, 'dependsOn'] : null),
];

/**
 * The record as bytes of at most `maxBytes`. When it is larger, parts are cut (logs, result and
 * payload, progress, error details, the middle attempts, dependencies) and named in
 * `trimmed`, so a reader knows. Never throws.
 */
export function encodeRecord(record: JobRecord, maxBytes: number): Uint8Array {
  let bytes = tryEncode(record);
  if (bytes && bytes.length <= maxBytes) return bytes;
  let current = record;
  const trimmed: string[] = [...(record.trimmed ?? [])];
  for (const cut of RECORD_CUTS) {
    const next = cut(current);
    if (!next) continue;
    current = next[0];
    if (!trimmed.includes(next[1])) trimmed.push(next[1]);
    bytes = tryEncode({ ...current, trimmed });
    if (bytes && bytes.length <= maxBytes) return bytes;
  }
  // Only fields a foreign producer could make huge are left (name, ids): keep the bones.
  const bones: JobRecord = {
    v: record.v,
    id: String(record.id).slice(0, 200),
    name: String(record.name).slice(0, 200),
    queue: String(record.queue).slice(0, 200),
    status: record.status,
    maxAttempts: record.maxAttempts,
    attempts: [],
    enqueuedAt: record.enqueuedAt,
    trimmed: [...trimmed, 'everything else'],
  };
  for (const k of ['startedAt', 'finishedAt', 'deadSeq', 'expiresAt'] as const) if (record[k] !== undefined) bones[k] = record[k];
  if (record.error) bones.error = shortError(record.error);
  return utf8(JSON.stringify(bones));
}

/** How much of an oversized payload a dead letter keeps, as text, so a person can see what it was. */
export const DEAD_PREVIEW_CHARS = 16 * 1024;

/**
 * The dead letter as bytes of at most `maxBytes`. A job whose payload does not fit beside the
 * reason is kept without its data, with `dataTruncated` (its size and the start of its JSON)
 * in its place: never dropped, never a failed publish. Never throws.
 */
export function encodeDeadLetter(dead: DeadLetter, maxBytes: number): Uint8Array {
  let bytes = tryEncode(dead);
  if (bytes && bytes.length <= maxBytes) return bytes;
  const smaller: DeadLetter = { ...dead, ...(dead.error ? { error: shortError(dead.error) } : {}), reason: dead.reason.slice(0, 2 * SHORT_MESSAGE) };
  if (smaller.job) {
    const { data, ...job } = smaller.job;
    let dataJson: string;
    try {
      dataJson = JSON.stringify(data) ?? 'null';
    } catch {
      dataJson = '(not encodable)';
    }
    smaller.job = { ...job, data: null };
    smaller.dataTruncated = { bytes: Buffer.byteLength(dataJson), preview: dataJson.slice(0, DEAD_PREVIEW_CHARS) };
  }
  if (smaller.raw !== undefined) smaller.raw = smaller.raw.slice(0, DEAD_PREVIEW_CHARS);
  bytes = tryEncode(smaller);
  if (bytes && bytes.length <= maxBytes) return bytes;
  // Left: a job whose name or ids are huge (a foreign producer): keep the reason and where.
  const bones: DeadLetter = {
    v: dead.v,
    reason: smaller.reason,
    queue: dead.queue,
    subject: dead.subject.slice(0, 1024),
    ts: dead.ts,
    ...(dead.jobId ? { jobId: dead.jobId.slice(0, 200) } : {}),
    ...(smaller.error ? { error: smaller.error } : {}),
    ...(smaller.dataTruncated ? { dataTruncated: { bytes: smaller.dataTruncated.bytes, preview: smaller.dataTruncated.preview.slice(0, 1024) } } : {}),
  };
  return utf8(JSON.stringify(bones));
}
