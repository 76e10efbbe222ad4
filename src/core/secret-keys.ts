/**
 * The one list of what naq treats as secret. Config redaction, config error messages, the log
 * redaction paths and the inspector's scrubber all derive their lists from here, so a new
 * secret setting is added once and hidden everywhere.
 *
 * A leaf module (types only from the schema), so the logger and the scrubber can use it
 * without loading zod.
 */

/** What a hidden value is replaced with, everywhere. */
export const REDACTED = '[redacted]';

/**
 * The secret `nats.*` settings, each with the other names the same secret goes by outside
 * naq's config: the NATS client's connect options (`pass`, `authenticator`), the protocol's
 * CONNECT fields (`auth_token`), the nkey API (`seed`). Those names show up in objects that
 * reach logs and inspector events, so they are hidden by key as well.
 */
const SECRET_NATS_SETTINGS = {
  password: ['pass'],
  token: ['auth_token'],
  nkeySeed: ['seed', 'authenticator'],
} as const satisfies Record<string, readonly string[]>;

export type SecretNatsSetting = keyof typeof SECRET_NATS_SETTINGS;

/** The `nats.*` settings whose whole value is a secret. */
export const SECRET_NATS_FIELDS = Object.keys(SECRET_NATS_SETTINGS) as readonly SecretNatsSetting[];

/** The dashboard's secret settings (`dashboard.token`, `dashboard.password`): already hidden by name as properties. */
export const SECRET_DASHBOARD_FIELDS = ['token', 'password'] as const;

/** Dotted config keys whose whole value is a secret (`nats.password`, ...). */
export const SECRET_CONFIG_KEYS: ReadonlySet<string> = new Set([
  ...SECRET_NATS_FIELDS.map((field) => `nats.${field}`),
  ...SECRET_DASHBOARD_FIELDS.map((field) => `dashboard.${field}`),
]);

/** The config key whose value may carry credentials inside it (a URL's user info). */
export const CREDENTIAL_URL_KEY = 'nats.url';

/** Property names whose value is hidden wherever they appear in a logged or inspected object. */
export const SECRET_PROPERTY_NAMES: ReadonlySet<string> = new Set([
  ...SECRET_NATS_FIELDS,
  ...Object.values(SECRET_NATS_SETTINGS).flat(),
]);
