/**
 * `naq dashboard`: the web dashboard as a process of its own (a producer-only naq: it reads and
 * operates, runs no jobs), until SIGINT / SIGTERM. The run commands serve the same dashboard
 * with `--dashboard` (see run.ts).
 */
import type { Argv } from 'yargs';
import { ConfigError, NaqError, toError } from '../core/errors.js';
import { integerArg, textArg } from './args.js';
import { configFrom, defineCommand, EXIT_FAILURE, fail, loggerFor, valid, type GlobalArgs } from './shared.js';

export function withDashboardAccessOptions<T>(y: Argv<T>) {
  return y
    .option('read-only', { type: 'boolean', describe: 'the dashboard shows, never acts: every action is hidden and refused (403)' })
    .option('hide-payloads', { type: 'boolean', describe: "the dashboard never shows jobs' data and results" });
}

const dashboard = defineCommand({
  command: 'dashboard',
  describe: 'serve the web dashboard (queues, jobs, workers, schedules, the live actor tree) and /metrics, until SIGINT / SIGTERM',
  builder: (y: Argv<GlobalArgs>) =>
    withDashboardAccessOptions(y)
      .option('port', { type: 'string', describe: 'port to listen on, 0 to 65535 (default from config dashboard.port: 8080)' })
      .option('host', { type: 'string', describe: 'address to bind (default from config dashboard.host: 127.0.0.1); beyond loopback it needs dashboard.token or dashboard.user/password' })
      .check(valid((a) => a.port === undefined || integerArg('--port', a.port, 0, 65535)))
      .check(valid((a) => a.host === undefined || textArg('--host', a.host, 'an address to bind'))),
  handler: async (args) => {
    const config = await configFrom(args, {
      dashboard: {
        ...(args.port !== undefined ? { port: integerArg('--port', args.port, 0, 65535) } : {}),
        ...(args.host !== undefined ? { host: textArg('--host', args.host, 'an address to bind') } : {}),
      },
    });
    // Loaded by this command only: the dashboard's server, the actor system.
    const [{ checkBind }, { ActorTree, startDashboardFor }, { createNaq }, { configSecrets }] = await Promise.all([
      import('../dashboard/security.js'),
      import('../dashboard/index.js'),
      import('../naq.js'),
      import('../config/secrets.js'),
    ]);
    // Before connecting: a dashboard that may not start is a mistake to report at once.
    checkBind(config.dashboard.host, config.dashboard);
    const logger = await loggerFor(config);
    const tree = new ActorTree(configSecrets(config));
    const naq = createNaq(config, { logger, inspect: tree.observer, metrics: true, resolveDependencies: false });
    const server = await startDashboardFor(naq, config, logger, tree, { readOnly: args['read-only'], hidePayloads: args['hide-payloads'] }).catch((error: unknown) => {
      if (error instanceof ConfigError) throw error;
      throw new NaqError('DASHBOARD_LISTEN', `the dashboard could not listen on ${config.dashboard.host}:${config.dashboard.port}: ${toError(error).message}`);
    });
    logger.info(`dashboard: ${server.url}${config.dashboard.token ? ' (log in with ?token=<dashboard.token>)' : ''}`);
    let stopping = false;
    const shutdown = () => {
      if (stopping) return;
      stopping = true;
      void server.close().then(() => naq.stop());
    };
    process.on('SIGINT', shutdown);
    process.on('SIGTERM', shutdown);
    naq.start().catch(() => {});
    const output = await naq.done;
    await server.close();
    if (output.status === 'failed') fail('the dashboard lost its connection to NATS for good', EXIT_FAILURE);
  },
});

export const dashboardCommand = dashboard;
