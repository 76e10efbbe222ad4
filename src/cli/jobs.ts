/** `naq enqueue` and `naq job [cancel | retry] ID`: one job in, one job looked at or acted on. */
import type { Argv } from 'yargs';
import type { NaqConfig } from '../config/index.js';
import type { Naq } from '../naq.js';
import type { CheckedDedupe } from '../model/dedupe.js';
import { buildJob, type JobDefaults, type JobOptions, type JobRecord } from '../model/job.js';
import { backoffArg, groupArg, dedupeKeyArg, dedupeModeArg, durationArg, integerArg, isoTimeArg, jobIdArg, jobIdsArg, jsonArg, queueArg, UsageError } from './args.js';
import { formatTime, show, showLine } from './output.js';
import { configFrom, defineCommand, EXIT_FAILURE, fail, need, withNaq, type BuiltArgs, type GlobalArgs } from './shared.js';

/** The job defaults the jobs runtime builds from the same config. */
export function jobDefaults(config: NaqConfig): JobDefaults {
  return {
    attempts: config.jobs.attempts,
    backoff: { type: config.jobs.backoffType, delay: config.jobs.backoffDelayMs },
    maxPayloadBytes: config.jobs.maxPayloadBytes,
  };
}

/** A job enqueued without --job-id gets a 22-character nuid; the size check uses an id as long. */
const UNASSIGNED_JOB_ID = 'x'.repeat(22);

function enqueueOptions(y: Argv<GlobalArgs>) {
  return y
    .positional('name', { type: 'string', describe: 'handler name' })
    .option('data', { type: 'string', describe: 'job data as JSON' })
    .option('queue', { type: 'string', describe: 'queue (default: default)' })
    .option('job-id', { type: 'string', describe: 'idempotency key: while a job with this id is pending or running, it is not enqueued again' })
    .option('attempts', { type: 'string', describe: 'total attempts, the first included (an integer >= 1)' })
    .option('priority', { type: 'string', describe: '1 (most urgent) to 10 (least), default 5: a waiting job starts before any less urgent one' })
    .option('group', { type: 'string', describe: "the job's group (a tenant, say): groups take turns, within the queue's group limits" })
    .option('backoff', { type: 'string', describe: 'retry backoff: fixed:MS or exponential:MS' })
    .option('timeout', { type: 'string', describe: 'per-attempt timeout in ms (1 ms to 10 years)' })
    .option('depends-on', { type: 'string', describe: 'comma-separated job ids that must complete first' })
    .option('wait', { type: 'boolean', describe: 'wait for the result and print it (exit 1 if the job fails)' })
    .option('wait-timeout', { type: 'string', describe: 'how long --wait waits, ms (default 30000, at most 10 years)' })
    .option('delay', { type: 'string', describe: 'run no earlier than MS from now, 0 to 10 years (fired by a worker or a scheduler)' })
    .option('at', { type: 'string', describe: 'run at this ISO time (fired by a worker or a scheduler)' })
    .option('dedupe-key', { type: 'string', describe: 'a dedupe window on this key (needs --dedupe-ttl): enqueues of the key within it share one job, whose id each prints' })
    .option('dedupe-ttl', { type: 'string', describe: 'the window in ms, 1 to jobs.dedupeMaxTtlMs (default 1 day)' })
    .option('dedupe-mode', { type: 'string', describe: 'throttle (default): the first enqueue of the window runs, later ones are dropped; debounce: the job runs --dedupe-ttl ms after the last enqueue, with its data' })
    .check(need('name'));
}

type EnqueueArgs = BuiltArgs<typeof enqueueOptions>;

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
  if (args.priority !== undefined) opts.priority = integerArg('--priority', args.priority, 1, 10);
  if (args.group !== undefined) opts.group = groupArg('--group', args.group);
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
  const dedupe = dedupeInput(args);
  if (dedupe) {
    opts.dedupe = dedupe;
    if (dedupe.mode === 'debounce' && (at !== undefined || delay !== undefined)) throw new UsageError('--dedupe-mode debounce cannot be combined with --delay or --at: the job runs --dedupe-ttl ms after the last enqueue');
    if (dedupe.mode === 'debounce' && opts.dependsOn) throw new UsageError('--dedupe-mode debounce cannot be combined with --depends-on: a debounced job is a delayed job');
  }
  const when = delay !== undefined ? Date.now() + delay : at;
  return { name: args.name!, data, opts, ...(when !== undefined ? { at: when } : {}), waitTimeoutMs };
}

