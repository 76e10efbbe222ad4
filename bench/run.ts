/**
 * `npm run bench`: naq against its own ceiling (the same work written directly on the NATS
 * client) and against BullMQ, on one private nats-server, in one run. Prints the figures
 * and whether the targets were met; nothing here is asserted, so a slow machine reports
 * misses instead of failing.
 *
 *   node dist/bench/run.js [--jobs N | --quick] [--json FILE] [--concurrency N]
 *                          [--window N] [--pull N] [--chunk N] [--only raw,naq,bullmq]
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { runBullmq } from './bullmq.js';
import { runNaq } from './naq.js';
import { connectBench, runRaw } from './raw.js';
import { fmtBytes, fmtRate, installCleanupHooks, startBenchServer, table, type Category, type Row } from './util.js';

const DEFAULT_JOBS = 50_000;
const QUICK_JOBS = 10_000;
const SYSTEMS = ['raw', 'naq', 'bullmq'] as const;
type SystemName = (typeof SYSTEMS)[number];

/** The targets the issue sets for naq, as multiples of the other system's jobs/s. */
const TARGETS: Record<Category, { raw: number; bullmq: number }> = {
  enqueue: { raw: 0.8, bullmq: 2 },
  drain: { raw: 0.8, bullmq: 1.5 },
  'end-to-end': { raw: 0.8, bullmq: 1.5 },
};
const CATEGORIES: Category[] = ['enqueue', 'drain', 'end-to-end'];

interface Options {
  jobs: number;
  concurrency: number;
  window: number;
  pullBatch: number;
  chunk: number;
  json: string | undefined;
  only: Set<SystemName>;
}

const USAGE = `usage: node dist/bench/run.js [--jobs N | --quick] [--json FILE] [--concurrency N] [--window N] [--pull N] [--chunk N] [--only raw,naq,bullmq]
  --jobs N         jobs per line (default ${DEFAULT_JOBS}, or NAQ_BENCH_JOBS)
  --quick          ${QUICK_JOBS} jobs: a smoke run
  --json FILE      also write the results as JSON
  --concurrency N  jobs in flight per consumer (default 100)
  --window N       raw publishes in flight per window (default 1000)
  --pull N         raw consumer: messages per pull (default 200)
  --chunk N        jobs per enqueueBulk / addBulk call (default 5000)
  --only LIST      run only some of raw, naq, bullmq`;

function usageError(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

function positiveInt(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !Number.isInteger(n) || n < 1) usageError(`${flag} needs a positive integer, got ${JSON.stringify(value ?? '')}`);
  return n;
}

function parseArgs(argv: string[]): Options {
  const env = process.env.NAQ_BENCH_JOBS;
  const options: Options = {
    jobs: env ? positiveInt('NAQ_BENCH_JOBS', env) : DEFAULT_JOBS,
    concurrency: 100,
    window: 1000,
    pullBatch: 200,
    chunk: 5000,
    json: undefined,
    only: new Set(SYSTEMS),
  };
  let jobsFlag: number | undefined;
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--jobs':
        jobsFlag = positiveInt(flag, value());
        break;
      case '--quick':
        quick = true;
        break;
      case '--json': {
        const file = value();
        if (!file) usageError('--json needs a file name');
        options.json = file;
        break;
      }
      case '--concurrency':
        options.concurrency = positiveInt(flag, value());
        break;
      case '--window':
        options.window = positiveInt(flag, value());
        break;
      case '--pull':
        options.pullBatch = positiveInt(flag, value());
        break;
      case '--chunk':
        options.chunk = positiveInt(flag, value());
        break;
      case '--only': {
        const names = (value() ?? '').split(',').map((s) => s.trim()).filter(Boolean);
        const bad = names.filter((s) => !(SYSTEMS as readonly string[]).includes(s));
        if (names.length === 0 || bad.length > 0) usageError(`--only takes a comma-separated list of ${SYSTEMS.join(', ')}`);
        options.only = new Set(names as SystemName[]);
        break;
      }
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
      // falls through (process.exit does not return)
      default:
        usageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  // An explicit --jobs says exactly what was wanted; --quick only overrides the defaults.
  if (jobsFlag !== undefined) options.jobs = jobsFlag;
  else if (quick) options.jobs = QUICK_JOBS;
  return options;
}

const script = (name: string): string => fileURLToPath(new URL(name, import.meta.url));
const log = (line: string): void => void process.stderr.write(`${line}\n`);

