/**
 * The CLI validates before it connects. Every command runs as a real subprocess against a
 * NATS URL where nothing listens: a command that connected first would fail there with exit
 * 1 after its connect timeout, so exit 2 with the argument's message shows that validation
 * came first. `npm test` builds dist/ first; alone, run `npx tsc -p tsconfig.json` before.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as cli from '../../src/cli/args.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { cleanEnv, freePort, startServer, stopAllServers, until } from '../support/harness.js';
import { BIN, fixture } from '../support/paths.js';
import { runCli, type CliResult, killSpawned, spawned } from '../support/processes.js';

const CLI = BIN;
const HANDLERS = fixture('noop-handlers.mjs');
const UNHANDLED = fixture('unhandled-handlers.mjs');
/** A Node stack frame line, as an uncaught error or a logged `err.stack` would print it. */
const STACK_LINE = /^\s+at /m;


/** Runs `naq ...args`; a generous kill timer, so a command that connects first fails on its exit code. */
const run = (args: string[], env: Record<string, string> = {}) => runCli(args, env, 60_000);

/** Runs every item, at most `limit` at a time: two shared cores, and each start costs ~0.4 s of CPU. */
async function pool<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

interface Case {
  args: string[];
  /** What stderr must say: the argument and the expected form, or a cross-argument rule. */
  says: string[];
  env?: Record<string, string>;
}

/** `invalid <arg>: expected <form>` */
const bad = (args: string[], arg: string, form: string, env?: Record<string, string>): Case => ({
  args,
  says: [`invalid ${arg}: expected ${form}`],
  ...(env ? { env } : {}),
});

const INT = 'an integer >= 1';
const QUEUE = 'a queue name of letters, digits, "_" and "-"';
const JOB_ID = 'a job id of letters, digits, "_", "-" and "="';

/**
 * Every case the issue lists, and one for each check added beside them (each start costs
 * ~0.4 s of CPU, so a rule already covered through the same validator is not repeated).
 */
