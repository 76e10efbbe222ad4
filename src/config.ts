/**
 * naq's configuration: one typed, validated object, merged from
 * defaults ← config file ← environment ← CLI flags.
 *
 * Every problem is a ConfigError whose key is where the user has to look: the dotted key
 * (file, flags, library input), the environment variable, or the file path.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { ConfigError } from './errors.js';

// ---------------------------------------------------------------------------------------
// Schema

/**
 * The expected form of each leaf, in words, for error messages. Kept beside the schema
 * (not in zod's messages) so one formatter can say "expected X, got Y" with the key and
 * source the user actually wrote, whichever check failed.
 */
const forms = new WeakMap<z.ZodType, string>();

function expecting<T extends z.ZodType>(schema: T, form: string): T {
  forms.set(schema, form);
  return schema;
}

// Node clamps larger setTimeout delays to 1 ms (with only a warning), so a huge duration
// would silently become "immediately".
const MAX_TIMER_MS = 2_147_483_647;

const int = (min: number, max?: number) =>
  expecting(
    max === undefined ? z.number().int().min(min) : z.number().int().min(min).max(max),
    max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
  );

const ms = (min = 0) =>
  expecting(
    z.number().int().min(min).max(MAX_TIMER_MS),
    `an integer number of milliseconds from ${min} to ${MAX_TIMER_MS}`,
  );

