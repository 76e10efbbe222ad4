/** `naq queue ls | purge | pause | resume` and `naq workers`: the queues and who is consuming them. */
import { queueArg } from './args.js';
import { show } from './output.js';
import { defineCommand, defineGroup, need, valid, withNaq } from './shared.js';

const ls = defineCommand({
  command: 'ls',
  describe: 'list queues with pending, in-flight and dead counts',
  builder: (y) => y,
  handler: (args) =>
    withNaq(args, async (naq) =>
      show(args, await naq.listQueues(), (queues) => [
        'queue\tpending\tin-flight\tdead\tworkers\tstate',
        ...queues.map((q) => `${q.queue}\t${q.pending}\t${q.inFlight}\t${q.dead}\t${q.workers}\t${q.paused ? 'paused' : 'running'}`),
      ]),
    ),
});

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

export const queueCommand = defineGroup('queue', 'queue operations', (y) =>
  y.command(ls).command(purge).command(pauseCommand(true)).command(pauseCommand(false)).demandCommand(1, 'name a queue command: ls, purge, pause or resume'),
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
