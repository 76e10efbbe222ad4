/** What the NATS client connects to, from the config: servers without user info, and the credentials. */
import { ConfigError } from '../core/errors.js';
import { DEFAULT_NATS_SERVER, NATS_URL_FORM, natsUrlEntries, parseNatsUrls, redactNatsUrl, type NatsUrls } from './nats-url.js';
import type { NaqConfig } from './schema.js';

/** True when the user named NATS servers (otherwise naq may start an embedded server). */
export function isNatsUrlConfigured(config: NaqConfig): boolean {
  return config.nats.url !== undefined && natsUrlEntries(config.nats.url).length > 0;
}

/**
 * What the NATS client connects to: the configured servers without their user info (or the
 * local default) and the credentials the URLs carried. Throws on a value validation would
 * have refused, which only a config built by hand can hold.
 */
export function natsConnectTarget(config: NaqConfig): NatsUrls {
  const url = config.nats.url;
  if (url === undefined || natsUrlEntries(url).length === 0) return { servers: [DEFAULT_NATS_SERVER] };
  const parsed = parseNatsUrls(url);
  if (parsed.ok) return parsed.value;
  throw new ConfigError(
    'nats.url',
    parsed.problem.kind === 'form'
      ? `expected ${NATS_URL_FORM}, got ${JSON.stringify(redactNatsUrl(url))}`
      : parsed.problem.message,
  );
}

/** The server list for the NATS client: the configured URLs without credentials, or the local default. */
export function natsServers(config: NaqConfig): string[] {
  return natsConnectTarget(config).servers;
}