const bool = () => expecting(z.boolean(), 'true or false');
const text = () => expecting(z.string().min(1), 'a non-empty string');
const filePath = () => expecting(z.string().min(1), 'a non-empty file path');
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  expecting(z.enum(values), `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
const section = <T extends z.core.$ZodLooseShape>(shape: T) =>
  expecting(z.strictObject(shape), 'an object');

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const ROLES = ['producer', 'worker', 'scheduler'] as const;
export const NATS_URL_SCHEMES = ['nats', 'tls', 'ws', 'wss'] as const;
export const DEFAULT_NATS_SERVER = 'nats://127.0.0.1:4222';

const NATS_URL_FORM =
  'one or more comma-separated nats://, tls://, ws:// or wss:// URLs or host:port';

const natsUrl = expecting(z.string().refine(isValidNatsUrlList), NATS_URL_FORM);

const tls = expecting(
  z
    .strictObject({
      caFile: filePath().optional(),
      certFile: filePath().optional(),
      keyFile: filePath().optional(),
    })
    .superRefine((value, ctx) => {
      // A client certificate is useless without its key and vice versa; catching it here
      // beats a TLS handshake failure at connect time.
      const [has, missing] =
        value.certFile !== undefined && value.keyFile === undefined
          ? (['certFile', 'keyFile'] as const)
          : value.keyFile !== undefined && value.certFile === undefined
            ? (['keyFile', 'certFile'] as const)
            : [undefined, undefined];
      if (has !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [missing],
          message:
            `expected a file path: nats.tls.${missing} is required because nats.tls.${has} ` +
            'is set (certFile and keyFile go together)',
          params: { explicit: true },
        });
      }
    }),
  'an object',
);

const ConfigSchema = section({
  prefix: expecting(
    z.string().regex(/^[A-Za-z0-9_-]+$/),
    'a non-empty name of letters, digits, "_" and "-"',
  ).default('naq'),
  nats: section({
    url: natsUrl.optional(),
    name: text().default('naq'),
    user: text().optional(),
    password: text().optional(),
    token: text().optional(),
    nkeySeed: text().optional(),
    credsFile: filePath().optional(),
    tls: tls.optional(),
    connectTimeoutMs: ms(1).default(5000),
    // A link that stops delivering without closing (a dropped NAT entry, a peer gone behind
    // a firewall) shows only as unanswered pings: the client reconnects when maxPingsOut
    // pings are still unanswered at the next ping, i.e. 20–30 s after the link died here.
    // The client's own 2 min × 2 would leave a worker idle, and every enqueue timing out,
    // for 4–6 minutes. Two pings, not one, so a PONG stuck behind a large backlog does not
    // cost a needless reconnect; a PING every 10 s is negligible traffic. The floors: the
    // client reads 0 as "its default", and below 100 ms an event-loop stall alone would
    // look like missed pings.
    pingIntervalMs: ms(100).default(10_000),
    maxPingsOut: int(1).default(2),
  }).prefault({}),
  connect: section({
    maxAttempts: int(0).default(0),
    initialDelayMs: ms().default(250),
    maxDelayMs: ms().default(5000),
    jitter: expecting(z.number().min(0).max(1), 'a number from 0 to 1').default(0.2),
  }).prefault({}),
  reconnect: section({
    timeWaitMs: ms().default(500),
    maxAttempts: int(0).default(0),
    giveUpAfterMs: ms().default(0),
  }).prefault({}),
  embedded: section({
    enabled: bool().default(true),
    storeDir: filePath().default('.naq/nats'),
    host: text().default('127.0.0.1'),
    port: int(0, 65535).default(4222),
    binary: filePath().default('nats-server'),
  }).prefault({}),
  log: section({
    level: oneOf(LOG_LEVELS).default('info'),
    pretty: bool().optional(),
  }).prefault({}),
  supervisor: section({
    maxRestarts: int(0).default(5),
    restartWindowMs: ms(1).default(60_000),
    restartDelayMs: ms().default(250),
    restartMaxDelayMs: ms().default(10_000),
    stopTimeoutMs: ms(1).default(10_000),
  }).prefault({}),
  ops: section({
    timeoutMs: ms(1).default(5000),
    retryInitialDelayMs: ms().default(50),
    retryMaxDelayMs: ms().default(1000),
  }).prefault({}),
  storage: section({
    replicas: int(1, 5).default(1),
    storage: oneOf(['file', 'memory']).default('file'),
  }).prefault({}),
  inspect: section({
    enabled: bool().default(false),
    port: int(0, 65535).default(5678),
    recordFile: filePath().optional(),
  }).prefault({}),
  jobs: section({
    attempts: int(1).default(1),
    backoffType: oneOf(['fixed', 'exponential']).default('exponential'),
    backoffDelayMs: ms().default(1000),
    resultTtlMs: ms(1).default(86_400_000),
    maxPayloadBytes: int(1).default(1_048_576),
    activeAfterMs: ms().default(1000),
    publishTimeoutMs: ms(1).default(5000),
  }).prefault({}),
  worker: section({
    queues: expecting(z.array(z.string().regex(/^[A-Za-z0-9_-]+$/)).min(1), 'a non-empty list of queue names (letters, digits, "_", "-")')
      .transform((queues) => [...new Set(queues)])
      .default(() => ['default']),
    concurrency: int(1).default(10),
    maxAckPending: int(1).default(1000),
    heartbeatMs: ms(1).default(5000),
    ackWaitMs: ms(1).default(30_000),
    drainGraceMs: ms().default(10_000),
    handlers: filePath().optional(),
  }).prefault({}),
  events: section({
    enabled: bool().default(true),
    maxBatch: int(1).default(500),
    flushMs: ms(1).default(100),
    maxBuffered: int(1).default(50_000),
    maxAgeMs: ms().default(7 * 24 * 3600_000),
  }).prefault({}),
  scheduler: section({
    leaderTtlMs: ms(1000).default(10_000),
    renewMs: ms(100).default(3000),
    electionRetryMs: ms(100).default(1000),
    maxFireFailures: int(1).default(5),
  }).prefault({}),
  roles: expecting(
    z.array(oneOf(ROLES)).min(1),
    `a non-empty list of ${ROLES.map((r) => JSON.stringify(r)).join(', ')}`,
  )
    .transform((roles) => [...new Set(roles)])
    .default(() => ['producer' as const]),
});

/** The resolved configuration: every default filled in, every value validated. */
export type NaqConfig = z.output<typeof ConfigSchema>;

type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** What a library user or the CLI passes: any subset of NaqConfig. */
export type NaqConfigInput = DeepPartial<NaqConfig>;

export type LogLevel = NaqConfig['log']['level'];
export type Role = NaqConfig['roles'][number];

// ---------------------------------------------------------------------------------------
// Schema introspection (for env coercion, env names and messages)

type Path = readonly (string | number)[];

interface DefView {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
}

const defOf = (schema: z.ZodType): DefView => schema._zod.def as unknown as DefView;

const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly']);

/** Strips default/optional/pipe wrappers down to the schema that holds the checks. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const def = defOf(current);
    const next = def.type === 'pipe' ? def.in : WRAPPERS.has(def.type) ? def.innerType : undefined;
    if (next === undefined) return current;
    current = next;
  }
}

function schemaAt(path: Path): z.ZodType | undefined {
  let current: z.ZodType | undefined = ConfigSchema;
  for (const segment of path) {
    if (current === undefined) return undefined;
    const def = defOf(unwrap(current));
    if (def.type === 'object' && typeof segment === 'string') {
      current = def.shape !== undefined && Object.hasOwn(def.shape, segment) ? def.shape[segment] : undefined;
    } else if (def.type === 'array' && typeof segment === 'number') {
      current = def.element;
    } else {
      return undefined;
    }
  }
  return current === undefined ? undefined : unwrap(current);
}

function keysAt(path: Path): string[] {
  const schema = schemaAt(path);
  const def = schema === undefined ? undefined : defOf(schema);
  return def?.type === 'object' && def.shape !== undefined ? Object.keys(def.shape) : [];
}

interface Leaf {
  path: string[];
  type: string;
  form: string;
}

function collectLeaves(schema: z.ZodType, path: string[], out: Leaf[]): Leaf[] {
  const inner = unwrap(schema);
  const def = defOf(inner);
  if (def.type === 'object' && def.shape !== undefined) {
    for (const [key, child] of Object.entries(def.shape)) collectLeaves(child, [...path, key], out);
  } else {
    out.push({ path, type: def.type, form: forms.get(inner) ?? 'a valid value' });
  }
  return out;
}

const LEAVES: readonly Leaf[] = collectLeaves(ConfigSchema, [], []);

function formatPath(path: Path): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out === '' ? '(root)' : out;
}

// ---------------------------------------------------------------------------------------
// Environment

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

interface EnvLayer {
  data: Record<string, unknown>;
  /** dotted key → variable name */
  names: Map<string, string>;
}

function readEnv(env: Record<string, string | undefined>): EnvLayer {
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

// ---------------------------------------------------------------------------------------
// Files

function readConfigFile(file: string): Record<string, unknown> {
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
    parsed = ext === '.json' ? JSON.parse(text) : YAML.parse(text);
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

// ---------------------------------------------------------------------------------------
// Merge

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// defineProperty, not assignment: a "__proto__" key from a parsed file must stay an own
// (and therefore unknown, reported) key instead of replacing the object's prototype.
function defineKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    if (isPlainObject(value)) {
      const current = Object.hasOwn(target, key) ? target[key] : undefined;
      const next = isPlainObject(current) ? current : {};
      mergeInto(next, value);
      defineKey(target, key, next);
    } else {
      defineKey(target, key, Array.isArray(value) ? [...(value as unknown[])] : value);
    }
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const segment of path.slice(0, -1)) {
    const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
    if (isPlainObject(next)) {
      node = next;
    } else {
      const created: Record<string, unknown> = {};
      defineKey(node, segment, created);
      node = created;
    }
  }
  const last = path[path.length - 1];
  if (last !== undefined) defineKey(node, last, value);
}

function getPath(value: unknown, path: Path): unknown {
  let node = value;
  for (const segment of path) {
    if (node === null || typeof node !== 'object') return undefined;
    if (!Object.hasOwn(node, segment)) return undefined;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return node;
}

// ---------------------------------------------------------------------------------------
// Validation and error reporting

interface Layer {
  data: Record<string, unknown>;
  /** Where a value at `path` came from: the error key and a note for the message. */
  origin(path: Path): { key: string; note?: string };
}

const dottedLayer = (data: Record<string, unknown>, note?: string): Layer => ({
  data,
  origin: (path) => ({ key: formatPath(path), ...(note === undefined ? {} : { note }) }),
});

function envLayer(env: EnvLayer): Layer {
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

const SECRET_KEYS = new Set(['nats.password', 'nats.token', 'nats.nkeySeed']);

function describe(value: unknown, path: Path = []): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  const key = path.join('.');
  if (SECRET_KEYS.has(key)) return typeof value === 'string' ? 'a string' : `a ${typeof value}`;
  if (typeof value === 'string') {
    const shown = key === 'nats.url' ? redactNatsUrl(value) : value;
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
    const form = (schema === undefined ? undefined : forms.get(schema)) ?? 'a valid value';
    add(path, `expected ${form}, got ${describe(getPath(merged, path), path.map(String))}`);
  }
  return problems;
}

function validate(layers: readonly Layer[]): NaqConfig {
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

// ---------------------------------------------------------------------------------------
// Public API

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

// ---------------------------------------------------------------------------------------
// NATS URLs

function natsUrlEntries(url: string): string[] {
  return url
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

function isValidNatsUrlList(url: string): boolean {
  const entries = natsUrlEntries(url);
  return entries.length > 0 && entries.every(isValidNatsUrl);
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

function isValidNatsUrl(entry: string): boolean {
  const scheme = SCHEME.exec(entry)?.[1]?.toLowerCase();
  if (scheme !== undefined && !(NATS_URL_SCHEMES as readonly string[]).includes(scheme)) return false;
  // host[:port] without a scheme must not smuggle in a path or query.
  if (scheme === undefined && /[/?#\s]/.test(entry)) return false;
  try {
    const parsed = new URL(scheme === undefined ? `nats://${entry}` : entry);
    return parsed.hostname !== '';
  } catch {
    return false;
  }
}