/** --dedupe-key with --dedupe-ttl and maybe --dedupe-mode, or none of them. */
function dedupeInput(args: EnqueueArgs): CheckedDedupe | undefined {
  const key = args['dedupe-key'] === undefined ? undefined : dedupeKeyArg('--dedupe-key', args['dedupe-key']);
  const ttlMs = args['dedupe-ttl'] === undefined ? undefined : durationArg('--dedupe-ttl', args['dedupe-ttl']);
  const mode = args['dedupe-mode'] === undefined ? undefined : dedupeModeArg('--dedupe-mode', args['dedupe-mode']);
  if (key === undefined) {
    if (ttlMs !== undefined || mode !== undefined) throw new UsageError(`${ttlMs !== undefined ? '--dedupe-ttl' : '--dedupe-mode'} goes with --dedupe-key`);
    return undefined;
  }
  if (ttlMs === undefined) throw new UsageError('--dedupe-key needs --dedupe-ttl (the window, ms)');
  return { key, ttlMs, mode: mode ?? 'throttle' };
}

async function runEnqueue(args: EnqueueArgs) {
  const input = enqueueInput(args);
  const config = await configFrom(args, {}, true);
  // The library's own check of the whole job (handler name, encoded size against
  // jobs.maxPayloadBytes, a job that depends on itself), before connecting rather than after.
  buildJob(input.name, input.data, input.opts, input.opts.jobId ?? UNASSIGNED_JOB_ID, jobDefaults(config));
  const maxTtlMs = config.jobs.dedupeMaxTtlMs;
  if (input.opts.dedupe && input.opts.dedupe.ttlMs > maxTtlMs) {
    throw new UsageError(`invalid --dedupe-ttl: ${input.opts.dedupe.ttlMs} ms is over jobs.dedupeMaxTtlMs (${maxTtlMs} ms), how long the dedupe bucket keeps a key`);
  }
  await withNaq(args, (naq) => enqueueAndReport(naq, input, args), config);
}

/** Enqueues, then prints the id, or with --wait the result (exit 1 if the job failed). */
async function enqueueAndReport(naq: Naq, input: EnqueueInput, args: EnqueueArgs): Promise<void> {
  const { name, data, opts, at } = input;
  const id = at !== undefined ? await naq.enqueueAt(at, name, data, opts) : await naq.enqueue(name, data, opts);
  if (!args.wait) return show(args, { id }, () => id);
  // Loaded with the actor system (withNaq), so no cost of its own here.
  const { JobFailedError } = await import('../actors/jobs/reads.js');
  try {
    const result = await naq.waitFor(id, { timeoutMs: input.waitTimeoutMs });
    // The result is JSON either way: a script pipes it on, --json adds the id and status.
    showLine(args, { id, status: 'completed', result }, () => JSON.stringify(result));
  } catch (error) {
    if (error instanceof JobFailedError) {
      showLine(args, { id, status: error.status, error: error.error }, () => []);
      fail(`job ${id} ${error.status}: ${error.error?.message ?? error.message}`, EXIT_FAILURE);
    }
    throw error;
  }
}

const enqueue = defineCommand({
  command: 'enqueue [name]',
  describe: 'enqueue a job; prints its id (with --wait, its result)',
  builder: enqueueOptions,
  handler: (args) => runEnqueue(args),
});

const ACTIONS = ['cancel', 'retry', 'promote', 'rm', 'delay'] as const;
type JobAction = { action: 'show' | (typeof ACTIONS)[number]; id: string };

