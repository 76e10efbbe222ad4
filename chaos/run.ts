/**
 * `npm run chaos`: the full fault-injection run. Progress goes to stderr, the summary table
 * to stdout; exit 1 when any check fails.
 *
 *   node dist/chaos/run.js [--jobs N] [--quick] [--seed N]
 */
import { runChaos, type ChaosOptions } from './scenario.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`chaos: ${name} needs a positive integer, got ${JSON.stringify(value)}\n`);
    process.exit(2);
  }
  return n;
}

const known = new Set(['--jobs', '--quick', '--seed', '--help', '-h']);
const unknown = process.argv.slice(2).filter((a, i, all) => a.startsWith('-') && !known.has(a) && !['--jobs', '--seed'].includes(all[i - 1] ?? ''));
if (process.argv.includes('--help') || process.argv.includes('-h') || unknown.length) {
  if (unknown.length) process.stderr.write(`chaos: unknown option ${unknown.join(', ')}\n`);
  process.stderr.write('usage: node dist/chaos/run.js [--jobs N] [--quick] [--seed N]\n');
  process.exit(unknown.length ? 2 : 0);
}

const quick = process.argv.includes('--quick');
// --quick is the short form `npm test` runs: a steady trickle of short jobs, so the few
// faults it has land on work in progress.
const options: ChaosOptions = quick
  ? { jobs: 400, workers: 2, concurrency: 10, killEveryMs: 1500, restartServer: true, scheduler: true, durationMaxMs: 50, ackWaitMs: 2000, minKills: 2, maxKills: 2, enqueueOverMs: 6000 }
  : { jobs: 5000, workers: 3, concurrency: 10, killEveryMs: 2000, restartServer: true, scheduler: true, durationMaxMs: 200, ackWaitMs: 2000 };
const jobs = positiveInt('--jobs', flag('--jobs'));
if (jobs !== undefined) options.jobs = jobs;
const seed = positiveInt('--seed', flag('--seed'));
if (seed !== undefined) options.seed = seed;

// Ctrl-C: the 'exit' hooks of the scenario's modules SIGKILL the children and the server.
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

try {
  const result = await runChaos(options);
  process.stdout.write(`${result.summary}\n`);
  process.exit(result.ok ? 0 : 1);
} catch (error) {
  process.stderr.write(`chaos: the run itself failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
}
