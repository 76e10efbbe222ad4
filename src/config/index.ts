/**
 * naq's configuration: one typed, validated object, merged from
 * defaults ← config file ← environment ← CLI flags.
 *
 * Every problem is a ConfigError whose key is where the user has to look: the dotted key
 * (file, flags, library input), the environment variable, or the file path.
 */
export { defaultConfig, loadConfig, resolveConfig, type LoadConfigOptions } from './load.js';
export { LOG_LEVELS, ROLES, type LogLevel, type NaqConfig, type NaqConfigInput, type Role } from './schema.js';
export { KNOWN_ENV_VARS, type KnownEnvVar } from './env.js';
export {
  DEFAULT_NATS_SERVER,
  NATS_URL_SCHEMES,
  parseNatsUrls,
  redactNatsUrl,
  type NatsUrls,
  type UrlCredentials,
} from './nats-url.js';
export { isNatsUrlConfigured, natsConnectTarget, natsServers } from './nats-target.js';
export { configSecrets, redactConfig } from './secrets.js';
export { REDACTED, SECRET_CONFIG_KEYS, SECRET_PROPERTY_NAMES } from '../core/secret-keys.js';