function packageVersion(name: string): string {
  try {
    return (createRequire(import.meta.url)(`${name}/package.json`) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

interface SummaryLine {
  line: Category;
  naq: number | null;
  raw: number | null;
  rawVariant: string | null;
  naqOverRaw: number | null;
  rawTarget: number;
  rawVerdict: 'PASS' | 'MISS' | 'n/a';
  bullmq: number | null;
  naqOverBullmq: number | null;
  bullmqTarget: number;
  bullmqVerdict: 'PASS' | 'MISS' | 'n/a';
}

function summarize(rows: Row[]): SummaryLine[] {
  return CATEGORIES.map((line) => {
    const of = (system: Row['system']) => rows.filter((r) => r.line === line && r.system === system).sort((a, b) => b.jobsPerSec - a.jobsPerSec)[0];
    const naq = of('naq');
    const raw = of('raw');
    const bullmq = of('bullmq');
    const ratio = (a: Row | undefined, b: Row | undefined) => (a && b && b.jobsPerSec > 0 ? a.jobsPerSec / b.jobsPerSec : null);
    const verdict = (r: number | null, target: number) => (r === null ? 'n/a' : r >= target ? 'PASS' : 'MISS');
    const naqOverRaw = ratio(naq, raw);
    const naqOverBullmq = ratio(naq, bullmq);
    return {
      line,
      naq: naq?.jobsPerSec ?? null,
      raw: raw?.jobsPerSec ?? null,
      rawVariant: raw?.variant ?? null,
      naqOverRaw,
      rawTarget: TARGETS[line].raw,
      rawVerdict: verdict(naqOverRaw, TARGETS[line].raw),
      bullmq: bullmq?.jobsPerSec ?? null,
      naqOverBullmq,
      bullmqTarget: TARGETS[line].bullmq,
      bullmqVerdict: verdict(naqOverBullmq, TARGETS[line].bullmq),
    };
  });
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  installCleanupHooks();
  const n = options.jobs;
  const startedAt = Date.now();

  log(`starting a private nats-server...`);
  const bench = await startBenchServer();
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    const nc = await connectBench(bench.url, 'bench-raw');
    const jsm = await jetstreamManager(nc);
    try {
      if (options.only.has('raw')) {
        log(`raw baselines (${n} jobs each)...`);
        rows.push(
          ...(await runRaw({
            url: bench.url,
            nc,
            jsm,
            settings: { jobs: n, concurrency: options.concurrency, window: options.window, pullBatch: options.pullBatch },
            log,
            consumerScript: script('./raw-consumer-process.js'),
          })),
        );
      }
      if (options.only.has('naq')) {
        log(`naq (${n} jobs each)...`);
        const outcome = await runNaq({
          url: bench.url,
          jsm,
          settings: { jobs: n, concurrency: options.concurrency, chunk: options.chunk },
          log,
          workerScript: script('./worker-process.js'),
        });
        rows.push(...outcome.rows);
        if (outcome.skipped) notes.push(`naq: ${outcome.skipped}`);
      }
    } finally {
      await nc.close();
    }
    if (options.only.has('bullmq')) {
      log(`BullMQ (${n} jobs each)...`);
      const outcome = await runBullmq({
        settings: { jobs: n, concurrency: options.concurrency, chunk: options.chunk },
        log,
        workerScript: script('./bullmq-worker-process.js'),
      });
      rows.push(...outcome.rows);
      if (outcome.skipped) notes.push(outcome.skipped);
    }
  } finally {
    await bench.cleanup();
  }

  const conditions = {
    node: process.version,
    natsServer: bench.version,
    bullmq: packageVersion('bullmq'),
    natsClient: packageVersion('@nats-io/transport-node'),
    jobs: n,
    concurrency: options.concurrency,
    rawPublishWindow: options.window,
    rawPullBatch: options.pullBatch,
    bulkChunk: options.chunk,
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memory: fmtBytes(totalmem()),
    storage: 'file (JetStream), Redis as configured',
    date: new Date(startedAt).toISOString(),
    totalSeconds: (Date.now() - startedAt) / 1000,
  };
  const summary = summarize(rows);

  const out: string[] = [];
  out.push(
    `conditions: node ${conditions.node}, nats-server ${conditions.natsServer}, @nats-io/transport-node ${conditions.natsClient}, bullmq ${conditions.bullmq}; ` +
      `${conditions.jobs} no-op jobs per line, consumer concurrency ${conditions.concurrency}, raw publish window ${conditions.rawPublishWindow}, ` +
      `raw pull batch ${conditions.rawPullBatch}, bulk chunk ${conditions.bulkChunk}; ${conditions.cores} cores (${conditions.cpu}), ${conditions.memory}`,
    '',
  );
  out.push(
    table(
      ['line', 'variant', 'jobs', 'seconds', 'jobs/s'],
      rows.map((r) => [r.line, `${r.system}: ${r.variant}${r.note ? ` (${r.note})` : ''}`, String(r.jobs), r.seconds.toFixed(2), fmtRate(r.jobsPerSec)]),
    ),
    '',
  );
  const x = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}x`);
  const rate = (v: number | null) => (v === null ? '-' : fmtRate(v));
  out.push(
    table(
      ['line', 'naq jobs/s', 'raw bar jobs/s', 'raw bar variant', 'naq/raw', 'target', 'verdict', 'BullMQ jobs/s', 'naq/BullMQ', 'target', 'verdict'],
      summary.map((s) => [
        s.line,
        rate(s.naq),
        rate(s.raw),
        s.rawVariant ?? '-',
        x(s.naqOverRaw),
        `>= ${s.rawTarget}x`,
        s.rawVerdict,
        rate(s.bullmq),
        x(s.naqOverBullmq),
        `>= ${s.bullmqTarget}x`,
        s.bullmqVerdict,
      ]),
    ),
    '',
  );
  for (const r of rows.filter((r) => r.line === 'drain' && r.peakRssBytes !== undefined && r.system !== 'raw')) {
    out.push(`peak RSS of the ${r.system === 'naq' ? 'naq' : 'BullMQ'} worker process while draining a ${r.jobs}-job backlog: ${fmtBytes(r.peakRssBytes!)}`);
  }
  for (const note of notes) out.push(`note: ${note}`);
  out.push(`total bench time: ${conditions.totalSeconds.toFixed(1)} s`);
  process.stdout.write(`${out.join('\n')}\n`);

  if (options.json) {
    writeFileSync(options.json, `${JSON.stringify({ conditions, results: rows, summary, notes }, null, 2)}\n`);
    log(`results written to ${options.json}`);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
