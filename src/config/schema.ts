/**
 * The config schema: every key, its default and its expected form in words. Only the shape
 * lives here; reading, merging and reporting are in the neighbouring modules.
 */
import { z } from 'zod';
import { LOG_LEVELS, ROLES } from './names.js';
import { NATS_URL_FORM, parseNatsUrls } from './nats-url.js';

/**
 * The expected form of each leaf, in words, for error messages. Kept beside the schema
 * (not in zod's messages) so one formatter can say "expected X, got Y" with the key and
 * source the user actually wrote, whichever check failed.
 */
const forms = new WeakMap<z.ZodType, string>();

/** The expected form of a schema given to `expecting`, in words. */
export const formOf = (schema: z.ZodType): string | undefined => forms.get(schema);

function expecting<T extends z.ZodType>(schema: T, form: string): T {
  forms.set(schema, form);
  return schema;
}

// Node clamps larger setTimeout delays to 1 ms (with only a warning), so a huge duration
// would silently become "immediately".
const MAX_TIMER_MS = 2_147_483_647;

const int = (min: number, max?: number) =>
  expecting(
    max === undefined ? z.number().int().min(min) : z.number().int().min(min).max(max),
    max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
  );

const ms = (min = 0) =>
  expecting(
    z.number().int().min(min).max(MAX_TIMER_MS),
    `an integer number of milliseconds from ${min} to ${MAX_TIMER_MS}`,
  );

