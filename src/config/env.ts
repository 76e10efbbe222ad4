/**
 * The environment layer: which NAQ_ variables exist (a few well-known names, and a generic
 * NAQ_<SECTION>__<KEY> for every other leaf), and how their strings become typed values.
 */
import { ConfigError } from '../core/errors.js';
import { setPath } from './objects.js';
import { LEAVES, type Leaf } from './schema-paths.js';
import { suggest } from './suggest.js';

const ENV_PREFIX = 'NAQ_';
// Reserved for test harnesses and internal plumbing, which share the NAQ_ namespace.
const RESERVED_ENV_PREFIXES = ['NAQ_TEST_', 'NAQ_INTERNAL_'];

const WELL_KNOWN_ENV: Readonly<Record<string, string>> = {
  NAQ_NATS_URL: 'nats.url',
  NAQ_PREFIX: 'prefix',
  NAQ_LOG_LEVEL: 'log.level',
  NAQ_NATS_USER: 'nats.user',
  NAQ_NATS_PASSWORD: 'nats.password',
  NAQ_NATS_TOKEN: 'nats.token',
  NAQ_NATS_NKEY_SEED: 'nats.nkeySeed',
  NAQ_NATS_CREDS: 'nats.credsFile',
  NAQ_TLS_CA: 'nats.tls.caFile',
  NAQ_TLS_CERT: 'nats.tls.certFile',
  NAQ_TLS_KEY: 'nats.tls.keyFile',
  NAQ_REPLICAS: 'storage.replicas',
  NAQ_ROLES: 'roles',
};

const screamingSnake = (key: string): string =>
  key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

const genericEnvName = (path: readonly string[]): string =>
  ENV_PREFIX + path.map(screamingSnake).join('__');

export interface KnownEnvVar {
  /** The variable name, e.g. `NAQ_SUPERVISOR__MAX_RESTARTS`. */
  name: string;
  /** The dotted config key it sets, e.g. `supervisor.maxRestarts`. */
  key: string;
  /** The expected form of its value, in words. */
  expected: string;
}

const ENV_TABLE: ReadonlyMap<string, Leaf> = (() => {
  const byKey = new Map(LEAVES.map((leaf) => [leaf.path.join('.'), leaf]));
  const table = new Map<string, Leaf>();
  const aliased = new Set<string>();
  for (const [name, key] of Object.entries(WELL_KNOWN_ENV)) {
    const leaf = byKey.get(key);
    if (leaf === undefined) throw new Error(`naq bug: env ${name} maps to unknown key ${key}`);
    table.set(name, leaf);
    aliased.add(key);
  }
  // The generic form exists only for keys without a well-known name, so one key never
  // has two spellings that could disagree.
  for (const leaf of LEAVES) {
    const key = leaf.path.join('.');
    if (!aliased.has(key)) table.set(genericEnvName(leaf.path), leaf);
  }
  return table;
})();

/** Every environment variable naq reads, for docs and `--help`. */
export const KNOWN_ENV_VARS: readonly KnownEnvVar[] = Object.freeze(
  [...ENV_TABLE].map(([name, leaf]) =>
    Object.freeze({
      name,
      key: leaf.path.join('.'),
      expected:
        leaf.type === 'array' ? `${leaf.form}, comma-separated` : leaf.form,
    }),
  ),
);

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Turns an env string into the type the schema expects. A string that does not convert is
 * passed through unchanged, so validation reports it with the expected form and the
 * variable's name, the same way as any other bad value.
 */
function coerceEnv(raw: string, type: string): unknown {
  if (type === 'string') return raw;
  const value = raw.trim();
  switch (type) {
    case 'number':
      return DECIMAL.test(value) ? Number(value) : raw;
    case 'boolean': {
      const word = value.toLowerCase();
      return TRUE_WORDS.has(word) ? true : FALSE_WORDS.has(word) ? false : raw;
    }
    case 'array':
      return value
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    default:
      return value;
  }
}

export interface EnvLayer {
  data: Record<string, unknown>;
  /** dotted key → variable name */
  names: Map<string, string>;
}

export function readEnv(env: Record<string, string | undefined>): EnvLayer {
  const data: Record<string, unknown> = {};
  const names = new Map<string, string>();
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(ENV_PREFIX)) continue;
    if (RESERVED_ENV_PREFIXES.some((reserved) => name.startsWith(reserved))) continue;
    const raw = env[name];
    const leaf = ENV_TABLE.get(name);
    if (leaf === undefined) {
      const hint = suggest(name, [...ENV_TABLE.keys()]);
      throw new ConfigError(
        name,
        'unknown environment variable; expected one of the NAQ_ variables naq reads' +
          (hint === undefined ? '' : ` (did you mean ${hint}?)`) +
          ', or a NAQ_TEST_/NAQ_INTERNAL_ name, which naq ignores',
      );
    }
    // Empty means unset: compose files and CI templates often export `NAQ_X=` for
    // "not given", and an empty string is never a valid value here anyway.
    if (raw === undefined || raw === '') continue;
    setPath(data, leaf.path, coerceEnv(raw, leaf.type));
    names.set(leaf.path.join('.'), name);
  }
  return { data, names };
}
