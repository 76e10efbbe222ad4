/**
 * `naq supervisor | worker | scheduler`: the long-running commands. Each runs the supervisor
 * with its roles until SIGINT / SIGTERM, then drains and exits 0 (1 if it failed).
 */
import type { Argv } from 'yargs';
import type { NaqConfig, NaqConfigInput, Role } from '../config/index.js';
import { ROLES } from '../config/names.js';
import { DEFAULT_NATS_SERVER } from '../config/nats-url.js';
import { ConfigError, NaqError, toError } from '../core/errors.js';
import type { RunningInspector } from '../inspect/inspector.js';
import type { Logger } from '../core/log.js';
import type { Handlers } from '../actors/worker/queue-worker.js';
import type { SandboxPool } from '../actors/worker/sandbox.js';
import { integerArg, queueArg, textArg } from './args.js';
import { configFrom, defineCommand, EXIT_FAILURE, loggerFor, valid, type GlobalArgs } from './shared.js';
import { keepOldGenerationFlat } from './process-settings.js';

/** Everything a run command may have been given; each command declares its own subset. */
interface RunArgs extends GlobalArgs {
  roles?: string[] | undefined;
  queue?: string[] | undefined;
  handlers?: string | undefined;
  concurrency?: string | undefined;
  'fire-schedules'?: boolean | undefined;
  sandbox?: boolean | undefined;
  embedded?: boolean | undefined;
  inspect?: boolean | undefined;
  'inspect-port'?: string | undefined;
  'inspect-record'?: string | undefined;
  'inspect-payloads'?: boolean | undefined;
  'metrics-port'?: string | undefined;
  dashboard?: boolean | undefined;
  'dashboard-port'?: string | undefined;
}

function withRunOptions<T>(y: Argv<T>) {
  return y
    .option('metrics-port', { type: 'string', describe: 'serve Prometheus metrics at http://127.0.0.1:PORT/metrics, 0 to 65535 (0: any free port)' })
    .check(valid((a) => a['metrics-port'] === undefined || integerArg('--metrics-port', a['metrics-port'], 0, 65535)))
    .option('dashboard', { type: 'boolean', describe: 'serve the web dashboard too (config dashboard.*; default http://127.0.0.1:8080/)' })
    .option('dashboard-port', { type: 'string', describe: 'port of the dashboard, 0 to 65535 (implies --dashboard; default from config: 8080)' })
    .check(valid((a) => a['dashboard-port'] === undefined || integerArg('--dashboard-port', a['dashboard-port'], 0, 65535)))
    .option('inspect', { type: 'boolean', describe: 'serve the Stately inspector bridge and stream every actor to it' })
    .option('inspect-port', { type: 'string', describe: 'port of the inspector bridge, 0 to 65535 (default from config: 5678)' })
    .option('inspect-record', { type: 'string', describe: 'write inspection events to FILE as JSON lines' })
    .option('inspect-payloads', { type: 'boolean', describe: 'include job / KV payloads in inspection events' });
}

function withWorkerOptions<T>(y: Argv<T>) {
  return y
    .option('queue', { type: 'string', array: true, describe: 'queue(s) to consume (repeatable; default from config: default)' })
    .option('handlers', { type: 'string', describe: 'JS/TS module whose exported functions are the handlers, by job name' })
    .option('concurrency', { type: 'string', describe: 'jobs run at once per queue, an integer >= 1 (default from config: 10)' })
    .option('sandbox', { type: 'boolean', describe: "run the handlers module's handlers in worker threads, one job per thread, at most concurrency x queues threads (default from config: false)" })
    .option('fire-schedules', { type: 'boolean', describe: 'take part in firing delayed jobs and schedules (one leader fires); --no-fire-schedules leaves that to `naq scheduler` (default from config: true)' });
}

function isRole(value: string): value is Role {
  return ROLES.some((role) => role === value);
}

/**
 * `--roles`, typed for the config, whose flag input takes known roles only: an unknown one is
 * refused here, in the words the config uses for a file or NAQ_ROLES; an empty list is left to
 * the config to refuse.
 */
function rolesInput(roles: readonly string[]): Role[] {
  const checked: Role[] = [];
  for (const [i, role] of roles.entries()) {
    if (!isRole(role)) throw new ConfigError(`roles[${i}]`, `expected one of ${ROLES.map((r) => JSON.stringify(r)).join(', ')}, got ${JSON.stringify(role)} (from flags)`);
    checked.push(role);
  }
  return checked;
}

