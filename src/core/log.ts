import { pino, type Logger } from 'pino';
import { REDACTED, SECRET_PROPERTY_NAMES } from './secret-keys.js';

export type { Logger };

export interface LogOptions {
  level: string;
  /** undefined: pretty when stdout is a terminal. */
  pretty?: boolean | undefined;
  /** Strings that must never reach a log line (passwords, tokens, seeds). */
  secrets?: string[];
  destination?: NodeJS.WritableStream;
}

/**
 * Paths pino redacts in a log object: the secret names at the top and two levels down (pino's
 * paths have no any-depth wildcard). A secret value deeper, or in free text, is still caught
 * by the string scrub below when the logger is given the secrets.
 */
const REDACT_PATHS = [...SECRET_PROPERTY_NAMES].flatMap((name) => [name, `*.${name}`, `*.*.${name}`]);

export function createLogger(options: LogOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s) => s.length > 0);
  const scrub = (text: string) => secrets.reduce((t, s) => t.split(s).join(REDACTED), text);
  const pretty = options.pretty ?? Boolean(process.stdout.isTTY);
  const base = {
    level: options.level,
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    // Secrets can hide in free text too (an error message quoting a URL with credentials).
    hooks: secrets.length
      ? {
          streamWrite: scrub,
        }
      : {},
  };
  if (pretty && !options.destination) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, destination: 2 } } });
  }
  // Synchronous: pino's asynchronous destination, flushed at process.exit, writes what was
  // queued before the write still in flight, so the last lines of a run could come out of order
  // ("bye" before "stopping kv"). Nothing on the per-job path logs at info or above.
  return pino(base, (options.destination as never) ?? pino.destination({ dest: 2, sync: true }));
}
