/**
 * The dashboard's HTTP surface with plain fetch: what keeps it safe (read-only, cross-site
 * requests, a bind beyond loopback, auth), what it hides (payloads, the config's secrets),
 * and the CLI refusing a dashboard it may not start.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorTree, backendFromNaq, startDashboard, startDashboardFor, type DashboardServer } from '../../src/dashboard/index.js';
import { loadConfig, type NaqConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/core/errors.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { startServer, stopAllServers, type TestServer } from '../support/harness.js';
import { silent } from '../support/naqs.js';
import { runCli } from '../support/processes.js';

const SECRET = 'hunter2-very-secret';
const handlers = { echo: async (data: { text: string }) => ({ said: data.text }) };

let server: TestServer;
let naq: Naq<typeof handlers>;
let config: NaqConfig;
const dashboards: DashboardServer[] = [];

async function dashboardWith(options: Partial<Parameters<typeof startDashboard>[0]> = {}): Promise<DashboardServer> {
  const d = await startDashboard({ backend: backendFromNaq(naq), logger: silent, port: 0, secrets: [SECRET], ...options });
  dashboards.push(d);
  return d;
}

/** The page's CSRF token, as the dashboard's own scripts read it. */
async function csrfOf(d: DashboardServer, headers: Record<string, string> = {}): Promise<string> {
  const html = await (await fetch(d.url, { headers })).text();
  return /name="naq-csrf" content="([^"]+)"/.exec(html)![1]!;
}

beforeAll(async () => {
  server = await startServer();
  config = loadConfig({ flags: { nats: { url: server.url }, roles: ['producer', 'worker'], worker: { concurrency: 2 }, dashboard: { port: 0 } } });
  naq = createNaq(config, { logger: silent, handlers });
  await naq.start({ timeoutMs: 15_000 });
});

afterAll(async () => {
  await Promise.all(dashboards.map((d) => d.close()));
  await naq?.stop();
  await stopAllServers();
});

