/** `naq events tail | history | stats`: the event log from the command line. */
import type { Argv } from 'yargs';
import { InvalidArgumentError } from '../core/errors.js';
import { EVENT_TYPES, isEventType, type NaqEvent, type NaqEventType } from '../model/event.js';
import { type EventFilter, type EventStats } from '../actors/events/queries.js';
import { jobIdArg, queueArg } from './args.js';
import { show, showLine } from './output.js';
import { defineCommand, defineGroup, withNaq, type BuiltArgs, type GlobalArgs } from './shared.js';

/** A bad flag value, found before anything connects; the CLI maps it to its usage exit code. */
export class EventsUsageError extends InvalidArgumentError {}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/;

/** `--since`: a duration back from `now` (30s, 10m, 1h, 2d, 1w) or an ISO date; ms since the epoch. */
export function parseSince(text: string, now = Date.now()): number {
  const trimmed = text.trim();
  const duration = DURATION.exec(trimmed);
  if (duration) return now - Number(duration[1]) * UNITS[duration[2]!]!;
  const ms = ISO_DATE.test(trimmed) ? Date.parse(trimmed) : NaN;
  if (Number.isFinite(ms)) return ms;
  throw new EventsUsageError(`--since: expected a duration such as 30s, 10m, 1h, 2d or an ISO date, got ${JSON.stringify(text)}`);
}

/** `--type` may repeat and may hold a comma-separated list. */
export function parseTypes(values: readonly string[] | undefined): NaqEventType[] | undefined {
  const given = (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  const unknown = given.find((type) => !isEventType(type));
  if (unknown !== undefined) throw new EventsUsageError(`--type: unknown event type ${JSON.stringify(unknown)}; expected one of ${EVENT_TYPES.join(', ')}`);
  const types = given.filter(isEventType);
  return types.length ? types : undefined;
}

/** Declared as a string so a typo ("abc") or a bare --limit is seen, not turned into NaN or dropped. */
function parseLimit(limit: unknown): number | undefined {
  if (limit === undefined) return undefined;
  const n = typeof limit === 'string' && /^\d+$/.test(limit) ? Number(limit) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new EventsUsageError(`invalid --limit: expected an integer >= 1, got ${JSON.stringify(limit)}`);
  return n;
}

/** `<iso ts>  <type>  <queue>  <job or worker id>  <data json>` */
export function formatEvent(event: NaqEvent): string {
  const id = event.jobId ?? event.workerId ?? '-';
  const data = event.data === undefined ? '' : JSON.stringify(event.data);
  return `${new Date(event.ts).toISOString()}  ${event.type.padEnd(16)}  ${event.queue}  ${id}  ${data}`.trimEnd();
}

export function formatStats(s: EventStats): string[] {
  const counts = (record: Record<string, number>) =>
    Object.entries(record)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || '-';
  const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
  return [
    `window     ${new Date(s.since).toISOString()} .. ${new Date(s.until).toISOString()}`,
    `total      ${s.total} events (${s.ratePerSec.toFixed(2)}/s)`,
    `by type    ${counts(s.byType)}`,
    `by queue   ${counts(s.byQueue)}`,
    `failures   ${(s.failureRatio * 100).toFixed(1)}% of finished jobs`,
    `duration   p50 ${ms(s.durationMs.p50)}, p95 ${ms(s.durationMs.p95)} (${s.durationMs.count} jobs)`,
  ];
}

function withFilterOptions(y: Argv<GlobalArgs>) {
  return y
    .option('queue', { type: 'string', describe: 'only this queue (_system for non-queue events)' })
    .option('job', { type: 'string', describe: 'only this job id' })
    .option('type', { type: 'string', array: true, describe: `only these event types (repeatable or comma-separated): ${EVENT_TYPES.join(', ')}` });
}

function filterOf(args: BuiltArgs<typeof withFilterOptions>): EventFilter {
  const filter: EventFilter = {};
  if (args.queue !== undefined) filter.queue = args.queue;
  if (args.job !== undefined) filter.jobId = args.job;
  const types = parseTypes(args.type);
  if (types) filter.types = types;
  return filter;
}

/** --queue and --job as the rest of the CLI checks them; last, just before connecting. */
function checkNames(args: { queue?: string | undefined; job?: string | undefined }): void {
  if (args.queue !== undefined) queueArg('--queue', args.queue);
  if (args.job !== undefined) jobIdArg('--job', args.job);
}

const tail = defineCommand({
  command: 'tail',
  describe: 'print events as they happen, until SIGINT / SIGTERM',
  builder: withFilterOptions,
  handler: async (args) => {
    const filter = filterOf(args);
    checkNames(args);
    await withNaq(args, async (naq) => {
      const subscription = await naq.events.subscribe(filter);
      const stop = () => subscription.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        for await (const event of subscription) showLine(args, event, formatEvent);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
  },
});

const history = defineCommand({
  command: 'history',
  describe: 'print past events, oldest first',
  builder: (y) =>
    withFilterOptions(y)
      .option('since', { type: 'string', describe: 'from this long ago (30s, 10m, 1h, 2d) or this ISO date; default: the start of the log' })
      .option('limit', { type: 'string', describe: 'at most this many events (an integer >= 1), the first from --since (default 1000)' }),
  handler: async (args) => {
    const filter = { ...filterOf(args), ...(args.since !== undefined ? { since: parseSince(args.since) } : {}) };
    const limit = parseLimit(args.limit);
    checkNames(args);
    await withNaq(args, async (naq) => {
      const events = await naq.events.history({ ...filter, ...(limit ? { limit } : {}) });
      show(args, events, (all) => all.map(formatEvent));
    });
  },
});

const stats = defineCommand({
  command: 'stats',
  describe: 'counts by type and queue, rate, failure ratio and job duration percentiles',
  builder: (y) =>
    y
      .option('since', { type: 'string', describe: 'window start: a duration back from now or an ISO date (default 1h)' })
      .option('queue', { type: 'string', describe: 'only this queue' }),
  handler: async (args) => {
    const since = parseSince(args.since ?? '1h');
    checkNames(args);
    await withNaq(args, async (naq) => {
      const result = await naq.events.stats({ since, ...(args.queue !== undefined ? { queue: args.queue } : {}) });
      show(args, result, formatStats);
    });
  },
});

export const eventsCommand = defineGroup('events', 'the event log: live tail, history and stats', (y) =>
  y.command(tail).command(history).command(stats).demandCommand(1, 'name an events command: tail, history or stats'),
);
