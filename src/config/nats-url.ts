/**
 * `nats.url`: a comma-separated list of servers, each `scheme://[userinfo@]host[:port]` or
 * `host[:port]`. The one reader of it: validation, redaction, the secrets list and the
 * connection all go through `parseNatsUrls`, so they cannot disagree about where a password
 * ends.
 *
 * Rules for user info (`user:password@` or `token@`):
 * - it is percent-decoded (`p%40ss` is `p@ss`, `%3A` is `:`, `%25` is `%`); the first raw ':'
 *   separates user from password;
 * - it is refused when it cannot be read safely: more than one raw '@' in an entry, an '@'
 *   after a '/', '?' or '#', a '%' that starts no valid escape, or user info on an entry
 *   without a scheme (a comma inside a password splits the list and leaves exactly that);
 * - the NATS client sends one set of credentials to every server, so all entries that carry
 *   credentials must carry the same ones (entries without any use them too); different ones
 *   are refused rather than silently sending one server another server's password.
 */
import { REDACTED } from '../core/secret-keys.js';

export const NATS_URL_SCHEMES = ['nats', 'tls', 'ws', 'wss'] as const;
export const DEFAULT_NATS_SERVER = 'nats://127.0.0.1:4222';

export const NATS_URL_FORM =
  'one or more comma-separated nats://, tls://, ws:// or wss:// URLs or host:port';

/** Credentials taken from a URL's user info, decoded. */
export type UrlCredentials = { user: string; pass: string } | { token: string };

export interface NatsUrls {
  /** The servers as the client gets them: user info removed, scheme and port kept. */
  servers: string[];
  /** The credentials the URLs carry, if any (the same for every server). */
  credentials?: UrlCredentials;
}

/**
 * Why a value was refused. `form`: not a list of NATS URLs at all (reported with the
 * expected form). `credentials`: the URLs are fine but their user info cannot be used; the
 * message names the entry and shows the value redacted.
 */
export type NatsUrlProblem = { kind: 'form' } | { kind: 'credentials'; message: string };

export type NatsUrlParse = { ok: true; value: NatsUrls } | { ok: false; problem: NatsUrlProblem };

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

const PERCENT_ENCODE_HINT =
  'percent-encode the user name and password ("@" as %40, ":" as %3A, "/" as %2F, "," as %2C, "%" as %25)';

