#!/usr/bin/env node
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { stringify as toYaml } from 'yaml';
import { configSecrets, loadConfig, redactConfig, type NaqConfig, type NaqConfigInput } from './config.js';
import { resolveNats } from './embedded.js';
import { ConfigError, NaqError } from './errors.js';
import { replayRecording, startInspector, type RunningInspector } from './inspector.js';
import { readFile } from 'node:fs/promises';
import { createLogger, type Logger } from './log.js';
import { exportMachines } from './machine-export.js';
import { MACHINES } from './machines/index.js';
import { createNaq, type Naq } from './naq.js';
import { loadHandlers } from './handlers-module.js';
import { eventsCommand, EventsUsageError } from './cli-events.js';
import { JobFailedError } from './actors/jobs-runtime.js';
import type { BackoffOptions, JobOptions } from './job.js';

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

/** defaults ← file ← environment ← flags; one-shot commands log warnings only unless asked. */
function configFrom(args: GlobalArgs, extra: NaqConfigInput = {}, quiet = false): NaqConfig {
  const flags: NaqConfigInput = { ...extra };
  if (args['nats-url'] !== undefined) flags.nats = { ...flags.nats, url: args['nats-url'] };
  const level = args['log-level'] ?? (quiet && !process.env.NAQ_LOG_LEVEL ? 'warn' : undefined);
  if (level !== undefined) flags.log = { ...flags.log, level: level as never };
  return loadConfig({ ...(args.config ? { file: args.config } : {}), env: process.env, flags });
}

function loggerFor(config: NaqConfig): Logger {
  return createLogger({ level: config.log.level, pretty: config.log.pretty, secrets: configSecrets(config) });
}

/** Runs a one-shot command against a started (producer-only) system, then stops it. */
async function withNaq<T>(args: GlobalArgs, work: (naq: Naq) => Promise<T>): Promise<T> {
  const config = configFrom(args, {}, true);
  const naq = createNaq(config, { logger: loggerFor(config), services: ['streams', 'kv', 'events', 'jobs'] });
  try {
    await naq.start({ timeoutMs: config.nats.connectTimeoutMs + config.ops.timeoutMs });
    return await work(naq);
  } finally {
    await naq.stop();
  }
}

class UsageError extends Error {}

/** Positionals are checked here, not by yargs, so the error names the missing argument. */
function need(...names: string[]) {
  return (argv: Record<string, unknown>) => {
    const missing = names.filter((n) => argv[n] === undefined || argv[n] === '');
    if (missing.length) throw new UsageError(`missing argument ${missing.map((m) => `<${m}>`).join(', ')}`);
    return true;
  };
}

function printJson(value: unknown) {
  out(JSON.stringify(value, null, 2));
}

interface InspectArgs {
  inspect?: boolean;
  'inspect-port'?: number;
  'inspect-record'?: string;
  'inspect-payloads'?: boolean;
}

function withInspectOptions<T>(y: Argv<T>) {
  return y
    .option('inspect', { type: 'boolean', describe: 'serve the Stately inspector bridge and stream every actor to it' })
    .option('inspect-port', { type: 'number', describe: 'port of the inspector bridge (default from config: 5678)' })
    .option('inspect-record', { type: 'string', describe: 'write inspection events to FILE as JSON lines' })
    .option('inspect-payloads', { type: 'boolean', describe: 'include job / KV payloads in inspection events' });
}

interface WorkerArgs {
  queue?: string[];
  handlers?: string;
  concurrency?: number;
}

function withWorkerOptions<T>(y: Argv<T>) {
  return y
    .option('queue', { type: 'string', array: true, describe: 'queue(s) to consume (repeatable; default from config: default)' })
    .option('handlers', { type: 'string', describe: 'JS/TS module whose exported functions are the handlers, by job name' })
    .option('concurrency', { type: 'number', describe: 'jobs run at once per queue (default from config: 10)' });
}

