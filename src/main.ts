#!/usr/bin/env node
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { stringify as toYaml } from 'yaml';
import { configSecrets, loadConfig, redactConfig, type NaqConfig, type NaqConfigInput } from './config.js';
import { resolveNats } from './embedded.js';
import { ConfigError, InvalidArgumentError, NaqError, toError } from './errors.js';
import { replayRecording, startInspector, type RunningInspector } from './inspector.js';
import { readFile } from 'node:fs/promises';
import { createLogger, type Logger } from './log.js';
import { exportMachines } from './machine-export.js';
import { MACHINES } from './machines/index.js';
import { createNaq, type Naq } from './naq.js';
import { loadHandlers } from './handlers-module.js';
import { eventsCommand, type EventsCliArgs, type WithNaq } from './cli-events.js';
import { JobFailedError } from './actors/jobs-runtime.js';
import type { Handlers } from './actors/queue-worker.js';
import { buildJob, type JobDefaults, type JobOptions } from './job.js';
import { buildSchedule, runJobId, type ScheduleOptions, type ScheduleSpec } from './schedule.js';
import {
  backoffArg,
  bucketArg,
  cronArg,
  durationArg,
  integerArg,
  isoTimeArg,
  jobIdArg,
  jobIdsArg,
  jsonArg,
  kvFilterArg,
  kvKeyArg,
  queueArg,
  streamArg,
  subjectArg,
  textArg,
  timeZoneArg,
  UsageError,
} from './cli-args.js';

/** Exit codes: 0 ok, 1 failure at run time, 2 bad arguments or config. */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

interface GlobalArgs {
  config?: string;
  'nats-url'?: string;
  'log-level'?: string;
  json?: boolean;
}

function out(line: string) {
  process.stdout.write(`${line}\n`);
}

function fail(message: string, code: number): never {
  process.stderr.write(`naq: ${message}\n`);
  process.exit(code);
}

function usageFailure(message: string): never {
  fail(`${message}\nRun "naq --help" for usage.`, EXIT_USAGE);
}

/** defaults ← file ← environment ← flags; one-shot commands log warnings only unless asked. */
function configFrom(args: GlobalArgs, extra: NaqConfigInput = {}, quiet = false): NaqConfig {
  const flags: NaqConfigInput = { ...extra };
  if (args['nats-url'] !== undefined) flags.nats = { ...flags.nats, url: args['nats-url'] };
  const level = args['log-level'] ?? (quiet && !process.env.NAQ_LOG_LEVEL ? 'warn' : undefined);
  if (level !== undefined) flags.log = { ...flags.log, level: level as never };
  // An empty --config is a mistake (an unset variable in a script, say), not "no file".
  const file = args.config === undefined ? undefined : textArg('--config', args.config, 'a config file ending in .json, .yaml or .yml');
  return loadConfig({ ...(file !== undefined ? { file } : {}), env: process.env, flags });
}

function loggerFor(config: NaqConfig): Logger {
  return createLogger({ level: config.log.level, pretty: config.log.pretty, secrets: configSecrets(config) });
}

/**
 * Runs a one-shot command against a started (producer-only) system, then stops it. Every
 * argument must have been checked before this is called: from here on it connects.
 */
async function withNaq<T>(args: GlobalArgs, work: (naq: Naq) => Promise<T>, config = configFrom(args, {}, true)): Promise<T> {
  const naq = createNaq(config, { logger: loggerFor(config), services: ['streams', 'kv', 'events', 'jobs'] });
  try {
    await naq.start({ timeoutMs: config.nats.connectTimeoutMs + config.ops.timeoutMs });
    return await work(naq);
  } finally {
    await naq.stop();
  }
}

/** Positionals are checked here, not by yargs, so the error names the missing argument. */
function need(...names: string[]) {
  return (argv: Record<string, unknown>) => {
    const missing = names.filter((n) => argv[n] === undefined || argv[n] === '');
    if (missing.length) throw new UsageError(`missing argument ${missing.map((m) => `<${m}>`).join(', ')}`);
    return true;
  };
}

/** A yargs check that validates the parsed arguments (by throwing a UsageError), so a bad one never reaches the handler. */
function valid(validate: (argv: Record<string, unknown>) => unknown) {
  return (argv: Record<string, unknown>) => {
    validate(argv);
    return true;
  };
}