const bool = () => expecting(z.boolean(), 'true or false');
const text = () => expecting(z.string().min(1), 'a non-empty string');
const filePath = () => expecting(z.string().min(1), 'a non-empty file path');
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  expecting(z.enum(values), `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
const section = <T extends z.core.$ZodLooseShape>(shape: T) =>
  expecting(z.strictObject(shape), 'an object');

export { LOG_LEVELS, ROLES };
const natsUrl = expecting(
  z.string().superRefine((value, ctx) => {
    const parsed = parseNatsUrls(value);
    if (parsed.ok) return;
    // A form problem is worded from NATS_URL_FORM like any other bad value; a credentials
    // problem carries its own message (already redacted).
    if (parsed.problem.kind === 'form') ctx.addIssue({ code: 'custom', message: 'not a NATS URL list' });
    else ctx.addIssue({ code: 'custom', message: parsed.problem.message, params: { explicit: true } });
  }),
  NATS_URL_FORM,
);

const tls = expecting(
  z
    .strictObject({
      caFile: filePath().optional(),
      certFile: filePath().optional(),
      keyFile: filePath().optional(),
    })
    .superRefine((value, ctx) => {
      // A client certificate is useless without its key and vice versa; catching it here
      // beats a TLS handshake failure at connect time.
      const [has, missing] =
        value.certFile !== undefined && value.keyFile === undefined
          ? (['certFile', 'keyFile'] as const)
          : value.keyFile !== undefined && value.certFile === undefined
            ? (['keyFile', 'certFile'] as const)
            : [undefined, undefined];
      if (has !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [missing],
          message:
            `expected a file path: nats.tls.${missing} is required because nats.tls.${has} ` +
            'is set (certFile and keyFile go together)',
          params: { explicit: true },
        });
      }
    }),
  'an object',
);

const dashboard = expecting(
  z
    .strictObject({
      host: text().default('127.0.0.1'),
      port: int(0, 65535).default(8080),
      token: text().optional(),
      user: text().optional(),
      password: text().optional(),
    })
    .superRefine((value, ctx) => {
      // Half of basic auth would leave the dashboard open while looking protected.
      const [has, missing] =
        value.user !== undefined && value.password === undefined
          ? (['user', 'password'] as const)
          : value.password !== undefined && value.user === undefined
            ? (['password', 'user'] as const)
            : [undefined, undefined];
      if (has !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [missing],
          message: `expected a non-empty string: dashboard.${missing} is required because dashboard.${has} is set (user and password go together)`,
          params: { explicit: true },
        });
      }
    }),
  'an object',
);

export const ConfigSchema = section({
  prefix: expecting(
    z.string().regex(/^[A-Za-z0-9_-]+$/),
    'a non-empty name of letters, digits, "_" and "-"',
  ).default('naq'),
  nats: section({
    url: natsUrl.optional(),
    name: text().default('naq'),
    user: text().optional(),
    password: text().optional(),
    token: text().optional(),
    nkeySeed: text().optional(),
    credsFile: filePath().optional(),
    tls: tls.optional(),
    connectTimeoutMs: ms(1).default(5000),
    // A link that stops delivering without closing (a dropped NAT entry, a peer gone behind
    // a firewall) shows only as unanswered pings: the client reconnects when maxPingsOut
    // pings are still unanswered at the next ping, i.e. 20–30 s after the link died here.
    // The client's own 2 min × 2 would leave a worker idle, and every enqueue timing out,
    // for 4–6 minutes. Two pings, not one, so a PONG stuck behind a large backlog does not
    // cost a needless reconnect; a PING every 10 s is negligible traffic. The floors: the
    // client reads 0 as "its default", and below 100 ms an event-loop stall alone would
    // look like missed pings.
    pingIntervalMs: ms(100).default(10_000),
    maxPingsOut: int(1).default(2),
  }).prefault({}),
  connect: section({
    maxAttempts: int(0).default(0),
    initialDelayMs: ms().default(250),
    maxDelayMs: ms().default(5000),
    jitter: expecting(z.number().min(0).max(1), 'a number from 0 to 1').default(0.2),
  }).prefault({}),
  reconnect: section({
    timeWaitMs: ms().default(500),
    maxAttempts: int(0).default(0),
    giveUpAfterMs: ms().default(0),
  }).prefault({}),
  embedded: section({
    enabled: bool().default(true),
    storeDir: filePath().default('.naq/nats'),
    host: text().default('127.0.0.1'),
    port: int(0, 65535).default(4222),
    binary: filePath().default('nats-server'),
  }).prefault({}),
  log: section({
    level: oneOf(LOG_LEVELS).default('info'),
    pretty: bool().optional(),
  }).prefault({}),
  supervisor: section({
    maxRestarts: int(0).default(5),
    restartWindowMs: ms(1).default(60_000),
    restartDelayMs: ms().default(250),
    restartMaxDelayMs: ms().default(10_000),
    stopTimeoutMs: ms(1).default(10_000),
  }).prefault({}),
  ops: section({
    timeoutMs: ms(1).default(5000),
    retryInitialDelayMs: ms().default(50),
    retryMaxDelayMs: ms().default(1000),
  }).prefault({}),
  storage: section({
    replicas: int(1, 5).default(1),
    storage: oneOf(['file', 'memory']).default('file'),
  }).prefault({}),
  inspect: section({
    enabled: bool().default(false),
    port: int(0, 65535).default(5678),
    recordFile: filePath().optional(),
  }).prefault({}),
  jobs: section({
    attempts: int(1).default(1),
    backoffType: oneOf(['fixed', 'exponential']).default('exponential'),
    backoffDelayMs: ms().default(1000),
    resultTtlMs: ms(1).default(86_400_000),
    maxPayloadBytes: int(1).default(1_048_576),
    activeAfterMs: ms().default(1000),
    publishTimeoutMs: ms(1).default(5000),
    /** Write the job index that listings read (src/model/job-index.ts). */
    index: bool().default(true),
    /** Lines of `ctx.log` kept with each job's record (0: none kept; they are still logged). */
    maxLogLines: int(0).default(100),
    /**
     * The dedupe bucket's TTL, and so the longest dedupe window (`dedupe.ttlMs`): nats-server
     * 2.9 has no per-key TTL, so a key is kept this long after its last write.
     */
    dedupeMaxTtlMs: ms(1000).default(86_400_000),
    /**
     * How long a flow's parent or a batch's completion job waits for its children: the flows
     * bucket's and notice stream's max age (a parent whose children have not all finished by
     * then is forgotten, and never runs).
     */
    flowTtlMs: ms(60_000).default(7 * 86_400_000),
    /**
     * Jobs with a group the group dispatcher holds at once per queue (its staging consumer's
     * max_ack_pending): groups take turns among this many waiting jobs, in enqueue order.
     */
    groupLookahead: int(100).default(20_000),
    /**
     * At most this many jobs of one group running at once, for a queue with no group limit of
     * its own (setGroupLimit); 0: none. Read by the process that releases grouped jobs.
     */
    groupConcurrency: int(0).default(0),
  }).prefault({}),
  worker: section({
    queues: expecting(z.array(z.string().regex(/^[A-Za-z0-9_-]+$/)).min(1), 'a non-empty list of queue names (letters, digits, "_", "-")')
      .transform((queues) => [...new Set(queues)])
      .default(() => ['default']),
    concurrency: int(1).default(10),
    maxAckPending: int(1).default(1000),
    heartbeatMs: ms(1).default(5000),
    ackWaitMs: ms(1).default(30_000),
    drainGraceMs: ms().default(10_000),
    handlers: filePath().optional(),
    // A delayed job or a schedule must not need a process nobody thought to start: a worker
    // takes part in the scheduler's leader election (one leader fires), unless told not to.
    fireSchedules: bool().default(true),
    // The handlers module's handlers run in worker threads (actors/worker/sandbox.ts): a
    // CPU-bound handler then leaves the event loop free to keep its job alive.
    sandbox: bool().default(false),
  }).prefault({}),
  events: section({
    enabled: bool().default(true),
    // 500 held a busy worker's events long enough to outlive two young-generation GCs: the
    // promoted garbage took a 100k drain's peak RSS from ~100 to ~140 MiB. 200 does not.
    maxBatch: int(1).default(200),
    flushMs: ms(1).default(100),
    maxBuffered: int(1).default(50_000),
    maxAgeMs: ms().default(7 * 24 * 3600_000),
  }).prefault({}),
  scheduler: section({
    leaderTtlMs: ms(1000).default(10_000),
    renewMs: ms(100).default(3000),
    electionRetryMs: ms(100).default(1000),
    maxFireFailures: int(1).default(5),
  }).prefault({}),
  /** `naq dashboard` and `--dashboard`: where it listens and, beyond loopback, its auth. */
  dashboard: dashboard.prefault({}),
  roles: expecting(
    z.array(oneOf(ROLES)).min(1),
    `a non-empty list of ${ROLES.map((r) => JSON.stringify(r)).join(', ')}`,
  )
    .transform((roles) => [...new Set(roles)])
    .default(() => ['producer' as const]),
});

/** The resolved configuration: every default filled in, every value validated. */
export type NaqConfig = z.output<typeof ConfigSchema>;

type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** What a library user or the CLI passes: any subset of NaqConfig. */
export type NaqConfigInput = DeepPartial<NaqConfig>;

export type LogLevel = NaqConfig['log']['level'];
export type Role = NaqConfig['roles'][number];