/** `naq supervisor`: runs until SIGINT / SIGTERM, then drains and exits 0. */
async function runSupervisor(args: GlobalArgs & InspectArgs & WorkerArgs & { roles?: string[]; embedded?: boolean }) {
  const extra: NaqConfigInput = {};
  if (args.roles) extra.roles = args.roles as NaqConfig['roles'];
  if (args.queue || args.handlers || args.concurrency !== undefined) {
    extra.worker = {
      ...(args.queue ? { queues: args.queue.flatMap((q) => q.split(',')) } : {}),
      ...(args.handlers ? { handlers: args.handlers } : {}),
      ...(args.concurrency !== undefined ? { concurrency: args.concurrency } : {}),
    };
  }
  if (args.embedded === false) extra.embedded = { enabled: false };
  if (args.inspect) extra.inspect = { enabled: true, ...(args['inspect-port'] ? { port: args['inspect-port'] } : {}) };
  if (args['inspect-record']) extra.inspect = { ...extra.inspect, recordFile: args['inspect-record'] };
  const loaded = configFrom(args, extra);
  const logger = loggerFor(loaded);
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

  let handlers = {};
  if (config.roles.includes('worker')) {
    if (!config.worker.handlers) throw new ConfigError('--handlers', 'the worker role needs a handlers module (--handlers FILE or worker.handlers)');
    handlers = await loadHandlers(config.worker.handlers);
    logger.info({ queues: config.worker.queues, handlers: Object.keys(handlers), concurrency: config.worker.concurrency }, 'worker handlers loaded');
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

function parseBackoff(text: string): BackoffOptions {
  const m = /^(fixed|exponential):(\d+)$/.exec(text);
  if (!m) throw new UsageError(`invalid --backoff ${JSON.stringify(text)}: expected fixed:MS or exponential:MS`);
  return { type: m[1] as 'fixed' | 'exponential', delay: Number(m[2]) };
}

function parseData(text: string | undefined): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`invalid --data: not JSON (${(error as Error).message})`);
  }
}

interface EnqueueArgs extends GlobalArgs {
  name?: string;
  data?: string;
  queue?: string;
  'job-id'?: string;
  attempts?: number;
  backoff?: string;
  timeout?: number;
  'depends-on'?: string;
  wait?: boolean;
  'wait-timeout'?: number;
  delay?: number;
  at?: string;
}