describe('dashboard API', () => {
  it('acts on a POST from its own page: the CSRF header, same origin', async () => {
    const d = await dashboardWith();
    const csrf = await csrfOf(d);
    const r = await fetch(`${d.url}api/queues/default/pause`, { method: 'POST', headers: { 'x-naq-csrf': csrf, origin: d.url.slice(0, -1) } });
    expect(r.status).toBe(200);
    expect((await naq.queueStats('default')).paused).toBe(true);
    const back = await fetch(`${d.url}api/queues/default/resume`, { method: 'POST', headers: { 'x-naq-csrf': csrf } });
    expect(back.status).toBe(200);
    expect((await naq.queueStats('default')).paused).toBe(false);
  });

  it('refuses a cross-site POST, with or without the token', async () => {
    const d = await dashboardWith();
    const csrf = await csrfOf(d);
    const forged: Array<Record<string, string>> = [
      {},
      { origin: 'http://evil.example' },
      { origin: 'http://evil.example', 'x-naq-csrf': csrf },
      { 'sec-fetch-site': 'cross-site', 'x-naq-csrf': csrf },
      { 'x-naq-csrf': 'guessed' },
    ];
    for (const headers of forged) {
      const r = await fetch(`${d.url}api/queues/default/pause`, { method: 'POST', headers });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('CROSS_SITE');
    }
    expect((await naq.queueStats('default')).paused).toBe(false);
  });

  it('answers only to loopback host names when bound to loopback (DNS rebinding)', async () => {
    const d = await dashboardWith();
    // fetch will not send another Host; node:http will, as a browser does for a rebound name.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      request({ host: '127.0.0.1', port: d.port, path: '/api/session', headers: { host: `attacker.example:${d.port}` } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
        .on('error', reject)
        .end();
    });
    expect(status).toBe(421);
    expect((await fetch(`http://localhost:${d.port}/api/session`)).status).toBe(200);
  });

  it('read-only: every action is refused with 403, reads still work', async () => {
    const d = await dashboardWith({ readOnly: true });
    const csrf = await csrfOf(d);
    expect(await (await fetch(`${d.url}api/session`)).json()).toMatchObject({ readOnly: true });
    for (const path of ['queues/default/pause', 'jobs/x/cancel', 'jobs/x/retry', 'schedules/s/run', 'queues/default/clean']) {
      const r = await fetch(`${d.url}api/${path}`, { method: 'POST', headers: { 'x-naq-csrf': csrf } });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('READ_ONLY');
    }
    expect((await fetch(`${d.url}api/overview`)).status).toBe(200);
    expect((await naq.queueStats('default')).paused).toBe(false);
  });

  it('refuses to bind beyond loopback without auth, naming the setting; the CLI exits 2', async () => {
    await expect(dashboardWith({ host: '0.0.0.0' })).rejects.toThrow(ConfigError);
    await expect(dashboardWith({ host: '0.0.0.0' })).rejects.toThrow(/dashboard\.token/);
    const cli = await runCli(['dashboard', '--host', '0.0.0.0', '--nats-url', server.url]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('dashboard.token');
    const half = await runCli(['dashboard', '--nats-url', server.url], { NAQ_DASHBOARD__USER: 'admin' });
    expect(half.code).toBe(2);
    expect(half.stderr).toContain('dashboard.password');
  }, 60_000);

  it('with a token: 401 without it; a bearer header, or a ?token= link that sets a cookie, gets in', async () => {
    const d = await dashboardWith({ host: '0.0.0.0', auth: { token: 'tok-123' } });
    const url = `http://127.0.0.1:${d.port}/`;
    expect((await fetch(`${url}api/session`)).status).toBe(401);
    expect((await fetch(`${url}api/session`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await fetch(`${url}api/session`, { headers: { authorization: 'Bearer tok-123' } })).status).toBe(200);
    expect((await fetch(`${url}metrics`)).status).toBe(401);
    const login = await fetch(`${url}?token=tok-123`, { redirect: 'manual' });
    expect(login.status).toBe(303);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    expect(login.headers.get('set-cookie')).toMatch(/HttpOnly; SameSite=Strict/);
    expect((await fetch(`${url}api/session`, { headers: { cookie } })).status).toBe(200);
    // Logged in is not enough to act: actions still need the page's CSRF token.
    const csrf = await csrfOf(d, { cookie });
    const r = await fetch(`${url}api/queues/default/pause`, { method: 'POST', headers: { cookie } });
    expect(r.status).toBe(403);
    const ok = await fetch(`${url}api/queues/default/resume`, { method: 'POST', headers: { cookie, 'x-naq-csrf': csrf } });
    expect(ok.status).toBe(200);
  });

  it('with basic auth: asks the browser to log in, and lets the right user in', async () => {
    const d = await dashboardWith({ auth: { user: 'ops', password: SECRET } });
    const none = await fetch(`${d.url}api/session`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
    expect((await fetch(`${d.url}api/session`, { headers: basic('ops', 'wrong') })).status).toBe(401);
    expect((await fetch(`${d.url}api/session`, { headers: basic('ops', SECRET) })).status).toBe(200);
  });

  it("hides payloads when asked, and never shows the config's secrets", async () => {
    const id = await naq.enqueue('echo', { text: `the password is ${SECRET}` });
    await naq.waitFor(id, { timeoutMs: 10_000 });
    const open = await dashboardWith();
    const shown = await (await fetch(`${open.url}api/jobs/${id}`)).text();
    expect(shown).toContain('the password is [redacted]');
    expect(shown).not.toContain(SECRET);
    const hidden = await dashboardWith({ hidePayloads: true });
    const body = (await (await fetch(`${hidden.url}api/jobs/${id}`)).json()) as { job: { result: unknown } };
    expect(body.job.result).toBe('[hidden]');
    expect(await (await fetch(`${hidden.url}api/session`)).json()).toMatchObject({ hidePayloads: true });
  });

  it('serves /metrics, the pages and their modules from the one server', async () => {
    const tree = new ActorTree();
    const metricsNaq = createNaq(config, { logger: silent, metrics: true, inspect: tree.observer, services: ['streams', 'kv', 'events', 'jobs'] });
    await metricsNaq.start({ timeoutMs: 15_000 });
    try {
      const d = await startDashboardFor(metricsNaq, config, silent, tree);
      dashboards.push(d);
      const metrics = await fetch(`${d.url}metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/^naq_connection_up 1$/m);
      for (const path of ['', 'app.js', 'charts.js', 'style.css', 'vendor/preact.js', 'vendor/preact-hooks.js', 'vendor/htm.js']) {
        expect((await fetch(`${d.url}${path}`)).status, path).toBe(200);
      }
      expect((await fetch(`${d.url}../../package.json`)).status).toBe(404);
      const system = (await (await fetch(`${d.url}api/system`)).json()) as { tree: unknown[]; workers: Array<{ queues: string[] }> };
      expect(system.tree[0]).toMatchObject({ id: 'supervisor', state: 'active.running' });
      // This process runs no worker: the worker of the other naq shows from its heartbeat.
      expect(system.workers.map((w) => w.queues)).toContainEqual(['default']);
    } finally {
      await metricsNaq.stop();
    }
  });
});