const CASES: Case[] = [
  // enqueue: each flag
  bad(['enqueue', 'x', '--attempts', '0'], '--attempts', `${INT}, got 0`),
  bad(['enqueue', 'x', '--attempts', '-1'], '--attempts', `${INT}, got -1`),
  bad(['enqueue', 'x', '--attempts', 'abc'], '--attempts', `${INT}, got "abc"`),
  bad(['enqueue', 'x', '--attempts'], '--attempts', `${INT}, got ""`),
  bad(['enqueue', 'x', '--timeout', '0'], '--timeout', 'at least 1 ms, got 0'),
  bad(['enqueue', 'x', '--timeout', '315360000001'], '--timeout', 'at most 315360000000 ms (10 years)'),
  bad(['enqueue', 'x', '--queue', 'a.b'], '--queue', `${QUEUE} (at most 128), got "a.b"`),
  bad(['enqueue', 'x', '--queue', ''], '--queue', `${QUEUE} (at most 128), got ""`),
  bad(['enqueue', 'x', '--job-id', ''], '--job-id', `${JOB_ID} (at most 200), got ""`),
  bad(['enqueue', 'x', '--depends-on', 'a.b'], '--depends-on', 'comma-separated job ids'),
  bad(['enqueue', 'x', '--wait', '--wait-timeout', '-5'], '--wait-timeout', 'at least 1 ms, got -5'),
  bad(['enqueue', 'x', '--delay', '-1'], '--delay', 'at least 0 ms, got -1'),
  bad(['enqueue', 'x', '--at', 'tomorrow'], '--at', 'an ISO date such as 2026-12-01T09:00:00Z'),
  bad(['enqueue', 'x', '--backoff', 'linear:5'], '--backoff', 'fixed:MS or exponential:MS'),
  bad(['enqueue', 'x', '--backoff', 'fixed:-1'], '--backoff delay', 'at least 0 ms'),
  bad(['enqueue', 'x', '--data', ''], '--data', 'JSON'),
  bad(['enqueue', 'x', '--dedupe-key', 'k', '--dedupe-ttl', 'soon'], '--dedupe-ttl', 'an integer number of milliseconds, got "soon"'),
  bad(['enqueue', 'x', '--dedupe-key', 'a b', '--dedupe-ttl', '5'], '--dedupe-key', 'a dedupe key of letters, digits'),
  bad(['enqueue', 'x', '--dedupe-key', 'k', '--dedupe-ttl', '5', '--dedupe-mode', 'later'], '--dedupe-mode', 'throttle or debounce, got "later"'),
  // enqueue: how flags combine, and the library's check of the whole job
  { args: ['enqueue', 'x', '--wait-timeout', '5000'], says: ['--wait-timeout goes with --wait'] },
  { args: ['enqueue', 'x', '--job-id', 'j1', '--depends-on', 'j1'], says: ['j1 depends on itself'] },
  { args: ['enqueue', 'x', '--dedupe-key', 'k'], says: ['--dedupe-key needs --dedupe-ttl'] },
  { args: ['enqueue', 'x', '--dedupe-ttl', '5'], says: ['--dedupe-ttl goes with --dedupe-key'] },
  { args: ['enqueue', 'x', '--dedupe-key', 'k', '--dedupe-ttl', '5', '--dedupe-mode', 'debounce', '--delay', '5'], says: ['--dedupe-mode debounce cannot be combined with --delay or --at'] },
  { args: ['enqueue', 'x', '--dedupe-key', 'k', '--dedupe-ttl', '60001'], says: ['invalid --dedupe-ttl: 60001 ms is over jobs.dedupeMaxTtlMs (60000 ms)'], env: { NAQ_JOBS__DEDUPE_MAX_TTL_MS: '60000' } },
  { args: ['enqueue', 'x', '--data', JSON.stringify('x'.repeat(300))], says: ['over the 200-byte limit (config jobs.maxPayloadBytes)'], env: { NAQ_JOBS__MAX_PAYLOAD_BYTES: '200' } },
  // job
  bad(['job', 'bad.id'], '<id>', `${JOB_ID} (at most 200), got "bad.id"`),
  bad(['job', 'cancel', 'bad.id'], '<id>', JOB_ID),
  bad(['job', 'delay', 'j1', '--by', '-5'], '--by', 'at least 0 ms, got -5'),
  { args: ['job', 'delay', 'j1'], says: ['naq job delay ID needs --by MS'] },
  { args: ['job', 'j1', '--by', '5'], says: ['--by goes with naq job delay ID'] },
  // jobs
  bad(['jobs', 'ls', '--state', 'finished'], '--state', 'one of pending, delayed, waiting, active, retrying, completed, failed, dead, cancelled, got "finished"'),
  bad(['jobs', 'ls', '--limit', '0'], '--limit', 'an integer from 1 to 1000'),
  bad(['jobs', 'ls', '--queue', 'a.b'], '--queue', QUEUE),
  bad(['jobs', 'retry', '--queue', 'q', '--state', 'completed'], '--state', 'one of dead, failed, got "completed"'),
  bad(['jobs', 'clean', '--queue', 'q', '--state', 'completed', '--older-than', 'soon'], '--older-than', 'a duration such as 30s, 15m, 1h, 7d or milliseconds, got "soon"'),
  { args: ['jobs', 'clean', '--queue', 'q', '--state', 'completed'], says: ['missing --older-than'] },
  // schedule
  bad(['schedule', 'add', 's1', 'x', '--cron', 'bogus'], '--cron', 'a cron expression of 5 fields'),
  bad(['schedule', 'add', 's1', 'x', '--cron', '* * * * *', '--tz', 'Mars/Olympus'], '--tz', 'an IANA time zone such as "Europe/Paris"'),
  bad(['schedule', 'add', 's1', 'x', '--every', '0'], '--every', 'at least 1 ms'),
  bad(['schedule', 'add', 's1', 'x', '--every', '5', '--repeat', '0'], '--repeat', INT),
  bad(['schedule', 'add', 's1', 'x', '--every', '5', '--queue', 'a.b'], '--queue', QUEUE),
  bad(['schedule', 'add', 'bad.id', 'x', '--every', '5'], '<id>', JOB_ID),
  bad(['schedule', 'rm', 'bad.id'], '<id>', JOB_ID),
  // queue, kv, streams, events
  bad(['queue', 'purge', 'a.b'], '<queue>', QUEUE),
  bad(['kv', 'get', 'b.c', 'k'], '<bucket>', 'a bucket name of letters, digits, "_" and "-"'),
  { args: ['kv', 'put', 'b', 'k.', 'v'], says: ['invalid <key>: expected a key of letters, digits', 'not starting or ending with "."'] },
  bad(['kv', 'keys', 'b', '--filter', 'a..b'], '--filter', 'a key, or a filter'),
  bad(['streams', 'info', 'a b'], '<name>', 'a stream name without spaces, ".", "*", ">", "/" or "\\"'),
  bad(['streams', 'purge', 'S', '--subject', 'a b'], '--subject', 'a subject of "."-separated parts'),
  bad(['events', 'history', '--queue', 'a.b'], '--queue', QUEUE),
  bad(['events', 'tail', '--job', 'x.y'], '--job', JOB_ID),
  // the long-running commands: before any connection or embedded server
  bad(['worker', '--handlers', HANDLERS, '--concurrency', 'abc'], '--concurrency', `${INT}, got "abc"`),
  bad(['worker', '--handlers', HANDLERS, '--queue', 'a.b'], '--queue', QUEUE),
  bad(['supervisor', '--inspect', '--inspect-port', '70000'], '--inspect-port', 'an integer from 0 to 65535'),
  // a global option
  bad(['config', '--config', ''], '--config', 'a config file ending in .json, .yaml or .yml, got ""'),
];

