/** `naq streams …` and `naq kv …`: the NATS resources underneath, for operators. */
import type { Argv } from 'yargs';
import { bucketArg, kvFilterArg, kvKeyArg, streamArg, subjectArg } from './args.js';
import { formatBytes, printJson, show, showLine } from './output.js';
import { defineCommand, defineGroup, EXIT_FAILURE, fail, need, valid, withNaq, type GlobalArgs } from './shared.js';

function withStreamName(y: Argv<GlobalArgs>) {
  return y
    .positional('name', { type: 'string' })
    .check(need('name'))
    .check(valid((a) => streamArg('<name>', a.name)));
}

const streamsLs = defineCommand({
  command: 'ls',
  describe: 'list streams',
  builder: (y) => y,
  handler: (args) =>
    withNaq(args, async (naq) =>
      show(args, await naq.streams.list(), (streams) =>
        streams.map((s) => `${s.config.name}\t${s.config.subjects?.join(',') ?? ''}\t${s.state.messages} msgs\t${formatBytes(s.state.bytes)}`),
      ),
    ),
});

const streamsInfo = defineCommand({
  command: 'info [name]',
  describe: 'show one stream',
  builder: withStreamName,
  handler: (args) => withNaq(args, async (naq) => printJson(await naq.streams.info(args.name!))),
});

const streamsPurge = defineCommand({
  command: 'purge [name]',
  describe: 'purge a stream (or only one subject)',
  builder: (y) =>
    y
      .positional('name', { type: 'string' })
      .option('subject', { type: 'string', describe: 'purge only this subject' })
      .check(need('name'))
      .check(valid((a) => streamArg('<name>', a.name)))
      .check(valid((a) => a.subject === undefined || subjectArg('--subject', a.subject))),
  handler: (args) =>
    withNaq(args, async (naq) => show(args, await naq.streams.purge(args.name!, args.subject), (r) => `purged ${r.purged} messages from ${args.name}`)),
});

const streamsRm = defineCommand({
  command: 'rm [name]',
  describe: 'delete a stream',
  builder: withStreamName,
  handler: (args) =>
    withNaq(args, async (naq) => {
      await naq.streams.delete(args.name!);
      show(args, { deleted: args.name }, () => `deleted stream ${args.name}`);
    }),
});

export const streamsCommand = defineGroup('streams', 'stream operations', (y) =>
  y.command(streamsLs).command(streamsInfo).command(streamsPurge).command(streamsRm).demandCommand(1, 'name a streams command: ls, info, purge or rm'),
);

/** Whichever of <bucket>, <key> and --filter the kv command has. */
const kvArgs = valid((a) => {
  bucketArg('<bucket>', a.bucket);
  if (a.key !== undefined) kvKeyArg('<key>', a.key);
  if (a.filter !== undefined) kvFilterArg('--filter', a.filter);
});

function withBucketKey(y: Argv<GlobalArgs>) {
  return y.positional('bucket', { type: 'string' }).positional('key', { type: 'string' }).check(need('bucket', 'key')).check(kvArgs);
}

const kvGet = defineCommand({
  command: 'get [bucket] [key]',
  describe: 'print a value',
  builder: withBucketKey,
  handler: (args) =>
    withNaq(args, async (naq) => {
      const entry = await naq.kv.get(args.bucket!, args.key!);
      if (!entry) fail(`${args.bucket}/${args.key} not found`, EXIT_FAILURE);
      show(args, entry, (e) => e.value);
    }),
});

const kvPut = defineCommand({
  command: 'put [bucket] [key] [value]',
  describe: 'store a value (the bucket is created if missing)',
  builder: (y) =>
    y
      .positional('bucket', { type: 'string' })
      .positional('key', { type: 'string' })
      .positional('value', { type: 'string' })
      .check(need('bucket', 'key', 'value'))
      .check(kvArgs),
  handler: (args) =>
    withNaq(args, async (naq) => {
      await naq.kv.ensureBucket(args.bucket!);
      const revision = await naq.kv.put(args.bucket!, args.key!, args.value!);
      show(args, { bucket: args.bucket!, key: args.key!, revision }, (r) => `${r.bucket}/${r.key} revision ${r.revision}`);
    }),
});

const kvDel = defineCommand({
  command: 'del [bucket] [key]',
  describe: 'delete a key',
  builder: withBucketKey,
  handler: (args) =>
    withNaq(args, async (naq) => {
      await naq.kv.delete(args.bucket!, args.key!);
      show(args, { deleted: `${args.bucket}/${args.key}` }, () => `deleted ${args.bucket}/${args.key}`);
    }),
});

const kvKeys = defineCommand({
  command: 'keys [bucket]',
  describe: 'list keys',
  builder: (y) =>
    y
      .positional('bucket', { type: 'string' })
      .option('filter', { type: 'string', describe: 'subject-style filter, e.g. "jobs.>"' })
      .check(need('bucket'))
      .check(kvArgs),
  handler: (args) => withNaq(args, async (naq) => show(args, await naq.kv.keys(args.bucket!, args.filter), (keys) => keys)),
});

const kvWatch = defineCommand({
  command: 'watch [bucket]',
  describe: 'print current values, then changes as they happen, until SIGINT',
  builder: (y) =>
    y
      .positional('bucket', { type: 'string' })
      .option('filter', { type: 'string', describe: 'subject-style filter' })
      .check(need('bucket'))
      .check(kvArgs),
  handler: (args) =>
    withNaq(args, async (naq) => {
      const watch = await naq.kv.watch(args.bucket!, args.filter);
      const stop = () => watch.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      for await (const e of watch) showLine(args, e, (c) => `${c.operation} ${c.key} = ${c.value} (revision ${c.revision})`);
    }),
});

export const kvCommand = defineGroup('kv', 'key-value operations', (y) =>
  y.command(kvGet).command(kvPut).command(kvDel).command(kvKeys).command(kvWatch).demandCommand(1, 'name a kv command: get, put, del, keys or watch'),
);
