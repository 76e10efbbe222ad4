#!/usr/bin/env node
/** The `naq` command: mounts the command modules of src/cli/ and maps what failed to an exit code. */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, InvalidArgumentError, NaqError } from './core/errors.js';
import { UsageError } from './cli/args.js';
import { conformanceCommand } from './cli/conformance.js';
import { dashboardCommand } from './cli/dashboard.js';
import { eventsCommand } from './cli/events.js';
import { flowCommands } from './cli/flows.js';
import { jobsCommands } from './cli/jobs.js';
import { jobsListCommand } from './cli/list.js';
import { kvCommand, streamsCommand } from './cli/ops.js';
import { queueCommand, workersCommand } from './cli/queues.js';
import { runCommands } from './cli/run.js';
import { scheduleCommand } from './cli/schedules.js';
import { EXIT_FAILURE, EXIT_USAGE, fail, usageFailure, withGlobalOptions } from './cli/shared.js';
import { toolCommands } from './cli/tools.js';

function buildCli(argv: string[]) {
  // In the order `naq --help` lists them.
  return withGlobalOptions(
    yargs(argv)
      .scriptName('naq')
      .usage('$0 <command> [options]\n\nA job queue and service runtime on NATS JetStream, built as an XState actor system.'),
  )
    .command(runCommands.supervisor)
    .command(runCommands.worker)
    .command(runCommands.scheduler)
    .command(dashboardCommand)
    .command(scheduleCommand)
    .command(jobsCommands.enqueue)
    .command(jobsCommands.job)
    .command(flowCommands.flow)
    .command(flowCommands.batch)
    .command(jobsListCommand)
    .command(queueCommand)
    .command(workersCommand)
    .command(eventsCommand)
    .command(toolCommands.inspectReplay)
    .command(toolCommands.config)
    .command(toolCommands.machines)
    .command(streamsCommand)
    .command(kvCommand)
    .command(conformanceCommand)
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
  // A reader that stopped reading (`naq job ID | head -1`) is not a failure of the command.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  try {
    await buildCli(hideBin(process.argv)).parseAsync();
    // A command that reports failure without throwing (the conformance kit) sets exitCode.
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
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