describe('CLI argument validators accept what is valid', () => {
  it('numbers and durations, as typed', () => {
    expect(cli.integerArg('--attempts', '3', 1)).toBe(3);
    expect(cli.integerArg('--inspect-port', '0', 0, 65535)).toBe(0);
    expect(cli.durationArg('--delay', '0', 0)).toBe(0);
    // Above Node's 2^31-1 ms timer limit, up to ten years: the library chains timers.
    expect(cli.durationArg('--wait-timeout', '3000000000')).toBe(3_000_000_000);
    expect(cli.durationArg('--timeout', String(10 * 365 * 86_400_000))).toBe(315_360_000_000);
    expect(cli.backoffArg('--backoff', 'exponential:0')).toEqual({ type: 'exponential', delay: 0 });
  });

  it('names, ids, keys, subjects and the rest', () => {
    expect(cli.queueArg('--queue', 'emails_2-x')).toBe('emails_2-x');
    expect(cli.jobIdsArg('--depends-on', 'a,b=1,c_d')).toEqual(['a', 'b=1', 'c_d']);
    expect(cli.bucketArg('<bucket>', 'b-1_x')).toBe('b-1_x');
    expect(cli.kvKeyArg('<key>', 'a/b.c=d-e_f')).toBe('a/b.c=d-e_f');
    expect(cli.kvFilterArg('--filter', 'jobs.*.>')).toBe('jobs.*.>');
    expect(cli.streamArg('<name>', 'KV_b-1')).toBe('KV_b-1');
    expect(cli.subjectArg('--subject', '$KV.b-1.>')).toBe('$KV.b-1.>');
    expect(cli.isoTimeArg('--at', '2026-12-01T09:00:00Z')).toBe(Date.UTC(2026, 11, 1, 9));
    expect(cli.isoTimeArg('--at', '2026-12-01')).toBe(Date.UTC(2026, 11, 1));
    expect(cli.timeZoneArg('--tz', 'Europe/Paris')).toBe('Europe/Paris');
    expect(cli.cronArg('--cron', '0 3 * * 1-5', 'Europe/Paris')).toBe('0 3 * * 1-5');
    expect(cli.jsonArg('--data', '{"a":[1]}')).toEqual({ a: [1] });
  });

  it('a repeated flag is refused, not silently reduced to one value', () => {
    expect(() => cli.queueArg('--queue', ['a', 'b'])).toThrow('invalid --queue: given 2 times, expected once');
  });
});

describe('naq CLI: bad arguments exit 2 before connecting, naming the argument', () => {
  let url: string;
  let results: CliResult[];

  beforeAll(async () => {
    url = `nats://127.0.0.1:${await freePort()}`;
    results = await pool(CASES, 3, (c) => run([...c.args, '--nats-url', url], c.env));
  }, 300_000);

  const title = (args: string[]) => args.map((a) => (a.length > 40 ? `${a.slice(0, 37)}...` : a)).join(' ');
  it.each(CASES.map((c, i) => [title(c.args), i] as const))('naq %s', (_name, i) => {
    const r = results[i]!;
    const c = CASES[i]!;
    expect(r.code, r.stderr).toBe(2);
    for (const text of c.says) expect(r.stderr).toContain(text);
    expect(r.stderr).not.toMatch(STACK_LINE);
    expect(r.stdout).toBe('');
  });
});

describe('naq worker: a handler that leaves a rejection unhandled', () => {
  const clients: Naq[] = [];
  afterEach(async () => {
    killSpawned();
    await Promise.all(clients.splice(0).map((n) => n.stop()));
  });
  afterAll(stopAllServers);

  it('logs it as an error and keeps serving: the next job completes', async () => {
    const server = await startServer();
    const worker = spawned(process.execPath, [CLI, 'worker', '--handlers', UNHANDLED, '--queue', 'unhandled', '--nats-url', server.url, '--log-level', 'info'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    worker.stderr!.on('data', (d) => (stderr += d));
    await until(() => stderr.includes('all services running') || worker.exitCode !== null);
    expect(worker.exitCode, stderr).toBeNull();

    const naq = createNaq({ nats: { url: server.url } }, { logger: pino({ level: 'silent' }) });
    clients.push(naq);
    await naq.start({ timeoutMs: 10_000 });
    const leaked = await naq.enqueue('leak', null, { queue: 'unhandled' });
    expect(await naq.waitFor(leaked, { timeoutMs: 15_000 })).toBe('leaked');
    await until(() => stderr.includes('left unhandled on purpose'));

    const echoed = await naq.enqueue('echo', { n: 2 }, { queue: 'unhandled' });
    expect(await naq.waitFor(echoed, { timeoutMs: 15_000 })).toEqual({ n: 2 });
    expect(worker.exitCode, stderr).toBeNull();
    const logged = stderr
      .split('\n')
      .filter((l) => l.includes('left unhandled on purpose'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err: { message: string } });
    expect(logged).toEqual([expect.objectContaining({ level: 50, err: expect.objectContaining({ message: 'left unhandled on purpose' }) })]);
  }, 60_000);
});