interface UrlCredentials {
  /** The text before '@' in the authority, e.g. `user:pass` or a bare token. */
  userinfo: string;
  start: number;
  end: number;
}

function urlCredentials(entry: string): UrlCredentials | undefined {
  const scheme = SCHEME.exec(entry);
  const start = scheme === null ? 0 : scheme[0].length;
  const slash = entry.indexOf('/', start);
  const authority = entry.slice(start, slash === -1 ? entry.length : slash);
  // The last '@' ends the userinfo: an unencoded '@' in a password must not leak the tail.
  const at = authority.lastIndexOf('@');
  if (at === -1) return undefined;
  return { userinfo: authority.slice(0, at), start, end: start + at };
}

function redactNatsUrl(url: string): string {
  return url
    .split(',')
    .map((entry) => {
      const creds = urlCredentials(entry);
      if (creds === undefined) return entry;
      const colon = creds.userinfo.indexOf(':');
      // With no ':' the userinfo is a token (nats://token@host), which is itself the secret.
      const kept = colon === -1 ? REDACTED : `${creds.userinfo.slice(0, colon)}:${REDACTED}`;
      return entry.slice(0, creds.start) + kept + entry.slice(creds.end);
    })
    .join(',');
}

function urlSecrets(url: string): string[] {
  const secrets: string[] = [];
  for (const entry of url.split(',')) {
    const creds = urlCredentials(entry.trim());
    if (creds === undefined) continue;
    const colon = creds.userinfo.indexOf(':');
    const secret = colon === -1 ? creds.userinfo : creds.userinfo.slice(colon + 1);
    if (secret === '') continue;
    secrets.push(secret);
    // The client decodes %-escapes, so the decoded form can show up in its messages too.
    try {
      const decoded = decodeURIComponent(secret);
      if (decoded !== secret) secrets.push(decoded);
    } catch {
      // not valid %-encoding: only the raw form can appear
    }
  }
  return secrets;
}