const scheduleId = valid((a) => jobIdArg('<id>', a.id));
const streamName = valid((a) => streamArg('<name>', a.name));
/** Whichever of <bucket>, <key> and --filter the kv command has. */
const kvArgs = valid((a) => {
  bucketArg('<bucket>', a.bucket);
  if (a.key !== undefined) kvKeyArg('<key>', a.key);
  if (a.filter !== undefined) kvFilterArg('--filter', a.filter);
});

function printJson(value: unknown) {
  out(JSON.stringify(value, null, 2));
}

interface InspectArgs {
  inspect?: boolean;
  'inspect-port'?: string;
  'inspect-record'?: string;
  'inspect-payloads'?: boolean;
}

function withInspectOptions<T>(y: Argv<T>) {
  return y
    .option('inspect', { type: 'boolean', describe: 'serve the Stately inspector bridge and stream every actor to it' })
    .option('inspect-port', { type: 'string', describe: 'port of the inspector bridge, 0 to 65535 (default from config: 5678)' })
    .option('inspect-record', { type: 'string', describe: 'write inspection events to FILE as JSON lines' })
    .option('inspect-payloads', { type: 'boolean', describe: 'include job / KV payloads in inspection events' });
}

interface WorkerArgs {
  queue?: string[];
  handlers?: string;
  concurrency?: string;
}

function withWorkerOptions<T>(y: Argv<T>) {
  return y
    .option('queue', { type: 'string', array: true, describe: 'queue(s) to consume (repeatable; default from config: default)' })
    .option('handlers', { type: 'string', describe: 'JS/TS module whose exported functions are the handlers, by job name' })
    .option('concurrency', { type: 'string', describe: 'jobs run at once per queue, an integer >= 1 (default from config: 10)' });
}

type RunArgs = GlobalArgs & InspectArgs & WorkerArgs & { roles?: string[]; embedded?: boolean };

/** The run commands' flags as config input, each checked here so that a message names the flag. */
function runConfigInput(args: RunArgs): NaqConfigInput {
  const extra: NaqConfigInput = {};
  if (args.roles) extra.roles = args.roles as NaqConfig['roles'];
  const worker: NonNullable<NaqConfigInput['worker']> = {};
  if (args.queue !== undefined) worker.queues = args.queue.flatMap((q) => String(q).split(',')).map((q) => queueArg('--queue', q));
  if (args.handlers !== undefined) worker.handlers = textArg('--handlers', args.handlers, 'a JS or TS module file');
  if (args.concurrency !== undefined) worker.concurrency = integerArg('--concurrency', args.concurrency, 1);
  if (Object.keys(worker).length > 0) extra.worker = worker;
  if (args.embedded === false) extra.embedded = { enabled: false };
  const inspect: NonNullable<NaqConfigInput['inspect']> = {};
  if (args.inspect) inspect.enabled = true;
  // Passed on even without --inspect: the inspector may be switched on by config or env.
  if (args['inspect-port'] !== undefined) inspect.port = integerArg('--inspect-port', args['inspect-port'], 0, 65535);
  if (args['inspect-record'] !== undefined) inspect.recordFile = textArg('--inspect-record', args['inspect-record'], 'a file to write');
  if (Object.keys(inspect).length > 0) extra.inspect = inspect;
  return extra;
}

/**
 * A handler that leaves a rejected promise unhandled must not take the worker down, and
 * every job in flight with it, as Node does by default: it is logged and the process keeps
 * serving. Installed only here, in the process naq owns; an app embedding createNaq decides
 * for its own process.
 */
function keepServingOnUnhandledRejection(logger: Logger) {
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: toError(reason) }, 'a promise was rejected and nothing handled it (a handler left it so?); still serving');
  });
}

