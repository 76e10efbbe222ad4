/** `naq queue ls | purge | pause | resume | limit` and `naq workers`: the queues and who is consuming them. */
import { integerArg, queueArg, UsageError } from './args.js';
import { show } from './output.js';
import { defineCommand, defineGroup, need, valid, withNaq } from './shared.js';

const ls = defineCommand({
  command: 'ls',
  describe: 'list queues with pending, in-flight and dead counts',
  builder: (y) => y,
  handler: (args) =>
    withNaq(args, async (naq) =>
      show(args, await naq.listQueues(), (queues) => [
        'queue\tpending\tin-flight\tdead\tworkers\tstate\tlimit',
        ...queues.map((q) => `${q.queue}\t${q.pending}\t${q.inFlight}\t${q.dead}\t${q.workers}\t${q.paused ? 'paused' : 'running'}\t${limitText(q)}`),
      ]),
    ),
});

/** `50/1000ms`, with the hold a handler asked for when one is on; `-` without a limit. */
function limitText(q: { limit: { max: number; durationMs: number } | null; heldUntil?: number }): string {
  const limit = q.limit ? `${q.limit.max}/${q.limit.durationMs}ms` : '-';
  return q.heldUntil ? `${limit} (held until ${new Date(q.heldUntil).toISOString()})` : limit;
}

const purge = defineCommand({
  command: 'purge [queue]',
  describe: 'drop every pending job of a queue',
  builder: (y) =>
    y
      .positional('queue', { type: 'string' })
      .check(need('queue'))
      .check(valid((a) => queueArg('<queue>', a.queue))),
  handler: (args) => withNaq(args, async (naq) => show(args, await naq.purgeQueue(args.queue!), (r) => `purged ${r.purged} jobs from ${args.queue}`)),
});

/** `naq queue pause Q` / `naq queue resume Q`. */
function pauseCommand(paused: boolean) {
  const verb = paused ? 'pause' : 'resume';
  return defineCommand({
    command: `${verb} [queue]`,
    describe: paused ? 'stop every worker of a queue taking new jobs (running ones finish); persisted until resume' : 'let the workers of a paused queue take jobs again',
    builder: (y) =>
      y
        .positional('queue', { type: 'string' })
        .check(need('queue'))
        .check(valid((a) => queueArg('<queue>', a.queue))),
    handler: (args) =>
      withNaq(args, async (naq) => {
        const r = paused ? await naq.pauseQueue(args.queue!) : await naq.resumeQueue(args.queue!);
        show(args, r, () => `${paused ? 'paused' : 'resumed'} ${args.queue}`);
      }),
  });
}

const limit = defineCommand({
  command: 'limit [queue]',
  describe: 'rate-limit a queue across all its workers: at most --max job starts in any --per ms window; persisted (--clear removes it)',
  builder: (y) =>
    y
      .positional('queue', { type: 'string' })
      .option('max', { type: 'string', describe: 'job starts allowed per window, an integer from 1 to 100000' })
      .option('per', { type: 'string', describe: 'the window in ms, an integer from 1 to 86400000' })
      .option('clear', { type: 'boolean', describe: 'remove the limit' })
      .check(need('queue'))
      .check(valid((a) => queueArg('<queue>', a.queue)))
      .check(
        valid((a) => {
          if (a.clear) {
            if (a.max !== undefined || a.per !== undefined) throw new UsageError('--clear takes no --max or --per');
            return;
          }
          if (a.max === undefined || a.per === undefined) throw new UsageError('give --max and --per (or --clear)');
          integerArg('--max', a.max, 1, 100_000);
          integerArg('--per', a.per, 1, 86_400_000);
        }),
      ),
  handler: (args) =>
    withNaq(args, async (naq) => {
      const wanted = args.clear ? null : { max: integerArg('--max', args.max, 1, 100_000), durationMs: integerArg('--per', args.per, 1, 86_400_000) };
      const r = await naq.setQueueLimit(args.queue!, wanted);
      show(args, r, () => (r.limit ? `${args.queue} limited to ${r.limit.max} starts per ${r.limit.durationMs} ms` : `${args.queue} not limited`));
    }),
});

const groupLimit = defineCommand({
  command: 'group-limit [queue]',
  describe: 'limit every group of a queue (jobs enqueued with a group): at most --concurrency running at once and/or --max starts per --per ms window; persisted (--clear removes it)',
  builder: (y) =>
    y
      .positional('queue', { type: 'string' })
      .option('concurrency', { type: 'string', describe: "a group's jobs running at once, across every worker, an integer from 1 to 100000" })
      .option('max', { type: 'string', describe: "a group's job starts allowed per window, an integer from 1 to 100000" })
      .option('per', { type: 'string', describe: 'the window in ms, an integer from 1 to 86400000' })
      .option('clear', { type: 'boolean', describe: 'remove the group limits' })
      .check(need('queue'))
      .check(valid((a) => queueArg('<queue>', a.queue)))
      .check(valid((a) => void groupLimitArgs(a))),
  handler: (args) =>
    withNaq(args, async (naq) => {
      const r = await naq.setGroupLimit(args.queue!, groupLimitArgs(args));
      const g = r.groups;
      const text = !g
        ? `${args.queue}: groups not limited`
        : `${args.queue}: each group at most ${[g.concurrency !== undefined ? `${g.concurrency} running` : '', g.rate ? `${g.rate.max} starts per ${g.rate.durationMs} ms` : ''].filter(Boolean).join(' and ')}`;
      show(args, r, () => text);
    }),
});

function groupLimitArgs(a: { clear?: boolean | undefined; concurrency?: string | undefined; max?: string | undefined; per?: string | undefined }) {
  if (a.clear) {
    if (a.concurrency !== undefined || a.max !== undefined || a.per !== undefined) throw new UsageError('--clear takes no --concurrency, --max or --per');
    return null;
  }
  if ((a.max === undefined) !== (a.per === undefined)) throw new UsageError('--max and --per go together');
  if (a.concurrency === undefined && a.max === undefined) throw new UsageError('give --concurrency, or --max and --per (or --clear)');
  return {
    ...(a.concurrency !== undefined ? { concurrency: integerArg('--concurrency', a.concurrency, 1, 100_000) } : {}),
    ...(a.max !== undefined ? { rate: { max: integerArg('--max', a.max, 1, 100_000), durationMs: integerArg('--per', a.per, 1, 86_400_000) } } : {}),
  };
}

export const queueCommand = defineGroup('queue', 'queue operations', (y) =>
  y
    .command(ls)
    .command(purge)
    .command(pauseCommand(true))
    .command(pauseCommand(false))
    .command(limit)
    .command(groupLimit)
    .demandCommand(1, 'name a queue command: ls, purge, pause, resume, limit or group-limit'),
);

export const workersCommand = defineCommand({
  command: 'workers',
  describe: 'list live workers (from their heartbeats)',
  builder: (y) => y,
  handler: (args) =>
    withNaq(args, async (naq) =>
      show(args, await naq.listWorkers(), (workers) => [
        'id\tqueues\tstatus\tin-flight\tprocessed\tfailed',
        ...workers.map((w) => `${w.id}\t${w.queues.join(',')}\t${w.status}\t${w.inFlight}\t${w.processed}\t${w.failed}`),
      ]),
    ),
});
