/** The entry points: defaults, library input (resolveConfig) and the CLI's layers (loadConfig). */
import { ConfigError } from '../core/errors.js';
import { readEnv } from './env.js';
import { readConfigFile } from './file.js';
import { isPlainObject } from './objects.js';
import { ConfigSchema, type NaqConfig, type NaqConfigInput } from './schema.js';
import { describe, dottedLayer, envLayer, validate, type Layer } from './validate.js';

/** A fresh copy of the defaults. */
export function defaultConfig(): NaqConfig {
  return ConfigSchema.parse({});
}

/** Defaults ← input, validated. For library users (createNaq). */
export function resolveConfig(input: NaqConfigInput = {}): NaqConfig {
  if (!isPlainObject(input)) throw new ConfigError('(root)', `expected an object, got ${describe(input)}`);
  return validate([dottedLayer(input)]);
}

export interface LoadConfigOptions {
  /** A .json, .yaml or .yml file. */
  file?: string;
  /**
   * Environment variables, normally `process.env`. Not read implicitly, so that
   * loadConfig stays a pure function of its arguments.
   */
  env?: Record<string, string | undefined>;
  /** CLI flags in config shape; `undefined` values are ignored. */
  flags?: NaqConfigInput;
}

/** Defaults ← file ← env ← flags, validated. For the CLI. */
export function loadConfig(opts: LoadConfigOptions = {}): NaqConfig {
  const layers: Layer[] = [];
  if (opts.file !== undefined) layers.push(dottedLayer(readConfigFile(opts.file), `in ${opts.file}`));
  if (opts.env !== undefined) layers.push(envLayer(readEnv(opts.env)));
  if (opts.flags !== undefined) {
    if (!isPlainObject(opts.flags)) throw new ConfigError('(flags)', `expected an object, got ${describe(opts.flags)}`);
    layers.push(dottedLayer(opts.flags, 'from flags'));
  }
  return validate(layers);
}
