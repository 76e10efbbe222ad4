/** `naq schedule add | ls | show | pause | resume | rm`: recurring schedules, fired by the scheduler leader. */
import type { Argv } from 'yargs';
import type { NaqConfig } from '../config/index.js';
import { buildJob } from '../model/job.js';
import { buildSchedule, runJobId, type ScheduleOptions, type ScheduleRecord, type ScheduleSpec } from '../model/schedule.js';
import { cronArg, durationArg, integerArg, jobIdArg, jsonArg, queueArg, timeZoneArg, UsageError } from './args.js';
import { jobDefaults } from './jobs.js';
import { formatTime, printJson, show } from './output.js';
import { configFrom, defineCommand, defineGroup, EXIT_FAILURE, fail, need, valid, withNaq, type BuiltArgs, type GlobalArgs } from './shared.js';

function addOptions(y: Argv<GlobalArgs>) {
  return y
    .positional('id', { type: 'string' })
    .positional('name', { type: 'string', describe: 'handler name' })
    .option('cron', { type: 'string', describe: 'cron expression (5 fields, or 6 with seconds)' })
    .option('tz', { type: 'string', describe: 'IANA time zone for --cron' })
    .option('every', { type: 'string', describe: 'period in ms (1 ms to 10 years)' })
    .option('data', { type: 'string', describe: 'job data as JSON' })
    .option('queue', { type: 'string', describe: 'queue (default: default)' })
    .option('repeat', { type: 'string', describe: 'fire at most N times (an integer >= 1)' })
    .option('priority', { type: 'string', describe: "each run's priority: 1 (most urgent) to 10 (least), default 5" })
    .check(need('id', 'name'));
}

interface ScheduleInput {
  id: string;
  spec: ScheduleSpec;
  name: string;
  data: unknown;
  opts: ScheduleOptions;
}

/**
 * Every `schedule add` argument, then the library's checks of the whole schedule (one that
 * would never fire, say) and of the job each run will be (its size), as the scheduler makes them.
 */
function scheduleInput(args: BuiltArgs<typeof addOptions>, config: NaqConfig): ScheduleInput {
  const id = jobIdArg('<id>', args.id);
  if ((args.cron === undefined) === (args.every === undefined)) throw new UsageError('give exactly one of --cron or --every');
  if (args.tz !== undefined && args.cron === undefined) throw new UsageError('--tz goes with --cron');
  const tz = args.tz === undefined ? undefined : timeZoneArg('--tz', args.tz);
  const spec: ScheduleSpec =
    args.cron !== undefined ? { cron: cronArg('--cron', args.cron, tz), ...(tz !== undefined ? { tz } : {}) } : { every: durationArg('--every', args.every) };
  const opts: ScheduleOptions = {};
  if (args.queue !== undefined) opts.queue = queueArg('--queue', args.queue);
  if (args.repeat !== undefined) opts.repeat = integerArg('--repeat', args.repeat, 1);
  if (args.priority !== undefined) opts.priority = integerArg('--priority', args.priority, 1, 10);
  const data = args.data === undefined ? null : jsonArg('--data', args.data);
  const record = buildSchedule(id, spec, args.name!, data, opts);
  buildJob(record.name, data, { ...record.opts, queue: record.queue }, runJobId(record, record.nextRunAt ?? 0), jobDefaults(config));
  return { id, spec, name: args.name!, data, opts };
}

const add = defineCommand({
  command: 'add [id] [name]',
  describe: 'create or replace a schedule: --cron EXPR [--tz TZ] or --every MS',
  builder: addOptions,
  handler: async (args) => {
    const config = await configFrom(args, {}, true);
    const { id, spec, name, data, opts } = scheduleInput(args, config);
    return withNaq(
      args,
      async (naq) => show(args, await naq.schedule(id, spec, name, data, opts), (r) => `${r.id} next run ${formatTime(r.nextRunAt)}`),
      config,
    );
  },
});

function whenText(s: ScheduleRecord): string {
  return s.kind === 'cron' ? `cron ${s.cron}${s.tz ? ` ${s.tz}` : ''}` : s.kind === 'every' ? `every ${s.every} ms` : 'once';
}

const ls = defineCommand({
  command: 'ls',
  describe: 'list schedules',
  builder: (y) => y,
  handler: (args) =>
    withNaq(args, async (naq) =>
      show(args, await naq.listSchedules(), (all) => [
        'id\tstatus\twhen\tname\tqueue\tnext run\truns',
        ...all.map((s) => `${s.id}\t${s.status}\t${whenText(s)}\t${s.name}\t${s.queue}\t${formatTime(s.nextRunAt)}\t${s.runs}`),
      ]),
    ),
});

/** The <id> positional, present and a valid id, for the commands that name one schedule. */
function withScheduleId(y: Argv<GlobalArgs>) {
  return y
    .positional('id', { type: 'string' })
    .check(need('id'))
    .check(valid((a) => jobIdArg('<id>', a.id)));
}

const showOne = defineCommand({
  command: 'show [id]',
  describe: 'show one schedule',
  builder: withScheduleId,
  handler: (args) =>
    withNaq(args, async (naq) => {
      const s = await naq.getSchedule(args.id!);
      if (!s) fail(`schedule ${args.id} not found`, EXIT_FAILURE);
      printJson(s);
    }),
});

const pause = defineCommand({
  command: 'pause [id]',
  describe: 'pause a schedule',
  builder: withScheduleId,
  handler: (args) => withNaq(args, async (naq) => show(args, await naq.pauseSchedule(args.id!), (s) => `${s.id} paused`)),
});

const resume = defineCommand({
  command: 'resume [id]',
  describe: 'resume a paused (or failed) schedule from the next run after now',
  builder: withScheduleId,
  handler: (args) =>
    withNaq(args, async (naq) => show(args, await naq.resumeSchedule(args.id!), (s) => `${s.id} ${s.status}, next run ${formatTime(s.nextRunAt)}`)),
});

const rm = defineCommand({
  command: 'rm [id]',
  describe: 'remove a schedule',
  builder: withScheduleId,
  handler: (args) =>
    withNaq(args, async (naq) => {
      const removed = await naq.removeSchedule(args.id!);
      if (!removed) fail(`schedule ${args.id} not found`, EXIT_FAILURE);
      show(args, { removed: args.id }, () => `removed ${args.id}`);
    }),
});

export const scheduleCommand = defineGroup('schedule', 'recurring schedules', (y) =>
  y.command(add).command(ls).command(showOne).command(pause).command(resume).command(rm).demandCommand(1, 'name a schedule command: add, ls, show, pause, resume or rm'),
);
