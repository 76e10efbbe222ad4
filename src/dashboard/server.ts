/**
 * The dashboard's one HTTP server (node:http): the pages (plain ES modules, with preact and
 * htm served from their packages' own dist files: no bundler, nothing fetched from outside),
 * the JSON API under /api/, the live stream at /api/live and Prometheus text at /metrics.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../core/log.js';
import { REDACTED } from '../core/secret-keys.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { DashboardBackend } from './backend.js';
import type { ActorTree } from './actor-tree.js';
import { handleApi, type ApiContext } from './api.js';
import { LiveFeed } from './live.js';
import { authorized, checkBind, crossSiteReason, hostAllowed, newCsrfToken, TOKEN_COOKIE, tokenMatches, type DashboardAuth } from './security.js';

export interface DashboardOptions {
  backend: DashboardBackend;
  logger: Logger;
  port?: number;
  host?: string;
  auth?: DashboardAuth;
  readOnly?: boolean;
  hidePayloads?: boolean;
  /** Strings that must never appear in a response (the config's secrets). */
  secrets?: string[];
  /** This process's actors, fed by the inspection stream; the system page draws it. */
  tree?: ActorTree | null;
}

export interface DashboardServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;
const require = createRequire(import.meta.url);

/** The pages' files: beside this module when run from source, in the package's src/ when built. */
function uiDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'ui'), join(here, '../../../src/dashboard/ui')];
  const found = candidates.find((dir) => existsSync(join(dir, 'index.html')));
  if (!found) throw new Error(`naq bug: the dashboard's pages are missing (looked in ${candidates.join(', ')})`);
  return found;
}

/** The browser modules of the dependencies, by the URL the import map gives them. */
function vendorFiles(): Record<string, string> {
  return {
    '/vendor/preact.js': join(dirname(require.resolve('preact')), 'preact.module.js'),
    '/vendor/preact-hooks.js': join(dirname(require.resolve('preact/hooks')), 'hooks.module.js'),
    '/vendor/htm.js': join(dirname(require.resolve('htm')), 'htm.module.js'),
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The only inline script is the page's import map: allowed by its hash, nothing else inline runs. */
function securityHeaders(index: string): Record<string, string> {
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(index)?.[1] ?? '';
  const hash = createHash('sha256').update(importMap).digest('base64');
  return {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'content-security-policy': `default-src 'self'; script-src 'self' 'sha256-${hash}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'`,
  };
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new InvalidArgumentError(`the request body is over ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text.trim()) return resolve({});
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
        resolve(parsed as Record<string, unknown>);
      } catch {
        reject(new InvalidArgumentError('the request body is not a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

export async function startDashboard(options: DashboardOptions): Promise<DashboardServer> {
  const host = options.host ?? '127.0.0.1';
  const auth = options.auth ?? {};
  checkBind(host, auth);
  const secrets = (options.secrets ?? []).filter((s) => s.length > 0);
  const scrub = (text: string) => secrets.reduce((t, s) => t.split(s).join(REDACTED), text);
  // Strings are scrubbed before they are encoded: a secret with a quote in it is escaped in JSON.
  const encode = (body: unknown) => JSON.stringify(body, (_key, value: unknown) => (typeof value === 'string' ? scrub(value) : value));
  const csrf = newCsrfToken();
  const dir = uiDir();
  const vendor = vendorFiles();
  const index = readFileSync(join(dir, 'index.html'), 'utf8').replace('%CSRF%', csrf);
  const SECURITY_HEADERS = securityHeaders(index);
  const live = new LiveFeed(options.backend, options.logger, encode);
  const ctx: ApiContext = {
    backend: options.backend,
    live,
    tree: options.tree ?? null,
    readOnly: Boolean(options.readOnly),
    hidePayloads: Boolean(options.hidePayloads),
  };

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS }).end(encode(body));
  };
  const refuse = (res: ServerResponse, status: number, code: string, message: string) => json(res, status, { error: { code, message } });

  const serveFile = async (res: ServerResponse, file: string) => {
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache', ...SECURITY_HEADERS }).end(body);
    } catch {
      refuse(res, 404, 'NOT_FOUND', 'no such file');
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (!hostAllowed(req, host)) return refuse(res, 421, 'MISDIRECTED', 'this dashboard answers to loopback host names only');
    // A link with ?token= logs the browser in: the token moves to a cookie the event stream sends too.
    const given = url.searchParams.get('token');
    if (method === 'GET' && given !== null && tokenMatches(given, auth)) {
      url.searchParams.delete('token');
      res
        .writeHead(303, {
          location: `${path}${url.search}`,
          'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/`,
        })
        .end();
      return;
    }
    if (!authorized(req, auth)) {
      res.writeHead(401, {
        'content-type': 'application/json; charset=utf-8',
        ...(auth.user ? { 'www-authenticate': 'Basic realm="naq dashboard", charset="UTF-8"' } : {}),
      });
      res.end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: auth.token ? 'open the dashboard with ?token=... or send Authorization: Bearer ...' : 'log in' } }));
      return;
    }
    if (method === 'POST') {
      if (ctx.readOnly) return refuse(res, 403, 'READ_ONLY', 'this dashboard is read-only (--read-only)');
      const why = crossSiteReason(req, csrf);
      if (why) return refuse(res, 403, 'CROSS_SITE', `refused ${why}: actions come from the dashboard's own pages`);
    } else if (method !== 'GET' && method !== 'HEAD') {
      return refuse(res, 405, 'METHOD_NOT_ALLOWED', `${method} is not allowed`);
    }

    if (path === '/metrics') {
      const metrics = await options.backend.metricsText();
      if (!metrics) return refuse(res, 404, 'NOT_FOUND', 'this process keeps no metrics');
      res.writeHead(200, { 'content-type': metrics.contentType }).end(scrub(metrics.body));
      return;
    }
    if (path === '/api/live') return live.attach(res);
    if (path.startsWith('/api/')) {
      const result = await handleApi(ctx, { method, path, query: url.searchParams, body: () => readBody(req) });
      return json(res, result.status, result.body);
    }
    if (vendor[path]) return serveFile(res, vendor[path]);
    if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': TYPES['.html']!, 'cache-control': 'no-store', ...SECURITY_HEADERS }).end(index);
      return;
    }
    const file = normalize(join(dir, path));
    if (!file.startsWith(dir + sep)) return refuse(res, 404, 'NOT_FOUND', 'no such file');
    return serveFile(res, file);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      options.logger.error({ err: error }, 'dashboard: request failed');
      if (!res.headersSent) refuse(res, 500, 'INTERNAL', 'the dashboard failed to answer');
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, host, () => resolve());
  });
  // A browser's open event stream must not hold a stopping process open.
  server.unref();
  live.start();
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/`,
    port,
    close: async () => {
      live.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

