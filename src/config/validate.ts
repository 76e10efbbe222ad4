/**
 * Merge and validate, and report what is wrong where the user wrote it: each problem names
 * the dotted key, the environment variable or the file whose value won the merge, and says
 * "expected X, got Y" without ever showing a secret.
 */
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import type { EnvLayer } from './env.js';
import { redactNatsUrl } from './nats-url.js';
import { getPath, mergeInto } from './objects.js';
import { ConfigSchema, formOf, type NaqConfig } from './schema.js';
import { formatPath, keysAt, schemaAt, type Path } from './schema-paths.js';
import { CREDENTIAL_URL_KEY, SECRET_CONFIG_KEYS } from '../core/secret-keys.js';
import { suggest } from './suggest.js';

export interface Layer {
  data: Record<string, unknown>;
  /** Where a value at `path` came from: the error key and a note for the message. */
  origin(path: Path): { key: string; note?: string };
}

export const dottedLayer = (data: Record<string, unknown>, note?: string): Layer => ({
  data,
  origin: (path) => ({ key: formatPath(path), ...(note === undefined ? {} : { note }) }),
});

export function envLayer(env: EnvLayer): Layer {
  return {
    data: env.data,
    origin(path) {
      for (let n = path.length; n > 0; n--) {
        const key = path.slice(0, n).join('.');
        const name = env.names.get(key);
        if (name !== undefined) return { key: name, note: `sets ${key}` };
      }
      return { key: formatPath(path) };
    },
  };
}

/** A value as error messages show it: secrets never, a URL's credentials redacted. */
export function describe(value: unknown, path: Path = []): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  const key = path.join('.');
  if (SECRET_CONFIG_KEYS.has(key)) return typeof value === 'string' ? 'a string' : `a ${typeof value}`;
  if (typeof value === 'string') {
    const shown = key === CREDENTIAL_URL_KEY ? redactNatsUrl(value) : value;
    return JSON.stringify(shown.length > 80 ? `${shown.slice(0, 77)}...` : shown);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) {
    const json = JSON.stringify(value) ?? 'a list';
    return json.length > 80 ? 'a list' : json;
  }
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

interface Problem {
  key: string;
  message: string;
}

function problemsOf(issues: readonly z.core.$ZodIssue[], merged: unknown, layers: readonly Layer[]): Problem[] {
  const problems: Problem[] = [];
  const locate = (path: Path) => {
    for (let i = layers.length - 1; i >= 0; i--) {
      const layer = layers[i];
      if (layer !== undefined && getPath(layer.data, path) !== undefined) return layer.origin(path);
    }
    return { key: formatPath(path) };
  };
  const add = (path: Path, message: string) => {
    const { key, note } = locate(path);
    problems.push({ key, message: note === undefined ? message : `${message} (${note})` });
  };
  for (const issue of issues) {
    // Config keys are never symbols; dropping them just satisfies PropertyKey[].
    const path = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      const known = keysAt(path);
      for (const unknown of issue.keys) {
        const hint = suggest(unknown, known);
        add(
          [...path, unknown],
          `unknown key${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; expected one of: ${known.join(', ')}`,
        );
      }
      continue;
    }
    if (issue.code === 'custom' && (issue.params as { explicit?: boolean } | undefined)?.explicit === true) {
      add(path, issue.message);
      continue;
    }
    const schema = schemaAt(path);
    const form = (schema === undefined ? undefined : formOf(schema)) ?? 'a valid value';
    add(path, `expected ${form}, got ${describe(getPath(merged, path), path.map(String))}`);
  }
  return problems;
}

/** Merges the layers in order and validates; the ConfigError names the key (or variable) that won. */
export function validate(layers: readonly Layer[]): NaqConfig {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) mergeInto(merged, layer.data);
  const result = ConfigSchema.safeParse(merged);
  if (result.success) return result.data;
  const problems = problemsOf(result.error.issues, merged, layers);
  const [first, ...rest] = problems;
  if (first === undefined) throw new ConfigError('(root)', result.error.message);
  const more = rest.map((p) => `${p.key}: ${p.message}`).join('; ');
  throw new ConfigError(first.key, rest.length === 0 ? first.message : `${first.message}; also ${more}`);
}