async function runEnqueue(args: EnqueueArgs) {
  const data = parseData(args.data);
  const opts: JobOptions = {};
  if (args.queue) opts.queue = args.queue;
  if (args['job-id']) opts.jobId = args['job-id'];
  if (args.attempts !== undefined) opts.attempts = args.attempts;
  if (args.backoff) opts.backoff = parseBackoff(args.backoff);
  if (args.timeout !== undefined) opts.timeoutMs = args.timeout;
  if (args['depends-on']) opts.dependsOn = args['depends-on'].split(',').filter(Boolean);
  if (args.delay !== undefined && args.at !== undefined) throw new UsageError('give --delay or --at, not both');
  let at: number | undefined;
  if (args.at !== undefined) {
    at = Date.parse(args.at);
    if (!Number.isFinite(at)) throw new UsageError(`invalid --at ${JSON.stringify(args.at)}: expected an ISO date such as 2026-12-01T09:00:00Z`);
  }
  if (args.delay !== undefined) {
    if (!Number.isFinite(args.delay) || args.delay < 0) throw new UsageError('invalid --delay: expected a number of ms >= 0');
    at = Date.now() + args.delay;
  }
  if (at !== undefined && opts.dependsOn) throw new UsageError('--depends-on cannot be combined with --delay or --at');
  await withNaq(args, async (naq) => {
    const id = at !== undefined ? await naq.enqueueAt(at, args.name!, data, opts) : await naq.enqueue(args.name!, data, opts);
    if (!args.wait) {
      if (args.json) printJson({ id });
      else out(id);
      return;
    }
    try {
      const result = await naq.waitFor(id, { timeoutMs: args['wait-timeout'] ?? 30_000 });
      out(JSON.stringify(args.json ? { id, status: 'completed', result } : result));
    } catch (error) {
      if (error instanceof JobFailedError) {
        if (args.json) out(JSON.stringify({ id, status: error.status, error: error.error }));
        fail(`job ${id} ${error.status}: ${error.error?.message ?? error.message}`, EXIT_FAILURE);
      }
      throw error;
    }
  });
}

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
              .option('every', { type: 'number', describe: 'period in ms' })
              .option('data', { type: 'string', describe: 'job data as JSON' })
              .option('queue', { type: 'string', describe: 'queue (default: default)' })
              .option('repeat', { type: 'number', describe: 'fire at most N times' })
              .check(need('id', 'name')),
          (args) => {
            if ((args.cron === undefined) === (args.every === undefined)) throw new UsageError('give exactly one of --cron or --every');
            if (args.tz !== undefined && args.cron === undefined) throw new UsageError('--tz goes with --cron');
            const spec = args.cron !== undefined ? { cron: args.cron, ...(args.tz ? { tz: args.tz } : {}) } : { every: args.every! };
            const data = parseData(args.data);
            return withNaq(args as GlobalArgs, async (naq) => {
              const r = await naq.schedule(args.id!, spec, args.name!, data, {
                ...(args.queue ? { queue: args.queue } : {}),
                ...(args.repeat !== undefined ? { repeat: args.repeat } : {}),
              });
              if ((args as GlobalArgs).json) printJson(r);
              else out(`${r.id} next run ${formatTime(r.nextRunAt ?? undefined)}`);
            });
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
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')),
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
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')),
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
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')),
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
          (yy) => yy.positional('id', { type: 'string' }).check(need('id')),
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
          .option('attempts', { type: 'number', describe: 'total attempts' })
          .option('backoff', { type: 'string', describe: 'retry backoff: fixed:MS or exponential:MS' })
          .option('timeout', { type: 'number', describe: 'per-attempt timeout in ms' })
          .option('depends-on', { type: 'string', describe: 'comma-separated job ids that must complete first' })
          .option('wait', { type: 'boolean', describe: 'wait for the result and print it (exit 1 if the job fails)' })
          .option('wait-timeout', { type: 'number', describe: 'how long --wait waits, ms (default 30000)' })
          .option('delay', { type: 'number', describe: 'run no earlier than MS from now (needs a running scheduler)' })
          .option('at', { type: 'string', describe: 'run at this ISO time (needs a running scheduler)' })
          .check(need('name')),
      (args) => runEnqueue(args as EnqueueArgs),
    )
    .command(
      'job [action] [id]',
      'show a job (naq job ID), or: naq job cancel ID, naq job retry ID',
      (y) => y.positional('action', { type: 'string' }).positional('id', { type: 'string' }).check(need('action')),
      (args) =>
        withNaq(args as GlobalArgs, async (naq) => {
          const json = (args as GlobalArgs).json;
          const action = args.action!;
          if (action === 'cancel' || action === 'retry') {
            if (!args.id) throw new UsageError(`missing argument <id> (naq job ${action} ID)`);
            const r = action === 'cancel' ? await naq.cancel(args.id) : await naq.retryDead(args.id);
            if (json) printJson(r);
            else out('status' in r ? `${r.id} ${r.status}` : `${r.id} re-enqueued`);
            return;
          }
          if (args.id) throw new UsageError(`unknown job action ${JSON.stringify(action)}: expected cancel or retry`);
          const record = await naq.getJob(action);
          if (!record) fail(`job ${action} not found`, EXIT_FAILURE);
          if (json) return printJson(record);
          out(`${record.id}  ${record.status}  ${record.name} on ${record.queue}`);
          out(`  enqueued ${formatTime(record.enqueuedAt)}  started ${formatTime(record.startedAt)}  finished ${formatTime(record.finishedAt)}`);
          out(`  attempts ${record.attempts.length}/${record.maxAttempts}`);
          for (const a of record.attempts) out(`    #${a.n} ${formatTime(a.startedAt)} ${a.error ? `error: ${a.error.message}` : a.finishedAt ? 'ok' : 'running'}`);
          if (record.dependsOn) out(`  depends on ${record.dependsOn.join(', ')}`);
          if (record.status === 'completed') out(`  result ${JSON.stringify(record.result)}`);
          if (record.error) out(`  error ${record.error.message}`);
        }),
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
          (yy) => yy.positional('queue', { type: 'string' }).check(need('queue')),
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
    .command(eventsCommand(withNaq as never) as never)
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
          (yy) => yy.positional('name', { type: 'string' }).check(need('name')),
          (args) => withNaq(args as GlobalArgs, async (naq) => printJson(await naq.streams.info(args.name!))),
        )
        .command(
          'purge [name]',
          'purge a stream (or only one subject)',
          (yy) => yy.positional('name', { type: 'string' }).option('subject', { type: 'string', describe: 'purge only this subject' }).check(need('name')),
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
          (yy) => yy.positional('name', { type: 'string' }).check(need('name')),
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
          (yy) => yy.positional('bucket', { type: 'string' }).positional('key', { type: 'string' }).check(need('bucket', 'key')),
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
              .check(need('bucket', 'key', 'value')),
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
          (yy) => yy.positional('bucket', { type: 'string' }).positional('key', { type: 'string' }).check(need('bucket', 'key')),
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
          (yy) => yy.positional('bucket', { type: 'string' }).option('filter', { type: 'string', describe: 'subject-style filter, e.g. "jobs.>"' }).check(need('bucket')),
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
          (yy) => yy.positional('bucket', { type: 'string' }).option('filter', { type: 'string', describe: 'subject-style filter' }).check(need('bucket')),
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
      process.stderr.write(`naq: ${err?.message ?? msg}\nRun "naq --help" for usage.\n`);
      process.exit(EXIT_USAGE);
    });
}

async function main() {
  try {
    await buildCli(hideBin(process.argv)).parseAsync();
    process.exit(0);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UsageError || error instanceof EventsUsageError) fail(error.message, EXIT_USAGE);
    if (error instanceof NaqError) fail(error.message, EXIT_FAILURE);
    fail(error instanceof Error ? error.message : String(error), EXIT_FAILURE);
  }
}

void main();