/** The run commands' flags as config input, each checked here so that a message names the flag. */
function runConfigInput(args: RunArgs): NaqConfigInput {
  const extra: NaqConfigInput = {};
  const worker: NonNullable<NaqConfigInput['worker']> = {};
  if (args.queue !== undefined) worker.queues = args.queue.flatMap((q) => String(q).split(',')).map((q) => queueArg('--queue', q));
  if (args.handlers !== undefined) worker.handlers = textArg('--handlers', args.handlers, 'a JS or TS module file');
  if (args.concurrency !== undefined) worker.concurrency = integerArg('--concurrency', args.concurrency, 1);
  if (args['fire-schedules'] !== undefined) worker.fireSchedules = args['fire-schedules'];
  if (args.sandbox !== undefined) worker.sandbox = args.sandbox;
  if (Object.keys(worker).length > 0) extra.worker = worker;
  if (args.embedded === false) extra.embedded = { enabled: false };
  const inspect: NonNullable<NaqConfigInput['inspect']> = {};
  if (args.inspect) inspect.enabled = true;
  // Passed on even without --inspect: the inspector may be switched on by config or env.
  if (args['inspect-port'] !== undefined) inspect.port = integerArg('--inspect-port', args['inspect-port'], 0, 65535);
  if (args['inspect-record'] !== undefined) inspect.recordFile = textArg('--inspect-record', args['inspect-record'], 'a file to write');
  if (Object.keys(inspect).length > 0) extra.inspect = inspect;
  if (args['dashboard-port'] !== undefined) extra.dashboard = { port: integerArg('--dashboard-port', args['dashboard-port'], 0, 65535) };
  // Last: the config reports a bad role after the flags checked above, and so does this.
  if (args.roles) extra.roles = rolesInput(args.roles);
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

/** The worker's handlers; with `worker.sandbox`, the pool of threads they run in (closed after the run). */
async function handlersFor(config: NaqConfig, logger: Logger): Promise<{ handlers: Handlers; pool?: SandboxPool }> {
  if (!config.roles.includes('worker')) return { handlers: {} };
  if (!config.worker.handlers) throw new ConfigError('--handlers', 'the worker role needs a handlers module (--handlers FILE or worker.handlers)');
  const { concurrency, queues, sandbox } = config.worker;
  let loaded: { handlers: Handlers; pool?: SandboxPool };
  if (sandbox) {
    const { loadSandboxedHandlers } = await import('../actors/worker/sandbox.js');
    // Every queue runs up to `concurrency` jobs at once: a thread for each, never more.
    loaded = await loadSandboxedHandlers(config.worker.handlers, { threads: concurrency * queues.length, logger });
  } else {
    const { loadHandlers } = await import('../actors/worker/handlers-module.js');
    loaded = { handlers: await loadHandlers(config.worker.handlers) };
  }
  logger.info({ queues, handlers: Object.keys(loaded.handlers), concurrency, ...(sandbox ? { sandbox } : {}) }, 'worker handlers loaded');
  return loaded;
}

/** A job to try from another terminal, for the log of a process that serves the dashboard. */
function exampleJob(handlers: Handlers): string {
  const names = Object.keys(handlers);
  if (names.includes('add')) return `add --data '{"a":1,"b":2}'`;
  return names[0] ? `${names[0]} --data '{}'` : `hello --data '{}'`;
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

/**
 * Runs until SIGINT / SIGTERM, then drains and exits 0; exits 1 if the supervisor failed.
 * What a run needs is loaded here, and only what it was asked for: a worker without
 * --dashboard, --inspect or --metrics-port loads none of them.
 */
async function runSupervisor(args: RunArgs) {
  const loaded = await configFrom(args, runConfigInput(args));
  const logger = await loggerFor(loaded);
  keepServingOnUnhandledRejection(logger);
  keepOldGenerationFlat();
  const wantsDashboard = Boolean(args.dashboard) || args['dashboard-port'] !== undefined;
  const [{ resolveNats }, { createNaq }, { configSecrets }, dashboardModules] = await Promise.all([
    import('../nats-server/embedded.js'),
    import('../naq.js'),
    import('../config/secrets.js'),
    wantsDashboard ? Promise.all([import('../dashboard/index.js'), import('../dashboard/security.js')]) : null,
  ]);
  // Before anything starts: a dashboard that may not bind is a mistake to report at once.
  if (dashboardModules) dashboardModules[1].checkBind(loaded.dashboard.host, loaded.dashboard);
  // Before resolveNats, which may start an embedded nats-server: a bad handlers module is a
  // mistake to report at once, not after a server was started for nothing.
  const { handlers, pool } = await handlersFor(loaded, logger);
  const { config, embedded } = await resolveNats(loaded, logger);

  let inspector: RunningInspector | null = null;
  if (config.inspect.enabled || config.inspect.recordFile) {
    const { startInspector } = await import('../inspect/inspector.js');
    inspector = startInspector({
      port: config.inspect.enabled ? config.inspect.port : 0,
      ...(config.inspect.recordFile ? { recordFile: config.inspect.recordFile } : {}),
      secrets: configSecrets(config),
      payloads: Boolean(args['inspect-payloads']),
    });
    if (inspector.url) logger.info(`inspector: open ${inspector.url} to watch the actors live`);
    if (config.inspect.recordFile) logger.info(`recording inspection events to ${config.inspect.recordFile}`);
  }

  const metricsPort = args['metrics-port'] === undefined ? undefined : integerArg('--metrics-port', args['metrics-port'], 0, 65535);
  const dashboardModule = dashboardModules?.[0];
  const tree = dashboardModule ? new dashboardModule.ActorTree(configSecrets(config)) : null;
  const inspect = tree && dashboardModule ? dashboardModule.inspectBoth(tree, inspector?.observer) : inspector?.observer;
  const naq = createNaq(config, { logger, handlers, ...(inspect ? { inspect } : {}), ...(metricsPort !== undefined || wantsDashboard ? { metrics: true } : {}) });
  const metricsServer = metricsPort !== undefined && naq.metrics ? await (await import('../metrics/server.js')).serveMetrics(naq.metrics, metricsPort) : null;
  if (metricsServer) logger.info(`metrics: http://127.0.0.1:${metricsServer.port}/metrics`);
  const dashboard = tree && dashboardModule
    ? await dashboardModule.startDashboardFor(naq, config, logger, tree).catch(async (error: unknown) => {
        // A port already taken must not leave the embedded nats-server running behind us.
        await inspector?.stop();
        await metricsServer?.close();
        if (embedded) await embedded.stop();
        throw new NaqError('DASHBOARD_LISTEN', `the dashboard could not listen on ${config.dashboard.host}:${config.dashboard.port}: ${toError(error).message}`);
      })
    : null;
  if (dashboard) {
    logger.info(`dashboard: ${dashboard.url}${config.dashboard.token ? ' (log in with ?token=<dashboard.token>)' : ''}`);
    const url = config.nats.url && config.nats.url !== DEFAULT_NATS_SERVER ? ` --nats-url ${config.nats.url}` : '';
    logger.info(`try: npx naq enqueue ${exampleJob(handlers)}${url}`);
  }
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
  await metricsServer?.close();
  await dashboard?.close();
  await pool?.close();
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

const supervisor = defineCommand({
  command: 'supervisor',
  describe: 'run the naq supervisor: connection, services and roles, until SIGINT / SIGTERM',
  builder: (y) =>
    withWorkerOptions(withRunOptions(y))
      .option('roles', { type: 'string', array: true, describe: 'roles to run (producer, worker, scheduler)' })
      .option('embedded', { type: 'boolean', describe: 'start a local nats-server when none is configured or answering (--no-embedded turns it off)' }),
  handler: (args) => runSupervisor(args),
});

const worker = defineCommand({
  command: 'worker',
  describe: 'run workers for one or more queues (the supervisor with the worker role), until SIGINT / SIGTERM',
  builder: (y) => withWorkerOptions(withRunOptions(y)).option('embedded', { type: 'boolean', describe: 'start a local nats-server when none answers' }),
  handler: (args) => runSupervisor({ ...args, roles: ['producer', 'worker'] }),
});

const scheduler = defineCommand({
  command: 'scheduler',
  describe: 'run a scheduler (the supervisor with the scheduler role): one leader among all of them fires due schedules',
  builder: (y) => withRunOptions(y).option('embedded', { type: 'boolean', describe: 'start a local nats-server when none answers' }),
  handler: (args) => runSupervisor({ ...args, roles: ['producer', 'scheduler'] }),
});

export const runCommands = { supervisor, worker, scheduler };