/** `naq job ID`, or `naq job cancel | retry | promote | rm ID`. */
function jobAction(action: string, id: string | undefined): JobAction {
  const known = ACTIONS.find((a) => a === action);
  if (known) {
    if (id === undefined || id === '') throw new UsageError(`missing argument <id> (naq job ${known} ID)`);
    return { action: known, id: jobIdArg('<id>', id) };
  }
  if (id !== undefined) throw new UsageError(`unknown job action ${JSON.stringify(action)}: expected cancel, retry, promote, delay or rm`);
  return { action: 'show', id: jobIdArg('<id>', action) };
}

function recordText(record: JobRecord): string[] {
  return [
    `${record.id}  ${record.status}  ${record.name} on ${record.queue}`,
    `  enqueued ${formatTime(record.enqueuedAt)}  started ${formatTime(record.startedAt)}  finished ${formatTime(record.finishedAt)}`,
    `  attempts ${record.attempts.length}/${record.maxAttempts}${record.priority !== undefined ? `  priority ${record.priority}` : ''}`,
    ...record.attempts.map((a) => `    #${a.n} ${formatTime(a.startedAt)} ${a.error ? `error: ${a.error.message}` : a.finishedAt ? 'ok' : 'running'}`),
    ...(record.dependsOn ? [`  depends on ${record.dependsOn.join(', ')}`] : []),
    ...(record.status === 'completed' ? [`  result ${JSON.stringify(record.result)}`] : []),
    ...(record.error ? [`  error ${record.error.message}`] : []),
    ...(record.logs?.length ? [`  logs ${record.logs.length} lines${record.logsDropped ? ` (${record.logsDropped} earlier ones dropped)` : ''}: naq job ${record.id} --logs`] : []),
  ];
}

function logsText(record: JobRecord): string[] {
  return [
    ...(record.logsDropped ? [`(${record.logsDropped} earlier lines dropped)`] : []),
    ...(record.logs ?? []).map((l) => `${formatTime(l.ts)} ${l.level.toUpperCase().padEnd(5)} #${l.attempt} ${l.msg}`),
  ];
}

const job = defineCommand({
  command: 'job [action] [id]',
  describe: 'show a job (naq job ID), or: naq job cancel ID, naq job retry ID (a dead job), naq job promote ID (a delayed job runs now), naq job delay ID --by MS (a delayed job moves), naq job rm ID',
  builder: (y) =>
    y
      .positional('action', { type: 'string' })
      .positional('id', { type: 'string' })
      .option('logs', { type: 'boolean', describe: 'print the lines the handler logged (ctx.log), oldest first' })
      .option('by', { type: 'string', describe: 'with naq job delay ID: run it this many ms from now (0 to 10 years)' })
      .check(need('action')),
  handler: (args) => {
    const { action, id } = jobAction(args.action!, args.id);
    if (args.logs && action !== 'show') throw new UsageError(`--logs goes with naq job ID, not naq job ${action}`);
    if ((args.by !== undefined) !== (action === 'delay')) throw new UsageError(action === 'delay' ? 'naq job delay ID needs --by MS' : `--by goes with naq job delay ID, not naq job ${action}`);
    const by = args.by === undefined ? 0 : durationArg('--by', args.by, 0);
    return withNaq(args, async (naq) => {
      if (action === 'cancel') return show(args, await naq.cancel(id), (r) => `${r.id} ${r.status}`);
      if (action === 'retry') return show(args, await naq.retryDead(id), (r) => `${r.id} re-enqueued`);
      if (action === 'promote') return show(args, await naq.promote(id), (r) => `${r.id} promoted: it runs now`);
      if (action === 'rm') return show(args, await naq.removeJob(id), (r) => `${r.id} removed (it was ${r.removed})`);
      if (action === 'delay') return show(args, await naq.changeDelay(id, by), (r) => `${r.id} runs at ${formatTime(r.runAt)}`);
      const record = await naq.getJob(id);
      if (!record) fail(`job ${id} not found`, EXIT_FAILURE);
      if (args.logs) return show(args, { id: record.id, logs: record.logs ?? [], logsDropped: record.logsDropped ?? 0 }, () => logsText(record));
      show(args, record, recordText);
    });
  },
});

export const jobsCommands = { enqueue, job };
