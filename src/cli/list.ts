/** `naq jobs ls | retry | clean`: jobs by queue, state and name, a page at a time, and actions on many. */
import { LIST_STATES, validateListState, type JobRow, type ListState } from '../model/job-index.js';
import { integerArg, queueArg, spanArg, textArg, UsageError } from './args.js';
import { formatTime, show } from './output.js';
import { defineCommand, defineGroup, need, valid, withNaq } from './shared.js';

function stateArg(arg: string, raw: unknown, allowed: readonly string[] = LIST_STATES): ListState {
  const text = textArg(arg, raw, `one of ${allowed.join(', ')}`);
  if (!allowed.includes(text)) throw new UsageError(`invalid ${arg}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(text)}`);
  return validateListState(text, arg);
}

function rowText(r: JobRow): string {
  const extra = r.error ? `  ${r.error.split('\n')[0]}` : r.runAt !== undefined ? `  runs ${formatTime(r.runAt)}` : '';
  return `${r.id}\t${r.state}\t${r.name}\t${r.queue}\t${formatTime(r.at)}\t${r.attempts}/${r.maxAttempts}${extra}`;
}

const ls = defineCommand({
  command: 'ls',
  describe: 'list jobs, newest first: a page, and the cursor of the next one',
  builder: (y) =>
    y
      .option('queue', { type: 'string', describe: 'only this queue' })
      .option('state', { type: 'string', describe: `only this state: ${LIST_STATES.join(', ')} (default: every state but dead)` })
      .option('name', { type: 'string', describe: 'only jobs of this handler name' })
      .option('limit', { type: 'string', describe: 'rows per page, 1 to 1000 (default 50)' })
      .option('cursor', { type: 'string', describe: 'the next page: the cursor the previous page printed' })
      .check(valid((a) => a.queue === undefined || queueArg('--queue', a.queue)))
      .check(valid((a) => a.state === undefined || stateArg('--state', a.state)))
      .check(valid((a) => a.limit === undefined || integerArg('--limit', a.limit, 1, 1000))),
  handler: (args) =>
    withNaq(args, async (naq) => {
      const page = await naq.listJobs({
        ...(args.queue !== undefined ? { queue: args.queue } : {}),
        ...(args.state !== undefined ? { state: stateArg('--state', args.state) } : {}),
        ...(args.name !== undefined ? { name: textArg('--name', args.name, 'a handler name') } : {}),
        ...(args.limit !== undefined ? { limit: integerArg('--limit', args.limit, 1, 1000) } : {}),
        ...(args.cursor !== undefined ? { cursor: textArg('--cursor', args.cursor, 'a cursor a listing printed') } : {}),
      });
      show(args, page, (p) => [
        'id\tstate\tname\tqueue\tsince\tattempts',
        ...p.jobs.map(rowText),
        ...(p.cursor ? [`next page: --cursor ${p.cursor}`] : []),
      ]);
    }),
});

const retry = defineCommand({
  command: 'retry',
  describe: 'retry every dead (or failed) job of a queue that matches, with fresh attempts',
  builder: (y) =>
    y
      .option('queue', { type: 'string', describe: 'the queue' })
      .option('state', { type: 'string', describe: 'dead or failed (default dead)' })
      .option('name', { type: 'string', describe: 'only jobs of this handler name' })
      .check(need('queue'))
      .check(valid((a) => queueArg('--queue', a.queue)))
      .check(valid((a) => a.state === undefined || stateArg('--state', a.state, ['dead', 'failed']))),
  handler: (args) =>
    withNaq(args, async (naq) => {
      const state = (args.state ?? 'dead') as 'dead' | 'failed';
      const r = await naq.retryJobs({ queue: args.queue!, state, ...(args.name !== undefined ? { name: args.name } : {}) });
      show(args, r, () => [`retried ${r.retried} jobs of ${args.queue}`, ...(r.skippedCount ? [`skipped ${r.skippedCount}:`, ...r.skipped.map((s) => `  ${s.id}: ${s.reason}`)] : [])]);
    }),
});

const clean = defineCommand({
  command: 'clean',
  describe: 'remove the records of finished jobs (or dead letters) of a queue older than a duration',
  builder: (y) =>
    y
      .option('queue', { type: 'string', describe: 'the queue' })
      .option('state', { type: 'string', describe: 'completed, failed, cancelled or dead' })
      .option('older-than', { type: 'string', describe: 'finished more than this long ago: 30s, 15m, 1h, 7d or milliseconds' })
      .option('name', { type: 'string', describe: 'only jobs of this handler name' })
      .check(need('queue', 'state', 'older-than'))
      .check(valid((a) => queueArg('--queue', a.queue)))
      .check(valid((a) => stateArg('--state', a.state, ['completed', 'failed', 'cancelled', 'dead'])))
      .check(valid((a) => spanArg('--older-than', a['older-than']))),
  handler: (args) =>
    withNaq(args, async (naq) => {
      const state = stateArg('--state', args.state, ['completed', 'failed', 'cancelled', 'dead']) as 'completed' | 'failed' | 'cancelled' | 'dead';
      const r = await naq.cleanJobs({ queue: args.queue!, state, olderThanMs: spanArg('--older-than', args['older-than']), ...(args.name !== undefined ? { name: args.name } : {}) });
      show(args, r, () => `removed ${r.removed} ${state} jobs of ${args.queue}`);
    }),
});

export const jobsListCommand = defineGroup('jobs', 'many jobs at once: list, retry, clean', (y) =>
  y.command(ls).command(retry).command(clean).demandCommand(1, 'name a jobs command: ls, retry or clean'),
);
