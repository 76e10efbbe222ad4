/**
 * The config's secrets, for what leaves the process: `naq config` shows a redacted copy, and
 * the logger and the inspector scrub the secret strings wherever they appear. Which settings
 * are secret is decided once, in core/secret-keys.ts.
 */
import { natsUrlSecrets, redactNatsUrl } from './nats-url.js';
import type { NaqConfig } from './schema.js';
import { REDACTED, SECRET_DASHBOARD_FIELDS, SECRET_NATS_FIELDS } from '../core/secret-keys.js';

/** A copy of the config that is safe to log or show: secrets replaced by '[redacted]'. */
export function redactConfig(config: NaqConfig): NaqConfig {
  const copy = structuredClone(config);
  const nats = copy.nats;
  for (const field of SECRET_NATS_FIELDS) {
    if (nats[field] !== undefined) nats[field] = REDACTED;
  }
  if (nats.url !== undefined) nats.url = redactNatsUrl(nats.url);
  for (const field of SECRET_DASHBOARD_FIELDS) {
    if (copy.dashboard[field] !== undefined) copy.dashboard[field] = REDACTED;
  }
  return copy;
}

/** The secret strings in the config, for scrubbing logs and inspector events. */
export function configSecrets(config: NaqConfig): string[] {
  const nats = config.nats;
  const secrets = [
    ...SECRET_NATS_FIELDS.map((field) => nats[field]),
    ...(nats.url === undefined ? [] : natsUrlSecrets(nats.url)),
    ...SECRET_DASHBOARD_FIELDS.map((field) => config.dashboard[field]),
  ];
  return [...new Set(secrets.filter((s): s is string => s !== undefined && s !== ''))];
}

// The secret fields are `nats.*` settings of the schema: a renamed setting fails to compile here.
const _secretFieldsAreSettings: readonly (keyof NaqConfig['nats'])[] = SECRET_NATS_FIELDS;
void _secretFieldsAreSettings;
