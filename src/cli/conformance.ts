/**
 * `naq conformance worker | producer | handlers`: the kit that checks a worker or a producer
 * written in another language against docs/wire-format.md. Exits 0 when every check passed,
 * 1 when one failed.
 */
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { DONE_JOB, summary, type CheckResult } from '../conformance/checks.js';
import type { NaqConfig } from '../config/index.js';
import { layout } from '../model/layout.js';
import { durationArg, queueArg } from './args.js';
import { configFrom, defineCommand, defineGroup, EXIT_FAILURE, loggerFor, need, valid, type GlobalArgs } from './shared.js';
import type { Argv } from 'yargs';

/** The compiled reference handlers, for `naq worker --handlers "$(naq conformance handlers)"`. */
const HANDLERS_MODULE = fileURLToPath(new URL('../conformance/handlers.js', import.meta.url));

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_WAIT_MS = 120_000;

function withQueue(y: Argv<GlobalArgs>) {
  return y
    .option('queue', { type: 'string', describe: 'the queue the worker or producer under test uses' })
    .option('timeout', { type: 'string', describe: `ms one job may take to reach its outcome (default ${DEFAULT_TIMEOUT_MS})` })
    .check(need('queue'))
    .check(valid((a) => queueArg('--queue', a.queue)))
    .check(valid((a) => a.timeout === undefined || durationArg('--timeout', a.timeout)));
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function finish(results: CheckResult[]): void {
  print(summary(results));
  if (results.some((r) => !r.ok)) process.exitCode = EXIT_FAILURE;
}

/**
 * A naq of the kit's own: it creates the layout, and its jobs service releases waiting jobs.
 * `work` gets a raw connection of its own (the checks publish and read what naq would not).
 */
async function withKit(config: NaqConfig, handlers: Record<string, (...args: never[]) => unknown>, work: (nc: NatsConnection) => Promise<void>): Promise<void> {
  const [{ createNaq }, { connect }, { connectOptions }] = await Promise.all([
    import('../naq.js'),
    import('@nats-io/transport-node'),
    import('../actors/nats/connection.js'),
  ]);
  const naq = createNaq(config, { logger: await loggerFor(config), handlers: handlers as never });
  await naq.start({ timeoutMs: config.nats.connectTimeoutMs + config.ops.timeoutMs });
  try {
    const nc = await connect(await connectOptions(config));
    try {
      await work(nc);
    } finally {
      await nc.close();
    }
  } finally {
    await naq.stop();
  }
}

const worker = defineCommand({
  command: 'worker',
  describe: 'check a running worker of queue --queue (it serves the reference handlers) against the wire format',
  builder: withQueue,
  handler: async (args) => {
    const queue = queueArg('--queue', args.queue);
    const timeoutMs = args.timeout === undefined ? DEFAULT_TIMEOUT_MS : durationArg('--timeout', args.timeout);
    const config = await configFrom(args, { roles: ['producer'] }, true);
    const { checkWorker } = await import('../conformance/worker-kit.js');
    await withKit(config, {}, async (nc) => {
      print(`checking the worker of queue ${queue}`);
      finish(await checkWorker({ nc, layout: layout(config.prefix), queue, timeoutMs, print }));
    });
  },
});

const producer = defineCommand({
  command: 'producer',
  describe: `run the reference worker on --queue and check what a producer under test enqueues there (it ends with a ${DONE_JOB} job)`,
  builder: (y) =>
    withQueue(y)
      .option('wait', { type: 'string', describe: `ms to wait for the producer's ${DONE_JOB} job (default ${DEFAULT_WAIT_MS})` })
      .check(valid((a) => a.wait === undefined || durationArg('--wait', a.wait))),
  handler: async (args) => {
    const queue = queueArg('--queue', args.queue);
    const timeoutMs = args.timeout === undefined ? DEFAULT_TIMEOUT_MS : durationArg('--timeout', args.timeout);
    const waitMs = args.wait === undefined ? DEFAULT_WAIT_MS : durationArg('--wait', args.wait);
    const config = await configFrom(args, { roles: ['producer', 'worker'], worker: { queues: [queue], concurrency: 20 } }, true);
    const [{ referenceHandlers }, { checkProducer }] = await Promise.all([import('../conformance/handlers.js'), import('../conformance/producer-kit.js')]);
    let announce!: (data: unknown) => void;
    const done = new Promise<unknown>((resolve) => (announce = resolve));
    const handlers = { ...referenceHandlers, [DONE_JOB]: (data: unknown) => announce(data) };
    await withKit(config, handlers, async (nc) => {
      const results = await checkProducer({ nc, layout: layout(config.prefix), queue, timeoutMs, waitMs, done, print }, () =>
        print(`ready: the reference worker serves queue ${queue}; run the producer under test now`),
      );
      finish(results);
    });
  },
});

const handlers = defineCommand({
  command: 'handlers',
  describe: 'print the path of the reference handlers module (for naq worker --handlers)',
  builder: (y) => y,
  handler: () => print(HANDLERS_MODULE),
});

export const conformanceCommand = defineGroup('conformance', 'check another language against the wire format', (y) =>
  y.command(worker).command(producer).command(handlers).demandCommand(1, 'name a conformance command: worker, producer or handlers'),
);
