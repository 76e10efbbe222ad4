import { REDACTED, SECRET_PROPERTY_NAMES } from './secret-keys.js';

/**
 * Scrubbing for anything that leaves the process (inspector events, recordings): secret
 * strings are replaced wherever they appear, values under secret-named keys are replaced
 * whole, and — unless payloads are allowed — job and KV payloads are elided.
 */
const PAYLOAD_KEYS = new Set(['data', 'value', 'payload', 'result']);

export interface ScrubOptions {
  secrets: string[];
  /** Keep job / KV payloads (data, value, payload, result). */
  payloads?: boolean;
  maxDepth?: number;
}

export function createScrubber(options: ScrubOptions) {
  const secrets = options.secrets.filter((s) => s.length > 0);
  const maxDepth = options.maxDepth ?? 8;
  const scrubString = (s: string) => secrets.reduce((t, secret) => (t.includes(secret) ? t.split(secret).join(REDACTED) : t), s);

  const walk = (value: unknown, depth: number, seen: WeakSet<object>): unknown => {
    if (typeof value === 'string') return scrubString(value);
    if (typeof value !== 'object' || value === null) return typeof value === 'function' ? undefined : value;
    if (value instanceof Uint8Array) return options.payloads ? `[${value.length} bytes]` : '[payload]';
    if (seen.has(value)) return '[circular]';
    if (depth >= maxDepth) return '[…]';
    seen.add(value);
    const json = (value as { toJSON?: () => unknown }).toJSON;
    if (typeof json === 'function' && !(value instanceof Date)) return walk(json.call(value), depth + 1, seen);
    if (value instanceof Date) return value.toISOString();
    if (value instanceof Error) return { name: value.name, message: scrubString(value.message) };
    if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1, seen));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (SECRET_PROPERTY_NAMES.has(k) && v !== undefined) out[k] = REDACTED;
      else if (!options.payloads && PAYLOAD_KEYS.has(k) && v !== undefined && v !== null) out[k] = '[payload]';
      else out[k] = walk(v, depth + 1, seen);
    }
    return out;
  };
  return <T>(value: T): T => walk(value, 0, new WeakSet()) as T;
}