/** `naq supervisor`: runs until SIGINT / SIGTERM, then drains and exits 0. */
async function runSupervisor(args: RunArgs) {
  const loaded = configFrom(args, runConfigInput(args));
  const logger = loggerFor(loaded);
  keepServingOnUnhandledRejection(logger);
  // Before resolveNats, which may start an embedded nats-server: a bad handlers module is a
  // mistake to report at once, not after a server was started for nothing.
  const handlers = await handlersFor(loaded, logger);
  const { config, embedded } = await resolveNats(loaded, logger);

  let inspector: RunningInspector | null = null;
  if (config.inspect.enabled || config.inspect.recordFile) {
    inspector = startInspector({
      port: config.inspect.enabled ? config.inspect.port : 0,
      ...(config.inspect.recordFile ? { recordFile: config.inspect.recordFile } : {}),
      secrets: configSecrets(config),
      payloads: Boolean(args['inspect-payloads']),
    });
    if (inspector.url) logger.info(`inspector: open ${inspector.url} to watch the actors live`);
    if (config.inspect.recordFile) logger.info(`recording inspection events to ${config.inspect.recordFile}`);
  }

  const naq = createNaq(config, { logger, handlers, ...(inspector ? { inspect: inspector.observer } : {}) });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: draining`);
    void naq.stop();
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  naq.start().catch(() => {});
  const output = await naq.done;
  await inspector?.stop();
  if (embedded) await embedded.stop();
  if (output.status === 'failed') {
    logger.error({ failure: output.failure }, 'supervisor failed');
    await flushLogs(logger);
    process.exit(EXIT_FAILURE);
  }
  logger.info('bye');
  await flushLogs(logger);
  process.exit(0);
}

async function handlersFor(config: NaqConfig, logger: Logger): Promise<Handlers> {
  if (!config.roles.includes('worker')) return {};
  if (!config.worker.handlers) throw new ConfigError('--handlers', 'the worker role needs a handlers module (--handlers FILE or worker.handlers)');
  const handlers = await loadHandlers(config.worker.handlers);
  logger.info({ queues: config.worker.queues, handlers: Object.keys(handlers), concurrency: config.worker.concurrency }, 'worker handlers loaded');
  return handlers;
}

function flushLogs(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
    setTimeout(resolve, 200).unref();
  });
}

interface EnqueueArgs extends GlobalArgs {
  name?: string;
  data?: string;
  queue?: string;
  'job-id'?: string;
  attempts?: string;
  backoff?: string;
  timeout?: string;
  'depends-on'?: string;
  wait?: boolean;
  'wait-timeout'?: string;
  delay?: string;
  at?: string;
}

interface EnqueueInput {
  name: string;
  data: unknown;
  opts: JobOptions;
  /** When to run it (--delay or --at), ms since the epoch. */
  at?: number;
  waitTimeoutMs: number;
}

/** Every enqueue flag, checked and converted: each value first, then how they combine. */
function enqueueInput(args: EnqueueArgs): EnqueueInput {
  const opts: JobOptions = {};
  if (args.queue !== undefined) opts.queue = queueArg('--queue', args.queue);
  if (args['job-id'] !== undefined) opts.jobId = jobIdArg('--job-id', args['job-id']);
  if (args.attempts !== undefined) opts.attempts = integerArg('--attempts', args.attempts, 1);
  if (args.backoff !== undefined) opts.backoff = backoffArg('--backoff', args.backoff);
  if (args.timeout !== undefined) opts.timeoutMs = durationArg('--timeout', args.timeout);
  if (args['depends-on'] !== undefined) opts.dependsOn = jobIdsArg('--depends-on', args['depends-on']);
  const data = args.data === undefined ? null : jsonArg('--data', args.data);
  const at = args.at === undefined ? undefined : isoTimeArg('--at', args.at);
  const delay = args.delay === undefined ? undefined : durationArg('--delay', args.delay, 0);
  const waitTimeoutMs = args['wait-timeout'] === undefined ? 30_000 : durationArg('--wait-timeout', args['wait-timeout']);
  if (delay !== undefined && at !== undefined) throw new UsageError('give --delay or --at, not both');
  if ((at !== undefined || delay !== undefined) && opts.dependsOn) throw new UsageError('--depends-on cannot be combined with --delay or --at');
  if (args['wait-timeout'] !== undefined && !args.wait) throw new UsageError('--wait-timeout goes with --wait');
  const when = delay !== undefined ? Date.now() + delay : at;
  return { name: args.name!, data, opts, ...(when !== undefined ? { at: when } : {}), waitTimeoutMs };
}

/** A job enqueued without --job-id gets a 22-character nuid; the size check uses an id as long. */
const UNASSIGNED_JOB_ID = 'x'.repeat(22);

/** The job defaults the jobs runtime builds from the same config. */
function jobDefaults(config: NaqConfig): JobDefaults {
  return {
    attempts: config.jobs.attempts,
    backoff: { type: config.jobs.backoffType, delay: config.jobs.backoffDelayMs },
    maxPayloadBytes: config.jobs.maxPayloadBytes,
  };
}

async function runEnqueue(args: EnqueueArgs) {
  const input = enqueueInput(args);
  const config = configFrom(args, {}, true);
  // The library's own check of the whole job (handler name, encoded size against
  // jobs.maxPayloadBytes, a job that depends on itself), before connecting rather than after.
  buildJob(input.name, input.data, input.opts, input.opts.jobId ?? UNASSIGNED_JOB_ID, jobDefaults(config));
  await withNaq(args, (naq) => enqueueAndReport(naq, input, args), config);
}

/** Enqueues, then prints the id, or with --wait the result (exit 1 if the job failed). */
async function enqueueAndReport(naq: Naq, input: EnqueueInput, args: EnqueueArgs): Promise<void> {
  const { name, data, opts, at } = input;
  const id = at !== undefined ? await naq.enqueueAt(at, name, data, opts) : await naq.enqueue(name, data, opts);
  if (!args.wait) {
    if (args.json) printJson({ id });
    else out(id);
    return;
  }
  try {
    const result = await naq.waitFor(id, { timeoutMs: input.waitTimeoutMs });
    out(JSON.stringify(args.json ? { id, status: 'completed', result } : result));
  } catch (error) {
    if (error instanceof JobFailedError) {
      if (args.json) out(JSON.stringify({ id, status: error.status, error: error.error }));
      fail(`job ${id} ${error.status}: ${error.error?.message ?? error.message}`, EXIT_FAILURE);
    }
    throw error;
  }
}

interface ScheduleAddArgs extends GlobalArgs {
  id?: string;
  name?: string;
  cron?: string;
  tz?: string;
  every?: string;
  data?: string;
  queue?: string;
  repeat?: string;
}

/**
 * Every `schedule add` argument, then the library's checks of the whole schedule (one that
 * would never fire, say) and of the job each run will be (its size), as the scheduler makes them.
 */
function scheduleInput(args: ScheduleAddArgs, config: NaqConfig): { id: string; spec: ScheduleSpec; name: string; data: unknown; opts: ScheduleOptions } {
  const id = jobIdArg('<id>', args.id);
  if ((args.cron === undefined) === (args.every === undefined)) throw new UsageError('give exactly one of --cron or --every');
  if (args.tz !== undefined && args.cron === undefined) throw new UsageError('--tz goes with --cron');
  const tz = args.tz === undefined ? undefined : timeZoneArg('--tz', args.tz);
  const spec: ScheduleSpec =
    args.cron !== undefined ? { cron: cronArg('--cron', args.cron, tz), ...(tz !== undefined ? { tz } : {}) } : { every: durationArg('--every', args.every) };
  const opts: ScheduleOptions = {};
  if (args.queue !== undefined) opts.queue = queueArg('--queue', args.queue);
  if (args.repeat !== undefined) opts.repeat = integerArg('--repeat', args.repeat, 1);
  const data = args.data === undefined ? null : jsonArg('--data', args.data);
  const record = buildSchedule(id, spec, args.name!, data, opts);
  buildJob(record.name, data, { ...record.opts, queue: record.queue }, runJobId(record, record.nextRunAt ?? 0), jobDefaults(config));
  return { id, spec, name: args.name!, data, opts };
}

type JobAction = { action: 'show' | 'cancel' | 'retry'; id: string };

/** `naq job ID`, `naq job cancel ID` or `naq job retry ID`. */
function jobAction(action: string, id: string | undefined): JobAction {
  if (action === 'cancel' || action === 'retry') {
    if (id === undefined || id === '') throw new UsageError(`missing argument <id> (naq job ${action} ID)`);
    return { action, id: jobIdArg('<id>', id) };
  }
  if (id !== undefined) throw new UsageError(`unknown job action ${JSON.stringify(action)}: expected cancel or retry`);
  return { action: 'show', id: jobIdArg('<id>', action) };
}

/** `naq events`: its own module checks --since, --type and --limit; --queue and --job are checked here, before it connects. */
const eventsWithNaq: WithNaq = (args, work) => {
  const filter = args as EventsCliArgs & { queue?: string; job?: string };
  if (filter.queue !== undefined) queueArg('--queue', filter.queue);
  if (filter.job !== undefined) jobIdArg('--job', filter.job);
  return withNaq(args as GlobalArgs, work);
};

function formatTime(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString();
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

export function buildCli(argv: string[]) {
  return yargs(argv)
    .scriptName('naq')
    .usage('$0 <command> [options]\n\nA job queue and service runtime on NATS JetStream, built as an XState actor system.')
    .option('config', { type: 'string', describe: 'config file (JSON or YAML)', global: true })
    .option('nats-url', { type: 'string', describe: 'NATS server URL(s), comma-separated (env NAQ_NATS_URL)', global: true })
    .option('log-level', {
      type: 'string',
      choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      describe: 'log level (env NAQ_LOG_LEVEL)',
      global: true,
    })
    .option('json', { type: 'boolean', describe: 'machine-readable output', global: true })
    .command(
      'supervisor',
      'run the naq supervisor: connection, services and roles, until SIGINT / SIGTERM',
      (y) =>
        withWorkerOptions(withInspectOptions(y))
          .option('roles', { type: 'string', array: true, describe: 'roles to run (producer, worker, scheduler)' })
          .option('embedded', { type: 'boolean', describe: 'start a local nats-server when none is configured or answering (--no-embedded turns it off)' }),
      (args) => runSupervisor(args as never),
    )
    .command(
      'worker',
      'run workers for one or more queues (the supervisor with the worker role), until SIGINT / SIGTERM',
      (y) => withWorkerOptions(withInspectOptions(y)).option('embedded', { type: 'boolean', describe: 'start a local nats-server when none answers' }),
      (args) => runSupervisor({ ...(args as object), roles: ['producer', 'worker'] }),
    )
    .command(
      'scheduler',
      'run a scheduler (the supervisor with the scheduler role): one leader among all of them fires due schedules',
      (y) => withInspectOptions(y).option('embedded', { type: 'boolean', describe: 'start a local nats-server when none answers' }),
      (args) => runSupervisor({ ...(args as object), roles: ['producer', 'scheduler'] }),
    )
    .command('schedule', 'recurring schedules', (y) =>
      y
        .command(
          'add [id] [name]',
          'create or replace a schedule: --cron EXPR [--tz TZ] or --every MS',
          (yy) =>
            yy
              .positional('id', { type: 'string' })
              .positional('name', { type: 'string', describe: 'handler name' })
              .option('cron', { type: 'string', describe: 'cron expression (5 fields, or 6 with seconds)' })
              .option('tz', { type: 'string', describe: 'IANA time zone for --cron' })
              .option('every', { type: 'string', describe: 'period in ms (1 ms to 10 years)' })
              .option('data', { type: 'string', describe: 'job data as JSON' })
              .option('queue', { type: 'string', describe: 'queue (default: default)' })
              .option('repeat', { type: 'string', describe: 'fire at most N times (an integer >= 1)' })
              .check(need('id', 'name')),
          (args) => {
            const config = configFrom(args as GlobalArgs, {}, true);
            const { id, spec, name, data, opts } = scheduleInput(args as ScheduleAddArgs, config);
            return withNaq(args as GlobalArgs, async (naq) => {
              const r = await naq.schedule(id, spec, name, data, opts);
              if ((args as GlobalArgs).json) printJson(r);
              else out(`${r.id} next run ${formatTime(r.nextRunAt ?? undefined)}`);
            }, config);
          },
        )
        .command(
          'ls',
          'list schedules',
          (yy) => yy,
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const all = await naq.listSchedules();
              if ((args as GlobalArgs).json) return printJson(all);
              out('id\tstatus\twhen\tname\tqueue\tnext run\truns');
              for (const s of all) {
                const when = s.kind === 'cron' ? `cron ${s.cron}${s.tz ? ` ${s.tz}` : ''}` : s.kind === 'every' ? `every ${s.every} ms` : 'once';
                out(`${s.id}\t${s.status}\t${when}\t${s.name}\t${s.queue}\t${formatTime(s.nextRunAt ?? undefined)}\t${s.runs}`);
              }
            }),
        )
        .command(
          'show [id]',
          'show one schedule',
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')).check(scheduleId),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const s = await naq.getSchedule(args.id!);
              if (!s) fail(`schedule ${args.id} not found`, EXIT_FAILURE);
              printJson(s);
            }),
        )
        .command(
          'pause [id]',
          'pause a schedule',
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')).check(scheduleId),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const s = await naq.pauseSchedule(args.id!);
              if ((args as GlobalArgs).json) printJson(s);
              else out(`${s.id} paused`);
            }),
        )
        .command(
          'resume [id]',
          'resume a paused (or failed) schedule from the next run after now',
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')).check(scheduleId),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const s = await naq.resumeSchedule(args.id!);
              if ((args as GlobalArgs).json) printJson(s);
              else out(`${s.id} ${s.status}, next run ${formatTime(s.nextRunAt ?? undefined)}`);
            }),
        )
        .command(
          'rm [id]',
          'remove a schedule',
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')).check(scheduleId),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const removed = await naq.removeSchedule(args.id!);
              if (!removed) fail(`schedule ${args.id} not found`, EXIT_FAILURE);
              if ((args as GlobalArgs).json) printJson({ removed: args.id });
              else out(`removed ${args.id}`);
            }),
        )
        .demandCommand(1, 'name a schedule command: add, ls, show, pause, resume or rm'),
    )
    .command(
      'enqueue [name]',
      'enqueue a job; prints its id (with --wait, its result)',
      (y) =>
        y
          .positional('name', { type: 'string', describe: 'handler name' })
          .option('data', { type: 'string', describe: 'job data as JSON' })
          .option('queue', { type: 'string', describe: 'queue (default: default)' })
          .option('job-id', { type: 'string', describe: 'idempotency key: a pending job with this id is not enqueued twice' })
          .option('attempts', { type: 'string', describe: 'total attempts, the first included (an integer >= 1)' })
          .option('backoff', { type: 'string', describe: 'retry backoff: fixed:MS or exponential:MS' })
          .option('timeout', { type: 'string', describe: 'per-attempt timeout in ms (1 ms to 10 years)' })
          .option('depends-on', { type: 'string', describe: 'comma-separated job ids that must complete first' })
          .option('wait', { type: 'boolean', describe: 'wait for the result and print it (exit 1 if the job fails)' })
          .option('wait-timeout', { type: 'string', describe: 'how long --wait waits, ms (default 30000, at most 10 years)' })
          .option('delay', { type: 'string', describe: 'run no earlier than MS from now, 0 to 10 years (needs a running scheduler)' })
          .option('at', { type: 'string', describe: 'run at this ISO time (needs a running scheduler)' })
          .check(need('name')),
      (args) => runEnqueue(args as EnqueueArgs),
    )
    .command(
      'job [action] [id]',
      'show a job (naq job ID), or: naq job cancel ID, naq job retry ID',
      (y) => y.positional('action', { type: 'string' }).positional('id', { type: 'string' }).check(need('action')),
      (args) => {
        const { action, id } = jobAction(args.action!, args.id);
        return withNaq(args as GlobalArgs, async (naq) => {
          const json = (args as GlobalArgs).json;
          if (action === 'cancel' || action === 'retry') {
            const r = action === 'cancel' ? await naq.cancel(id) : await naq.retryDead(id);
            if (json) printJson(r);
            else out('status' in r ? `${r.id} ${r.status}` : `${r.id} re-enqueued`);
            return;
          }
          const record = await naq.getJob(id);
          if (!record) fail(`job ${id} not found`, EXIT_FAILURE);
          if (json) return printJson(record);
          out(`${record.id}  ${record.status}  ${record.name} on ${record.queue}`);
          out(`  enqueued ${formatTime(record.enqueuedAt)}  started ${formatTime(record.startedAt)}  finished ${formatTime(record.finishedAt)}`);
          out(`  attempts ${record.attempts.length}/${record.maxAttempts}`);
          for (const a of record.attempts) out(`    #${a.n} ${formatTime(a.startedAt)} ${a.error ? `error: ${a.error.message}` : a.finishedAt ? 'ok' : 'running'}`);
          if (record.dependsOn) out(`  depends on ${record.dependsOn.join(', ')}`);
          if (record.status === 'completed') out(`  result ${JSON.stringify(record.result)}`);
          if (record.error) out(`  error ${record.error.message}`);
        });
      },
    )
    .command('queue', 'queue operations', (y) =>
      y
        .command(
          'ls',
          'list queues with pending, in-flight and dead counts',
          (yy) => yy,
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const queues = await naq.listQueues();
              if ((args as GlobalArgs).json) return printJson(queues);
              out('queue\tpending\tin-flight\tdead\tworkers');
              for (const q of queues) out(`${q.queue}\t${q.pending}\t${q.inFlight}\t${q.dead}\t${q.workers}`);
            }),
        )
        .command(
          'purge [queue]',
          'drop every pending job of a queue',
          (yy) => yy.positional('queue', { type: 'string' }).check(need('queue')).check(valid((a) => queueArg('<queue>', a.queue))),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const r = await naq.purgeQueue(args.queue!);
              if ((args as GlobalArgs).json) printJson(r);
              else out(`purged ${r.purged} jobs from ${args.queue}`);
            }),
        )
        .demandCommand(1, 'name a queue command: ls or purge'),
    )
    .command(
      'workers',
      'list live workers (from their heartbeats)',
      (y) => y,
      (args) =>
        withNaq(args as GlobalArgs, async (naq) => {
          const workers = await naq.listWorkers();
          if ((args as GlobalArgs).json) return printJson(workers);
          out('id\tqueues\tstatus\tin-flight\tprocessed\tfailed');
          for (const w of workers) out(`${w.id}\t${w.queues.join(',')}\t${w.status}\t${w.inFlight}\t${w.processed}\t${w.failed}`);
        }),
    )
    .command(eventsCommand(eventsWithNaq) as never)
    .command(
      'inspect-replay [file]',
      'replay an --inspect-record file: the states each actor went through, in order',
      (y) => y.positional('file', { type: 'string' }).check(need('file')),
      async (args) => {
        const text = await readFile(args.file!, 'utf8').catch((error: Error) => {
          throw new UsageError(`cannot read ${args.file}: ${error.message}`);
        });
        const states = replayRecording(text);
        if ((args as GlobalArgs).json) return printJson(Object.fromEntries(states));
        for (const [actor, seq] of states) out(`${actor}: ${seq.join(' → ')}`);
      },
    )
    .command(
      'config',
      'print the effective configuration (secrets redacted)',
      (y) => y,
      (args) => {
        const config = redactConfig(configFrom(args as GlobalArgs));
        if ((args as GlobalArgs).json) printJson(config);
        else process.stdout.write(toYaml(config));
      },
    )
    .command(
      'machines',
      'print every machine definition (JSON for Stately tools, or Mermaid diagrams)',
      (y) => y.option('format', { choices: ['json', 'mermaid'] as const, default: 'json' as const, describe: 'output format' }),
      (args) => {
        process.stdout.write(`${exportMachines(MACHINES, args.format)}\n`);
      },
    )
    .command('streams', 'stream operations', (y) =>
      y
        .command(
          'ls',
          'list streams',
          (yy) => yy,
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const streams = await naq.streams.list();
              if ((args as GlobalArgs).json) return printJson(streams);
              for (const s of streams) {
                out(`${s.config.name}\t${s.config.subjects?.join(',') ?? ''}\t${s.state.messages} msgs\t${formatBytes(s.state.bytes)}`);
              }
            }),
        )
        .command(
          'info [name]',
          'show one stream',
          (yy) => yy.positional('name', { type: 'string' }).check(need('name')).check(streamName),
          (args) => withNaq(args as GlobalArgs, async (naq) => printJson(await naq.streams.info(args.name!))),
        )
        .command(
          'purge [name]',
          'purge a stream (or only one subject)',
          (yy) =>
            yy
              .positional('name', { type: 'string' })
              .option('subject', { type: 'string', describe: 'purge only this subject' })
              .check(need('name'))
              .check(streamName)
              .check(valid((a) => a.subject === undefined || subjectArg('--subject', a.subject))),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const r = await naq.streams.purge(args.name!, args.subject);
              if ((args as GlobalArgs).json) printJson(r);
              else out(`purged ${r.purged} messages from ${args.name}`);
            }),
        )
        .command(
          'rm [name]',
          'delete a stream',
          (yy) => yy.positional('name', { type: 'string' }).check(need('name')).check(streamName),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              await naq.streams.delete(args.name!);
              if ((args as GlobalArgs).json) printJson({ deleted: args.name });
              else out(`deleted stream ${args.name}`);
            }),
        )
        .demandCommand(1, 'name a streams command: ls, info, purge or rm'),
    )
    .command('kv', 'key-value operations', (y) =>
      y
        .command(
          'get [bucket] [key]',
          'print a value',
          (yy) => yy.positional('bucket', { type: 'string' }).positional('key', { type: 'string' }).check(need('bucket', 'key')).check(kvArgs),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const entry = await naq.kv.get(args.bucket!, args.key!);
              if (!entry) fail(`${args.bucket}/${args.key} not found`, EXIT_FAILURE);
              if ((args as GlobalArgs).json) printJson(entry);
              else out(entry.value);
            }),
        )
        .command(
          'put [bucket] [key] [value]',
          'store a value (the bucket is created if missing)',
          (yy) =>
            yy
              .positional('bucket', { type: 'string' })
              .positional('key', { type: 'string' })
              .positional('value', { type: 'string' })
              .check(need('bucket', 'key', 'value'))
              .check(kvArgs),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              await naq.kv.ensureBucket(args.bucket!);
              const revision = await naq.kv.put(args.bucket!, args.key!, args.value!);
              if ((args as GlobalArgs).json) printJson({ bucket: args.bucket!, key: args.key!, revision });
              else out(`${args.bucket}/${args.key} revision ${revision}`);
            }),
        )
        .command(
          'del [bucket] [key]',
          'delete a key',
          (yy) => yy.positional('bucket', { type: 'string' }).positional('key', { type: 'string' }).check(need('bucket', 'key')).check(kvArgs),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              await naq.kv.delete(args.bucket!, args.key!);
              if ((args as GlobalArgs).json) printJson({ deleted: `${args.bucket}/${args.key}` });
              else out(`deleted ${args.bucket}/${args.key}`);
            }),
        )
        .command(
          'keys [bucket]',
          'list keys',
          (yy) =>
            yy
              .positional('bucket', { type: 'string' })
              .option('filter', { type: 'string', describe: 'subject-style filter, e.g. "jobs.>"' })
              .check(need('bucket'))
              .check(kvArgs),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const keys = await naq.kv.keys(args.bucket!, args.filter);
              if ((args as GlobalArgs).json) printJson(keys);
              else for (const k of keys) out(k);
            }),
        )
        .command(
          'watch [bucket]',
          'print current values, then changes as they happen, until SIGINT',
          (yy) =>
            yy
              .positional('bucket', { type: 'string' })
              .option('filter', { type: 'string', describe: 'subject-style filter' })
              .check(need('bucket'))
              .check(kvArgs),
          (args) =>
            withNaq(args as GlobalArgs, async (naq) => {
              const watch = await naq.kv.watch(args.bucket!, args.filter);
              const stop = () => watch.stop();
              process.once('SIGINT', stop);
              process.once('SIGTERM', stop);
              for await (const e of watch) {
                if ((args as GlobalArgs).json) out(JSON.stringify(e));
                else out(`${e.operation} ${e.key} = ${e.value} (revision ${e.revision})`);
              }
            }),
        )
        .demandCommand(1, 'name a kv command: get, put, del, keys or watch'),
    )
    .demandCommand(1, 'name a command')
    .strict()
    .help()
    .alias('help', 'h')
    .version()
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      if (err && !(err instanceof UsageError)) throw err;
      usageFailure(err?.message ?? msg);
    });
}

async function main() {
  try {
    await buildCli(hideBin(process.argv)).parseAsync();
    process.exit(0);
  } catch (error) {
    // A user's mistake, whether the CLI or the library found it: the message, never a stack.
    // Whether yargs or this catch sees a UsageError depends on how the handler threw it.
    if (error instanceof UsageError) usageFailure(error.message);
    if (error instanceof ConfigError || error instanceof InvalidArgumentError) fail(error.message, EXIT_USAGE);
    if (error instanceof NaqError) fail(error.message, EXIT_FAILURE);
    fail(error instanceof Error ? error.message : String(error), EXIT_FAILURE);
  }
}

void main();