/** True when the user named NATS servers (otherwise naq may start an embedded server). */
export function isNatsUrlConfigured(config: NaqConfig): boolean {
  return config.nats.url !== undefined && natsUrlEntries(config.nats.url).length > 0;
}

/** The server list for the NATS client: the configured URLs, or the local default. */
export function natsServers(config: NaqConfig): string[] {
  const entries = config.nats.url === undefined ? [] : natsUrlEntries(config.nats.url);
  return entries.length > 0 ? entries : [DEFAULT_NATS_SERVER];
}

// ---------------------------------------------------------------------------------------
// Secrets

export const REDACTED = '[redacted]';

/** A copy of the config that is safe to log or show: secrets replaced by '[redacted]'. */
export function redactConfig(config: NaqConfig): NaqConfig {
  const copy = structuredClone(config);
  const nats = copy.nats;
  if (nats.password !== undefined) nats.password = REDACTED;
  if (nats.token !== undefined) nats.token = REDACTED;
  if (nats.nkeySeed !== undefined) nats.nkeySeed = REDACTED;
  if (nats.url !== undefined) nats.url = redactNatsUrl(nats.url);
  return copy;
}

/** The secret strings in the config, for scrubbing logs and inspector events. */
export function configSecrets(config: NaqConfig): string[] {
  const { password, token, nkeySeed, url } = config.nats;
  const secrets = [password, token, nkeySeed, ...(url === undefined ? [] : urlSecrets(url))];
  return [...new Set(secrets.filter((s): s is string => s !== undefined && s !== ''))];
}

// ---------------------------------------------------------------------------------------
// Helpers

/** The closest candidate by edit distance, if it is close enough to be a likely typo. */
function suggest(input: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(input.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
