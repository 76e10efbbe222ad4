import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level: string;
  /** undefined: pretty when stdout is a terminal. */
  pretty?: boolean | undefined;
  /** Strings that must never reach a log line (passwords, tokens, seeds). */
  secrets?: string[];
  destination?: NodeJS.WritableStream;
}

/** Paths pino redacts wherever they appear in a log object. */
const REDACT_PATHS = ['password', 'pass', 'token', 'nkeySeed', 'seed', '*.password', '*.pass', '*.token', '*.nkeySeed', '*.seed', '*.*.password', '*.*.token', '*.*.nkeySeed'];

export function createLogger(options: LogOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s) => s.length > 0);
  const scrub = (text: string) => secrets.reduce((t, s) => t.split(s).join('[redacted]'), text);
  const pretty = options.pretty ?? Boolean(process.stdout.isTTY);
  const base = {
    level: options.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
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
  return pino(base, (options.destination as never) ?? pino.destination(2));
}
