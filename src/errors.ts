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

/** Turns anything thrown into an Error without losing it. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : JSON.stringify(value));
}

/** A plain, serialisable description of an error, for replies, logs and records. */
export interface ErrorInfo {
  name: string;
  code?: string;
  message: string;
}

export function errorInfo(value: unknown): ErrorInfo {
  const err = toError(value);
  const code = (err as { code?: unknown }).code;
  return {
    name: err.name,
    ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code) } : {}),
    message: err.message,
  };
}
