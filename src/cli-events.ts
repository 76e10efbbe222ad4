/**
 * `naq events tail | history | stats`: the event log from the command line. Built as a yargs
 * command module so the CLI entry only mounts it; the work goes to the events actor.
 */
import type { Argv, CommandModule } from 'yargs';
import type { AnyActorRef } from 'xstate';
import type { EventsRequest } from './actors/events.js';
import { ask, type ReplyTo } from './ask.js';
import type { NaqConfig } from './config.js';
import { InvalidArgumentError } from './errors.js';
import { EVENT_TYPES, isEventType, type EventFilter, type EventStats, type NaqEvent, type NaqEventType } from './event-log.js';

export interface EventsCliArgs {
  'nats-url'?: string;
  config?: string;
  'log-level'?: string;
  json?: boolean;
}

export interface EventsCliNaq {
  get(systemId: string): AnyActorRef | undefined;
  config: NaqConfig;
}

export type WithNaq = <T>(args: EventsCliArgs, work: (naq: EventsCliNaq) => Promise<T>) => Promise<T>;

interface FilterArgs extends EventsCliArgs {
  queue?: string;
  job?: string;
  type?: string[];
}

interface HistoryArgs extends FilterArgs {
  since?: string;
  limit?: string;
}

interface StatsArgs extends EventsCliArgs {
  queue?: string;
  since?: string;
}

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
  const types = (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  for (const type of types) {
    if (!isEventType(type)) throw new EventsUsageError(`--type: unknown event type ${JSON.stringify(type)}; expected one of ${EVENT_TYPES.join(', ')}`);
  }
  return types.length ? (types as NaqEventType[]) : undefined;
}

/** Declared as a string so a typo ("abc") or a bare --limit is seen, not turned into NaN or dropped. */
function parseLimit(limit: unknown): number | undefined {
  if (limit === undefined) return undefined;
  const n = typeof limit === 'string' && /^\d+$/.test(limit) ? Number(limit) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new EventsUsageError(`invalid --limit: expected an integer >= 1, got ${JSON.stringify(limit)}`);
  return n;
}

function filterOf(args: FilterArgs): EventFilter {
  const filter: EventFilter = {};
  if (args.queue !== undefined) filter.queue = args.queue;
  if (args.job !== undefined) filter.jobId = args.job;
  const types = parseTypes(args.type);
  if (types) filter.types = types;
  return filter;
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

function out(line: string) {
  process.stdout.write(`${line}\n`);
}

type Without<R> = R extends unknown ? Omit<R, 'replyTo'> : never;
type ReplyOf<R> = R extends { replyTo: ReplyTo<infer T> } ? T : never;

/**
 * Queries may scan a long window; the events actor fails a scan that stalls, so the ask
 * itself only guards against an actor that never answers.
 */
function askEvents<R extends Without<EventsRequest>>(naq: EventsCliNaq, request: R, long = false): Promise<ReplyOf<Extract<EventsRequest, { type: R['type'] }>>> {
  const timeoutMs = naq.config.ops.timeoutMs + 1000;
  return ask(naq.get('events'), (replyTo) => ({ ...request, replyTo }) as unknown as EventsRequest, {
    timeoutMs: long ? Math.max(60_000, timeoutMs) : timeoutMs,
    operation: request.type,
  });
}

function withFilterOptions<T>(y: Argv<T>) {
  return y
    .option('queue', { type: 'string', describe: 'only this queue (_system for non-queue events)' })
    .option('job', { type: 'string', describe: 'only this job id' })
    .option('type', { type: 'string', array: true, describe: `only these event types (repeatable or comma-separated): ${EVENT_TYPES.join(', ')}` });
}

async function runTail(withNaq: WithNaq, args: FilterArgs): Promise<void> {
  const filter = filterOf(args);
  await withNaq(args, async (naq) => {
    const subscription = await askEvents(naq, { type: 'events.subscribe', filter });
    const stop = () => subscription.stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      for await (const event of subscription) out(args.json ? JSON.stringify(event) : formatEvent(event));
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  });
}

async function runHistory(withNaq: WithNaq, args: HistoryArgs): Promise<void> {
  const filter = { ...filterOf(args), ...(args.since !== undefined ? { since: parseSince(args.since) } : {}) };
  const limit = parseLimit(args.limit);
  await withNaq(args, async (naq) => {
    const events = await askEvents(naq, { type: 'events.history', filter: { ...filter, ...(limit ? { limit } : {}) } }, true);
    if (args.json) out(JSON.stringify(events, null, 2));
    else for (const event of events) out(formatEvent(event));
  });
}

async function runStats(withNaq: WithNaq, args: StatsArgs): Promise<void> {
  const since = parseSince(args.since ?? '1h');
  await withNaq(args, async (naq) => {
    const result = await askEvents(naq, { type: 'events.stats', filter: { since, ...(args.queue !== undefined ? { queue: args.queue } : {}) } }, true);
    if (args.json) out(JSON.stringify(result, null, 2));
    else for (const line of formatStats(result)) out(line);
  });
}

/** The `naq events` command with its `tail`, `history` and `stats` subcommands. */
export function eventsCommand(withNaq: WithNaq): CommandModule<EventsCliArgs, EventsCliArgs> {
  return {
    command: 'events',
    describe: 'the event log: live tail, history and stats',
    builder: (y) =>
      y
        .command(
          'tail',
          'print events as they happen, until SIGINT / SIGTERM',
          (c) => withFilterOptions(c),
          (args) => runTail(withNaq, args as FilterArgs),
        )
        .command(
          'history',
          'print past events, oldest first',
          (c) =>
            withFilterOptions(c)
              .option('since', { type: 'string', describe: 'from this long ago (30s, 10m, 1h, 2d) or this ISO date; default: the start of the log' })
              .option('limit', { type: 'string', describe: 'at most this many events (an integer >= 1), the first from --since (default 1000)' }),
          (args) => runHistory(withNaq, args as HistoryArgs),
        )
        .command(
          'stats',
          'counts by type and queue, rate, failure ratio and job duration percentiles',
          (c) =>
            c
              .option('since', { type: 'string', describe: 'window start: a duration back from now or an ISO date (default 1h)' })
              .option('queue', { type: 'string', describe: 'only this queue' }),
          (args) => runStats(withNaq, args as StatsArgs),
        )
        .demandCommand(1, 'name an events command: tail, history or stats'),
    handler: () => {},
  };
}
