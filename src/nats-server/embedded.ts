import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isNatsUrlConfigured, type NaqConfig } from '../config/index.js';
import type { Logger } from '../core/log.js';
import { isNatsReachable, startNatsServer, type NatsServerProcess } from './process.js';

export interface ResolvedNats {
  /** The config to run with (nats.url set when an embedded server was started). */
  config: NaqConfig;
  /** The embedded server, when naq started one; stop it on exit. */
  embedded: NatsServerProcess | null;
}

/**
 * Where the supervisor's NATS comes from: the configured URL; else whatever answers at the
 * default URL; else — unless turned off — a local nats-server child with JetStream, its store
 * under `.naq/`, so that `npm start` on a fresh machine just works.
 */
export async function resolveNats(config: NaqConfig, logger: Logger): Promise<ResolvedNats> {
  if (isNatsUrlConfigured(config)) return { config, embedded: null };
  // The default URL is where the embedded server would listen (127.0.0.1:4222 unless changed).
  const url = `nats://${config.embedded.host}:${config.embedded.port}`;
  const withUrl = (u: string): NaqConfig => ({ ...config, nats: { ...config.nats, url: u } });
  if (await isNatsReachable(url, 500)) {
    logger.info(`using the nats-server at ${url}`);
    return { config: withUrl(url), embedded: null };
  }
  if (!config.embedded.enabled) {
    logger.warn(`no NATS URL configured, nothing answers at ${url}, and the embedded server is off (--no-embedded); retrying until one answers`);
    return { config: withUrl(url), embedded: null };
  }
  const storeDir = resolve(config.embedded.storeDir);
  await mkdir(storeDir, { recursive: true });
  const embedded = await startNatsServer({
    binary: config.embedded.binary,
    host: config.embedded.host,
    port: config.embedded.port,
    storeDir,
    logFile: resolve(storeDir, '..', 'nats-server.log'),
  });
  logger.info({ url: embedded.url, storeDir }, 'started an embedded nats-server (no NATS URL configured)');
  return { config: withUrl(embedded.url), embedded };
}
