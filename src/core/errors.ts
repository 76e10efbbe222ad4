/**
 * naq's typed errors. Every error a user can see has a stable `code`, so callers branch on
 * the code (or `instanceof`) rather than on message text.
 */
export class NaqError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A config file, environment variable or flag has an unknown key or a bad value. */
export class ConfigError extends NaqError {
  /** The dotted key (or env variable / flag) at fault. */
  readonly key: string;
  constructor(key: string, message: string) {
    super('CONFIG', `invalid config ${key}: ${message}`);
    this.key = key;
  }
}

/** An operation did not complete within its timeout. */
export class OperationTimeoutError extends NaqError {
  constructor(operation: string, timeoutMs: number, options?: ErrorOptions) {
    super('TIMEOUT', `${operation} did not complete within ${timeoutMs} ms`, options);
  }
}

/** There is no usable NATS connection (not yet connected, closed, or given up). */
export class NotConnectedError extends NaqError {
  constructor(message = 'not connected to NATS', options?: ErrorOptions) {
    super('NOT_CONNECTED', message, options);
  }
}

/** Connecting to NATS failed for good (attempts exhausted or credentials refused). */
export class ConnectionFailedError extends NaqError {
  constructor(message: string, options?: ErrorOptions) {
    super('CONNECTION_FAILED', message, options);
  }
}

/** A KV update named a revision that is no longer the key's latest. */
export class RevisionMismatchError extends NaqError {
  readonly bucket: string;
  readonly key: string;
  readonly expected: number;
  constructor(bucket: string, key: string, expected: number, options?: ErrorOptions) {
    super('REVISION_MISMATCH', `${bucket}/${key}: expected revision ${expected} is not the latest`, options);
    this.bucket = bucket;
    this.key = key;
    this.expected = expected;
  }
}

/** A KV create found the key already present. */
export class KeyExistsError extends NaqError {
  constructor(bucket: string, key: string, options?: ErrorOptions) {
    super('KEY_EXISTS', `${bucket}/${key} already exists`, options);
  }
}

/** A stream, bucket or message that was asked for does not exist. */
export class NotFoundError extends NaqError {
  constructor(what: string, options?: ErrorOptions) {
    super('NOT_FOUND', `${what} not found`, options);
  }
}

/** A message was sent to an actor that does not accept it, or the actor is not running. */
export class ActorUnavailableError extends NaqError {
  constructor(actor: string, message = 'is not running', options?: ErrorOptions) {
    super('ACTOR_UNAVAILABLE', `actor ${actor} ${message}`, options);
  }
}

/** An argument given to the API is invalid (bad name, bad option). */
export class InvalidArgumentError extends NaqError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * The server refused an operation because the connection's user may not publish or subscribe
 * to `subject`. Never transient: retrying cannot help until the permissions change.
 */
export class PermissionDeniedError extends NaqError {
  readonly subject: string;
  readonly operation: 'publish' | 'subscribe';
  constructor(operation: 'publish' | 'subscribe', subject: string, options?: ErrorOptions) {
    super(
      'PERMISSION_DENIED',
      `NATS permission denied: this user may not ${operation} to "${subject}" (docs/security.md lists what each naq role needs)`,
      options,
    );
    this.subject = subject;
    this.operation = operation;
  }
}

/** Longest error message kept in records, dead letters and replies; the rest is cut and marked. */
export const MAX_ERROR_MESSAGE_CHARS = 4096;
/** How many `cause`s of an error are kept. */
const MAX_CAUSES = 3;

/** Cuts `text` to `max` characters, saying how much was cut. */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… [${text.length - max} more characters cut]`;
}

/**
 * A short, never-throwing description of any value: what a handler threw may be circular,
 * hold a BigInt, be a Proxy that throws on every read, or have a toString that throws.
 */
export function describeValue(value: unknown, max = MAX_ERROR_MESSAGE_CHARS): string {
  try {
    if (typeof value === 'string') return truncateText(value, max);
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'symbol') return value.toString();
    if (typeof value === 'function') return `[function ${value.name || 'anonymous'}]`;
    if (value === undefined) return 'undefined';
    if (value === null || typeof value !== 'object') return String(value);
    const seen = new WeakSet<object>();
    const json = JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (typeof v === 'function') return `[function ${(v as { name?: string }).name || 'anonymous'}]`;
      if (typeof v === 'symbol') return v.toString();
      if (v && typeof v === 'object') {
        if (seen.has(v)) return '[circular]';
        seen.add(v);
      }
      return v;
    });
    return truncateText(json ?? Object.prototype.toString.call(value), max);
  } catch {
    try {
      return truncateText(Object.prototype.toString.call(value), max);
    } catch {
      return '[unreadable value]';
    }
  }
}

/** Reads `key` of `value`, or undefined when reading it throws (a hostile getter or Proxy). */
function read(value: unknown, key: string): unknown {
  try {
    return (value as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/** Turns anything thrown into an Error without losing it; never throws itself. */
export function toError(value: unknown): Error {
  let isError = false;
  try {
    isError = value instanceof Error;
  } catch {
    // a Proxy whose getPrototypeOf trap throws
  }
  if (isError) return value as Error;
  return new Error(describeValue(value));
}

/** A plain, serialisable description of an error, for replies, logs and records. */
export interface ErrorInfo {
  name: string;
  code?: string;
  message: string;
  /** What caused it, when the error said (`new Error(msg, { cause })`); at most three deep. */
  cause?: ErrorInfo;
  /** The stack the error carried (a job record's latest error only; see withStack). */
  stack?: string;
}

/** Stacks are for reading, not payloads. */
const MAX_STACK_CHARS = 4096;

/** `info` with the stack `thrown` carries, cut to MAX_STACK_CHARS; `info` itself when it has none. Never throws. */
export function withStack(info: ErrorInfo, thrown: unknown): ErrorInfo {
  try {
    const stack = thrown !== null && typeof thrown === 'object' ? read(thrown, 'stack') : undefined;
    return typeof stack === 'string' && stack ? { ...info, stack: truncateText(stack, MAX_STACK_CHARS) } : info;
  } catch {
    return info;
  }
}

/**
 * Whatever was thrown, as an ErrorInfo that always encodes: strings only, message cut at
 * MAX_ERROR_MESSAGE_CHARS, causes followed three deep. Never throws.
 */
export function errorInfo(value: unknown): ErrorInfo {
  return infoOf(value, 0);
}

function infoOf(value: unknown, depth: number): ErrorInfo {
  try {
    const err = toError(value);
    const name = read(err, 'name');
    const message = read(err, 'message');
    const code = read(err, 'code');
    const info: ErrorInfo = {
      name: typeof name === 'string' && name ? truncateText(name, 200) : 'Error',
      message: typeof message === 'string' ? truncateText(message, MAX_ERROR_MESSAGE_CHARS) : describeValue(message),
    };
    if (typeof code === 'string' || typeof code === 'number') info.code = truncateText(String(code), 200);
    const cause = err === value ? read(err, 'cause') : undefined;
    if (cause !== undefined && depth < MAX_CAUSES) info.cause = infoOf(cause, depth + 1);
    return info;
  } catch {
    return { name: 'Error', message: '[an error that could not be read]' };
  }
}
