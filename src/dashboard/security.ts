/**
 * What keeps the dashboard safe by default: who may look (a token or basic auth, required for
 * any bind beyond loopback), that actions come from the dashboard's own pages (a per-process
 * token in a custom header plus a same-origin check: a cross-site form or fetch can send
 * neither), and that a loopback dashboard answers only to loopback host names (so a rebinding
 * DNS name cannot turn a visited web page into a client of it).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ConfigError } from '../core/errors.js';

export interface DashboardAuth {
  token?: string | undefined;
  user?: string | undefined;
  password?: string | undefined;
}

export const CSRF_HEADER = 'x-naq-csrf';
export const TOKEN_COOKIE = 'naq_dashboard_token';
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost', '[::1]']);

export function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function hasAuth(auth: DashboardAuth): boolean {
  return Boolean(auth.token || (auth.user && auth.password));
}

/** Refuses a bind beyond loopback without auth, naming what to set. */
export function checkBind(host: string, auth: DashboardAuth): void {
  if (!isLoopback(host) && !hasAuth(auth)) {
    throw new ConfigError(
      'dashboard.token',
      `the dashboard binds to ${host}, beyond this machine, so it needs auth: set dashboard.token (env NAQ_DASHBOARD__TOKEN) or dashboard.user and dashboard.password, or bind to 127.0.0.1`,
    );
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest();
const same = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

/** True when the request carries the configured token (header, cookie) or basic credentials; always true without auth. */
export function authorized(req: IncomingMessage, auth: DashboardAuth): boolean {
  if (!hasAuth(auth)) return true;
  const header = req.headers.authorization ?? '';
  if (auth.token) {
    if (header.startsWith('Bearer ') && same(header.slice(7), auth.token)) return true;
    const fromCookie = cookie(req, TOKEN_COOKIE);
    if (fromCookie !== undefined && same(fromCookie, auth.token)) return true;
  }
  if (auth.user && auth.password && header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0 && same(decoded.slice(0, colon), auth.user) && same(decoded.slice(colon + 1), auth.password)) return true;
  }
  return false;
}

export function tokenMatches(given: string, auth: DashboardAuth): boolean {
  return Boolean(auth.token) && same(given, auth.token!);
}

export function newCsrfToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Why an action request is not from the dashboard's own page, or null when it is. */
export function crossSiteReason(req: IncomingMessage, csrfToken: string): string | null {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `a ${site} request`;
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== 'null') {
    let originHost: string;
    try {
      originHost = new URL(origin).host;
    } catch {
      return 'a request with a malformed Origin';
    }
    if (originHost !== req.headers.host) return `a request from ${origin}`;
  } else if (origin === 'null') {
    return 'a request from an opaque origin';
  }
  const given = req.headers[CSRF_HEADER];
  if (typeof given !== 'string' || !same(given, csrfToken)) return `a request without the dashboard's ${CSRF_HEADER} header`;
  return null;
}

/** A loopback dashboard answers only to loopback names in Host (DNS rebinding). */
export function hostAllowed(req: IncomingMessage, boundHost: string): boolean {
  if (!isLoopback(boundHost)) return true;
  const host = req.headers.host ?? '';
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  return isLoopback(name);
}
