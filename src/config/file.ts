/** The file layer: a .json, .yaml or .yml file read into a plain object, or a ConfigError naming the file. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import type * as Yaml from 'yaml';
import { ConfigError } from '../core/errors.js';
import { defineKey, isPlainObject } from './objects.js';
import { describe } from './validate.js';

const require = createRequire(import.meta.url);

/** Loaded on first use: ~8 MB of memory that a process without a YAML file need not carry. */
export function yaml(): typeof Yaml {
  return require('yaml') as typeof Yaml;
}

export function readConfigFile(file: string): Record<string, unknown> {
  const ext = extname(file).toLowerCase();
  if (ext !== '.json' && ext !== '.yaml' && ext !== '.yml') {
    const got = ext === '' ? 'no extension' : `"${ext}"`;
    throw new ConfigError(file, `expected a config file ending in .json, .yaml or .yml, got ${got}`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, `expected a readable config file: ${(err as Error).message}`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let parsed: unknown;
  try {
    parsed = ext === '.json' ? JSON.parse(text) : yaml().parse(text);
  } catch (err) {
    const kind = ext === '.json' ? 'JSON' : 'YAML';
    throw new ConfigError(file, `expected valid ${kind}: ${(err as Error).message}`);
  }
  // A YAML file holding only comments parses to null: treat it as "nothing configured".
  if (parsed === null || parsed === undefined) return {};
  if (!isPlainObject(parsed)) {
    throw new ConfigError(file, `expected a mapping of config keys at the top level, got ${describe(parsed)}`);
  }
  return dropNulls(parsed);
}

/**
 * In YAML, `url:` with nothing after it, or a section whose children are all commented
 * out, is null. Reading null as "not set" lets users comment lines out freely.
 */
function dropNulls(value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (child === null) continue;
    defineKey(out, key, isPlainObject(child) ? dropNulls(child) : child);
  }
  return out;
}