export function natsUrlEntries(url: string): string[] {
  return url
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

/** An entry cut at the '@' that ends its user info. */
interface EntryParts {
  /** `nats://` or '' */
  scheme: string;
  /** The raw text before the '@', undefined when there is no '@'. */
  userinfo: string | undefined;
  /** host[:port] and anything after it */
  rest: string;
}

type Cut = { ok: true; parts: EntryParts } | { ok: false; why: string };

/**
 * Finds the user info without guessing: an entry whose user info end is unclear is refused,
 * because a wrong guess sends part of the password to the network as a host name.
 */
function cutEntry(entry: string): Cut {
  const scheme = SCHEME.exec(entry)?.[0] ?? '';
  const body = entry.slice(scheme.length);
  const at = body.indexOf('@');
  if (at === -1) return { ok: true, parts: { scheme, userinfo: undefined, rest: body } };
  if (body.indexOf('@', at + 1) !== -1) return { ok: false, why: 'has more than one "@"' };
  const authorityEnd = body.search(/[/?#]/);
  if (authorityEnd !== -1 && authorityEnd < at) return { ok: false, why: 'has an "@" after a "/", "?" or "#"' };
  if (scheme === '') return { ok: false, why: 'has user info but no scheme (write nats://user:password@host)' };
  return { ok: true, parts: { scheme, userinfo: body.slice(0, at), rest: body.slice(at + 1) } };
}

function decode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

type Decoded = { ok: true; credentials: UrlCredentials | undefined } | { ok: false; why: string };

function decodeUserinfo(userinfo: string): Decoded {
  // `nats://@host` carries nothing; the client would get no credentials from it either way.
  if (userinfo === '') return { ok: true, credentials: undefined };
  const colon = userinfo.indexOf(':');
  const parts = colon === -1 ? [userinfo] : [userinfo.slice(0, colon), userinfo.slice(colon + 1)];
  const decoded = parts.map(decode);
  if (decoded.some((part) => part === undefined)) {
    return { ok: false, why: 'has a "%" that does not start a valid percent-escape' };
  }
  const [first = '', second = ''] = decoded as string[];
  return { ok: true, credentials: colon === -1 ? { token: first } : { user: first, pass: second } };
}

function isValidServer(server: string): boolean {
  const scheme = SCHEME.exec(server)?.[1]?.toLowerCase();
  if (scheme !== undefined && !(NATS_URL_SCHEMES as readonly string[]).includes(scheme)) return false;
  // host[:port] without a scheme must not smuggle in a path or query.
  if (scheme === undefined && /[/?#\s]/.test(server)) return false;
  try {
    return new URL(scheme === undefined ? `nats://${server}` : server).hostname !== '';
  } catch {
    return false;
  }
}

const sameCredentials = (a: UrlCredentials, b: UrlCredentials): boolean =>
  'token' in a ? 'token' in b && a.token === b.token : 'user' in b && a.user === b.user && a.pass === b.pass;

const ordinal = (n: number): string => {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
};

/** Reads a `nats.url` value; never throws, and no problem message contains a secret. */
export function parseNatsUrls(url: string): NatsUrlParse {
  const entries = natsUrlEntries(url);
  if (entries.length === 0) return { ok: false, problem: { kind: 'form' } };
  const refuse = (index: number, why: string): NatsUrlParse => ({
    ok: false,
    problem: {
      kind: 'credentials',
      message: `expected percent-encoded credentials: the ${ordinal(index + 1)} URL in ${JSON.stringify(redactRefusedNatsUrl(url))} ${why}; ${PERCENT_ENCODE_HINT}`,
    },
  });
  const servers: string[] = [];
  const found: { credentials: UrlCredentials; index: number }[] = [];
  for (const [index, entry] of entries.entries()) {
    const cut = cutEntry(entry);
    if (!cut.ok) return refuse(index, cut.why);
    servers.push(cut.parts.scheme + cut.parts.rest);
    if (cut.parts.userinfo === undefined) continue;
    const decoded = decodeUserinfo(cut.parts.userinfo);
    if (!decoded.ok) return refuse(index, decoded.why);
    if (decoded.credentials !== undefined) found.push({ credentials: decoded.credentials, index });
  }
  // Only now, with every entry cut cleanly, is showing the entries one by one safe.
  const [first, ...others] = found;
  const differing = others.find((other) => first !== undefined && !sameCredentials(first.credentials, other.credentials));
  if (first !== undefined && differing !== undefined) {
    return {
      ok: false,
      problem: {
        kind: 'credentials',
        message:
          `expected the same credentials in every URL: the ${ordinal(first.index + 1)} and ` +
          `${ordinal(differing.index + 1)} URLs in ${JSON.stringify(redactEntries(url))} differ, and the NATS client ` +
          'sends one set to every server; give them once, or in nats.user / nats.password / nats.token',
      },
    };
  }
  if (!servers.every(isValidServer)) return { ok: false, problem: { kind: 'form' } };
  return { ok: true, value: first === undefined ? { servers } : { servers, credentials: first.credentials } };
}

function redactEntry(entry: string): string {
  const cut = cutEntry(entry);
  if (!cut.ok) return redactUpToLastAt(entry);
  const { scheme, userinfo, rest } = cut.parts;
  if (userinfo === undefined) return entry;
  const colon = userinfo.indexOf(':');
  // With no ':' the user info is a token (nats://token@host), which is itself the secret.
  const kept = colon === -1 ? REDACTED : `${userinfo.slice(0, colon)}:${REDACTED}`;
  return `${scheme}${kept}@${rest}`;
}

/**
 * Where a secret could be when the user info cannot be cut: everything between the (first)
 * scheme and the last '@'.
 */
function suspectStretch(text: string): { start: number; end: number } | undefined {
  const end = text.lastIndexOf('@');
  if (end === -1) return undefined;
  const lead = text.length - text.trimStart().length;
  return { start: lead + (SCHEME.exec(text.slice(lead))?.[0].length ?? 0), end };
}

function redactUpToLastAt(text: string): string {
  const stretch = suspectStretch(text);
  return stretch === undefined ? text : text.slice(0, stretch.start) + REDACTED + text.slice(stretch.end);
}

/**
 * A `nats.url` value safe to show: passwords and tokens replaced by '[redacted]', user names
 * kept. A value the parser refuses is hidden from its first scheme to its last '@', since a
 * raw ',' or '@' in a password leaves no telling which pieces are secret.
 */
export function redactNatsUrl(url: string): string {
  return parseNatsUrls(url).ok ? redactEntries(url) : redactRefusedNatsUrl(url);
}

/** Each entry's user info redacted: safe once every entry was cut without guessing. */
function redactEntries(url: string): string {
  return url
    .split(',')
    .map((entry) => {
      const trimmed = entry.trim();
      return trimmed === '' ? entry : entry.replace(trimmed, () => redactEntry(trimmed));
    })
    .join(',');
}

function redactRefusedNatsUrl(url: string): string {
  return url.includes('@') ? redactUpToLastAt(url) : url;
}

/**
 * The secret strings a `nats.url` value holds, raw and decoded (the client and its errors may
 * show either). For a value the parser refuses, every stretch that might be a secret.
 */
export function natsUrlSecrets(url: string): string[] {
  const parsed = parseNatsUrls(url);
  const secrets: string[] = [];
  if (parsed.ok) {
    for (const entry of natsUrlEntries(url)) {
      const cut = cutEntry(entry);
      const userinfo = cut.ok ? cut.parts.userinfo : undefined;
      if (userinfo === undefined || userinfo === '') continue;
      const colon = userinfo.indexOf(':');
      secrets.push(colon === -1 ? userinfo : userinfo.slice(colon + 1));
    }
    const creds = parsed.value.credentials;
    if (creds !== undefined) secrets.push('token' in creds ? creds.token : creds.pass);
  } else {
    // Each entry's stretch, and the whole value's: a raw ',' may have split a password.
    for (const text of [...natsUrlEntries(url), url]) {
      const stretch = suspectStretch(text);
      if (stretch === undefined) continue;
      const hidden = text.slice(stretch.start, stretch.end);
      const colon = hidden.indexOf(':');
      secrets.push(hidden, ...(colon === -1 ? [] : [hidden.slice(colon + 1)]));
    }
    for (const piece of [...secrets]) {
      const decoded = decode(piece);
      if (decoded !== undefined) secrets.push(decoded);
    }
  }
  return [...new Set(secrets.filter((s) => s !== ''))];
}
