/**
 * The config's named choices, in a module of their own without the schema (and zod): the CLI
 * lists them in its options before it loads the config, so `naq --help` does not load zod.
 */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const ROLES = ['producer', 'worker', 'scheduler'] as const;
