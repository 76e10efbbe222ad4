/**
 * What every command needs: the global options and the typed argv they give, config and a
 * logger from them, a started naq for one-shot commands, the exit codes, and the yargs checks
 * that refuse a missing or bad positional before a handler runs.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import type { NaqConfig, NaqConfigInput } from '../config/index.js';
import { LOG_LEVELS } from '../config/names.js';
import type { Logger } from '../core/log.js';
import type { Naq } from '../naq.js';
import { textArg, UsageError } from './args.js';

/** Exit codes: 0 ok, 1 failure at run time, 2 bad arguments or config. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The options every command takes (yargs' `global`, so they are listed under each one). */
export function withGlobalOptions(y: Argv) {
  return y
    .option('config', { type: 'string', describe: 'config file (JSON or YAML)', global: true })
    .option('nats-url', { type: 'string', describe: 'NATS server URL(s), comma-separated (env NAQ_NATS_URL)', global: true })
    .option('log-level', { type: 'string', choices: LOG_LEVELS, describe: 'log level (env NAQ_LOG_LEVEL)', global: true })
    .option('json', { type: 'boolean', describe: 'machine-readable output', global: true });
}

type ArgsOf<Y> = Y extends Argv<infer A> ? A : never;

/** The argv every command's builder starts from. */
export type GlobalArgs = ArgsOf<ReturnType<typeof withGlobalOptions>>;

/** What a builder made of GlobalArgs hands its handler. */
export type CommandArgs<A> = ArgumentsCamelCase<A>;

/** The argv a builder function gives its handler, for helpers the handler passes it to. */
export type BuiltArgs<B> = B extends (y: Argv<GlobalArgs>) => Argv<infer A> ? CommandArgs<A> : never;

/**
 * A command module whose handler's argv type is inferred from its builder, so a handler reads
 * exactly the options its builder declared, typed, without casts.
 */
export function defineCommand<A>(module: {
  command: string;
  describe: string;
  builder: (y: Argv<GlobalArgs>) => Argv<A>;
  handler: (args: CommandArgs<A>) => void | Promise<void>;
}): CommandModule<GlobalArgs, A> {
  return module;
}

/**
 * A command that only groups subcommands (`naq kv get`, ...). Its builder ends in
 * demandCommand, so the handler never runs; yargs' module shape wants one all the same.
 */
export function defineGroup(command: string, describe: string, builder: (y: Argv<GlobalArgs>) => Argv<GlobalArgs>): CommandModule<GlobalArgs, GlobalArgs> {
  return { command, describe, builder, handler: () => {} };
}

/** Writes `naq: <message>` to stderr and exits with `code`. */
export function fail(message: string, code: number): never {
  process.stderr.write(`naq: ${message}\n`);
  process.exit(code);
}

export function usageFailure(message: string): never {
  fail(`${message}\nRun "naq --help" for usage.`, EXIT_USAGE);
}

/**
 * defaults ← file ← environment ← flags; one-shot commands log warnings only unless asked.
 * The config module (and zod) is loaded here, by a handler: `naq --help` and a bad argument
 * stop before it.
 */
export async function configFrom(args: GlobalArgs, extra: NaqConfigInput = {}, quiet = false): Promise<NaqConfig> {
  const flags: NaqConfigInput = { ...extra };
  if (args['nats-url'] !== undefined) flags.nats = { ...flags.nats, url: args['nats-url'] };
  const level = args['log-level'] ?? (quiet && !process.env.NAQ_LOG_LEVEL ? 'warn' : undefined);
  if (level !== undefined) flags.log = { ...flags.log, level };
  // An empty --config is a mistake (an unset variable in a script, say), not "no file".
  const file = args.config === undefined ? undefined : textArg('--config', args.config, 'a config file ending in .json, .yaml or .yml');
  const { loadConfig } = await import('../config/index.js');
  return loadConfig({ ...(file !== undefined ? { file } : {}), env: process.env, flags });
}

/** A logger for `config`; pino is loaded by the first command that logs, not by `naq --help`. */
export async function loggerFor(config: NaqConfig): Promise<Logger> {
  const [{ createLogger }, { configSecrets }] = await Promise.all([import('../core/log.js'), import('../config/secrets.js')]);
  return createLogger({ level: config.log.level, pretty: config.log.pretty, secrets: configSecrets(config) });
}

/**
 * Runs a one-shot command against a started (producer-only) system, then stops it. Every
 * argument must have been checked before this is called: from here on it connects.
 */
export async function withNaq<T>(args: GlobalArgs, work: (naq: Naq) => Promise<T>, given?: NaqConfig): Promise<T> {
  const config = given ?? (await configFrom(args, {}, true));
  // Loaded here, not at the top: a command that stops at its arguments (`naq --help`, a bad
  // flag) never loads the actor system, the NATS client and what they import.
  const { createNaq } = await import('../naq.js');
  // One command, then stop: no dependency resolver (its watch would only start to be torn down).
  const naq = createNaq(config, { logger: await loggerFor(config), services: ['streams', 'kv', 'events', 'jobs'], resolveDependencies: false });
  try {
    await naq.start({ timeoutMs: config.nats.connectTimeoutMs + config.ops.timeoutMs });
    return await work(naq);
  } finally {
    await naq.stop();
  }
}

/** Positionals are checked here, not by yargs, so the error names the missing argument. */
export function need(...names: string[]) {
  return (argv: Record<string, unknown>) => {
    const missing = names.filter((n) => argv[n] === undefined || argv[n] === '');
    if (missing.length) throw new UsageError(`missing argument ${missing.map((m) => `<${m}>`).join(', ')}`);
    return true;
  };
}

/** Required flags, checked here so the error names the flag as it is typed. */
export function needFlags(...names: string[]) {
  return (argv: Record<string, unknown>) => {
    const missing = names.filter((n) => argv[n] === undefined || argv[n] === '');
    if (missing.length) throw new UsageError(`missing ${missing.map((m) => `--${m}`).join(', ')}`);
    return true;
  };
}

/** A yargs check that validates the parsed arguments (by throwing a UsageError), so a bad one never reaches the handler. */
export function valid(validate: (argv: Record<string, unknown>) => unknown) {
  return (argv: Record<string, unknown>) => {
    validate(argv);
    return true;
  };
}
