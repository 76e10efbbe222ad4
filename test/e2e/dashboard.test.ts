/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core (no browser
 * download), against a naq with a worker and a scheduler on a throwaway nats-server. Each test
 * drives the pages as an operator would and waits for what the page shows, never reloading:
 * the counts move by the live stream. The main pages are saved as screenshots: to
 * test-results/screenshots/ (not tracked), or with NAQ_UPDATE_SCREENSHOTS=1 to
 * docs/screenshots/, which the README shows, so a plain test run leaves the tree clean.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ActorTree, backendFromNaq, startDashboard, startDashboardFor, type DashboardServer } from '../../src/dashboard/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { JobContext } from '../../src/actors/worker/handler.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { startServer, stopAllServers, until, type TestServer } from '../support/harness.js';
import { silent } from '../support/naqs.js';
import { ROOT } from '../support/paths.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p)) ?? '/usr/bin/chromium';
const SHOTS = join(ROOT, process.env.NAQ_UPDATE_SCREENSHOTS === '1' ? 'docs/screenshots' : 'test-results/screenshots');

/** `picky` fails while this is set: the test repairs it before retrying the dead job. */
let pickyBroken = true;
const handlers = {
  work: async (data: { ms: number }) => {
    await new Promise((r) => setTimeout(r, data.ms));
    return { slept: data.ms };
  },
  resize: async (data: { width: number }, ctx: JobContext) => {
    ctx.progress(100);
    return { width: data.width };
  },
  picky: async (data: { invoice: string }, ctx: JobContext) => {
    ctx.log.info(`checking invoice ${data.invoice}`);
    if (pickyBroken) throw new Error(`invoice ${data.invoice} was refused by the ledger`, { cause: new Error('ledger answered 503') });
    return { booked: data.invoice };
  },
};

let server: TestServer;
let naq: Naq<typeof handlers>;
let dashboard: DashboardServer;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  server = await startServer();
  const config = loadConfig({
    flags: {
      nats: { url: server.url },
      roles: ['producer', 'worker', 'scheduler'],
      worker: { queues: ['default', 'emails'], concurrency: 2, heartbeatMs: 300, ackWaitMs: 5000, drainGraceMs: 500 },
      reconnect: { timeWaitMs: 100 },
      supervisor: { stopTimeoutMs: 3000 },
      dashboard: { port: 0 },
    },
  });
  const tree = new ActorTree();
  naq = createNaq(config, { logger: silent, handlers, inspect: tree.observer, metrics: true });
  await naq.start({ timeoutMs: 15_000 });
  dashboard = await startDashboardFor(naq, config, silent, tree);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  // A script error or a blocked script (the content security policy) fails the test it happened in.
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content.Security.Policy|SyntaxError|TypeError|ReferenceError/i.test(message.text())) pageErrors.push(message.text());
  });
  await mkdir(SHOTS, { recursive: true });
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await dashboard?.close();
  await naq?.stop();
  await stopAllServers();
});

afterEach(() => {
  expect(pageErrors.splice(0)).toEqual([]);
});

/** Saves a page for the README; a toast left over from an earlier step is not part of it. */
async function shot(name: string, options: { fullPage?: boolean; keepToast?: boolean } = {}) {
  const hide = options.keepToast ? null : await page.addStyleTag({ content: '.toast { display: none }' });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: options.fullPage ?? false });
  await hide?.evaluate((style) => (style as unknown as { remove(): void }).remove());
}

const cell = (queue: string, what: string) => page.locator(`tr[data-queue="${queue}"] [data-testid="${what}"]`);
const number = async (queue: string, what: string) => Number(await cell(queue, what).textContent());

// Generous: the whole suite shares two cores with this browser.
describe('the dashboard in a browser', { timeout: 60_000 }, () => {
  it("shows a queue's counts change live while jobs run", async () => {
    await naq.pauseQueue('emails');
    await until(() => /hold\.held/.test(naq.health().actors['worker:emails']?.state ?? ''), 10_000);
    await page.goto(dashboard.url);
    await naq.enqueueBulk(Array.from({ length: 12 }, () => ({ name: 'work' as const, data: { ms: 100 }, opts: { queue: 'emails' } })));
    // Paused, so the jobs wait: the page shows them without a reload...
    await page.locator('tr[data-queue="emails"] [data-testid="pending"]', { hasText: '12' }).waitFor({ timeout: 10_000 });
    await naq.resumeQueue('emails');
    // ...and shows them drain, then counted as completed in the last 15 minutes.
    await until(async () => (await number('emails', 'pending')) === 0 && (await number('emails', 'completed15')) >= 12, 15_000);
    await shot('overview');
  });

  it("shows a queue's rate limit on the overview and on its page, its group limits, a job's priority and group", async () => {
    await naq.setQueueLimit('reports', { max: 50, durationMs: 1000 });
    await page.goto(dashboard.url);
    await page.locator('tr[data-queue="reports"] [data-testid="limit"]', { hasText: '50 / 1s' }).waitFor({ timeout: 10_000 });
    await page.goto(`${dashboard.url}#/queue/reports`);
    await page.getByTestId('q-limit').filter({ hasText: '50 / 1s' }).waitFor({ timeout: 10_000 });
    await naq.setQueueLimit('reports', null);
    await naq.setGroupLimit('reports', { concurrency: 2, rate: { max: 100, durationMs: 60_000 } });
    await page.reload();
    await page.getByTestId('q-groups').filter({ hasText: '2 running, 100 / 60s' }).waitFor({ timeout: 10_000 });
    await naq.setGroupLimit('reports', null);
    // A job's priority and group are on its page (a queue no worker serves: it waits).
    const id = await naq.enqueue('work', { ms: 1 }, { queue: 'nobody-here', priority: 2, group: 'tenant-7' });
    await page.goto(`${dashboard.url}#/job/${id}`);
    await page.getByTestId('job-priority').filter({ hasText: '2' }).waitFor({ timeout: 10_000 });
    await expect(page.getByTestId('job-group').textContent()).resolves.toBe('tenant-7');
  });

  it("shows a flow parent's tree with each node's state, and a child's link to its parent", async () => {
    const flow = await naq.enqueueFlow({ name: 'work', queue: 'nobody-here', children: [{ name: 'work', data: { ms: 1 }, queue: 'nobody-here', onFailure: 'ignore' }, { name: 'work', queue: 'nobody-here', children: [{ name: 'work', queue: 'nobody-here' }] }] });
    await page.goto(`${dashboard.url}#/job/${flow.id}`);
    const root = page.locator(`[data-testid="flow"] li[data-node="${flow.id}"]`);
    await root.waitFor({ timeout: 10_000 });
    await expect(root.textContent()).resolves.toContain('waiting');
    const [leaf, inner] = flow.children!;
    await expect(page.locator(`li[data-node="${leaf!.id}"]`).textContent()).resolves.toMatch(/pending.*onFailure ignore/);
    await expect(page.locator(`li[data-node="${inner!.id}"] li[data-node="${inner!.children![0]!.id}"]`).textContent()).resolves.toContain('pending');
    await page.locator(`li[data-node="${leaf!.id}"] a`).first().click();
    await expect(page.getByTestId('job-parent').textContent()).resolves.toBe(flow.id);
  });

  it('opens a failed job, reads its error, retries it and sees it complete', async () => {
    const id = await naq.enqueue('picky', { invoice: 'INV-42' }, { jobId: 'invoice-42', attempts: 2, backoff: { type: 'fixed', delay: 50 } });
    await until(async () => (await naq.getJob(id))?.deadSeq !== undefined, 10_000);
    await page.goto(`${dashboard.url}#/job/${id}`);
    await expect.poll(() => page.getByTestId('job-error').first().textContent(), { timeout: 10_000 }).toContain('invoice INV-42 was refused by the ledger');
    await expect(page.getByTestId('job-error').nth(1).textContent()).resolves.toContain('ledger answered 503');
    // The handler's stack, from the record: its frames, under the message.
    await expect(page.getByTestId('job-error').first().textContent()).resolves.toMatch(/refused by the ledger\n\s+at picky \(.*dashboard\.test\.ts/);
    await expect(page.getByTestId('job-state').textContent()).resolves.toBe('dead');
    // The data, read back from the dead letter: the record does not keep it.
    await expect(page.getByTestId('job-data').textContent()).resolves.toContain('INV-42');
    // What the handler logged, both attempts.
    await expect(page.getByTestId('job-logs').textContent()).resolves.toMatch(/#1.*checking invoice INV-42.*#2.*checking invoice INV-42/);
    await shot('job', { fullPage: true });

    pickyBroken = false;
    await page.getByTestId('retry').click();
    await page.getByTestId('job-state').filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
    await expect(page.getByTestId('job-result').textContent()).resolves.toContain('INV-42');

    // Found again from its queue's page by its id.
    await page.goto(`${dashboard.url}#/queue/default`);
    await page.getByTestId('search-id').fill(id);
    await page.getByTestId('search-id').press('Enter');
    const row = page.locator(`tr[data-job="${id}"]`);
    await row.waitFor({ timeout: 10_000 });
    await expect(row.textContent()).resolves.toMatch(/picky.*completed/);
  });

  it('pauses a queue from its page, and its workers stop taking jobs until resumed', async () => {
    await page.goto(`${dashboard.url}#/queue/default`);
    await page.getByTestId('pause').click();
    // The worker machine has taken the pause (it holds its pulls): then nothing new starts.
    await until(() => /hold\.held/.test(naq.health().actors['worker:default']?.state ?? ''), 10_000);
    await naq.enqueueBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'work' as const, data: { ms: 10 }, opts: { jobId: `held-${i}` } })));
    await page.getByTestId('q-pending').filter({ hasText: '3' }).waitFor({ timeout: 10_000 });
    // Held for a while by a paused queue, not merely not yet picked up.
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect((await naq.getJob('held-0'))?.status).toBe('pending');
    }
    await page.getByTestId('resume').click();
    await page.getByTestId('q-pending').filter({ hasText: /^0$/ }).waitFor({ timeout: 10_000 });
    await until(async () => (await naq.getJob('held-2'))?.status === 'completed', 10_000);
  });

  it("lists a queue's jobs by state a page at a time, finds them by name, retries the dead and cleans the completed", async () => {
    pickyBroken = true;
    await naq.enqueueBulk(Array.from({ length: 7 }, (_, i) => ({ name: 'work' as const, data: { ms: 1 }, opts: { queue: 'emails', jobId: `mail-${i}` } })));
    await naq.enqueueBulk(Array.from({ length: 3 }, (_, i) => ({ name: 'picky' as const, data: { invoice: `B-${i}` }, opts: { queue: 'emails', jobId: `bill-${i}` } })));
    await until(async () => (await Promise.all([0, 1, 2].map((i) => naq.getJob(`bill-${i}`)))).every((j) => j?.deadSeq !== undefined), 10_000);
    await until(async () => (await naq.getJob('mail-6'))?.status === 'completed', 10_000);

    // Completed, five to a page, newest first; the next page goes on where the first stopped.
    await page.goto(`${dashboard.url}#/queue/emails?state=completed&limit=5`);
    const rows = page.locator('table[data-testid="jobs"] tbody tr[data-job]');
    await until(async () => (await rows.count()) === 5, 10_000);
    const first = await rows.evaluateAll((trs) => trs.map((tr) => (tr as unknown as { dataset: { job: string } }).dataset.job));
    await page.getByTestId('next-page').click();
    await until(async () => (await rows.count()) > 0 && !first.includes((await rows.first().getAttribute('data-job'))!), 10_000);
    const second = await rows.evaluateAll((trs) => trs.map((tr) => (tr as unknown as { dataset: { job: string } }).dataset.job));
    expect(second.filter((id) => first.includes(id))).toEqual([]);

    // Dead, found by name, all retried at once once the ledger answers again.
    await page.goto(`${dashboard.url}#/queue/emails?state=dead`);
    await page.getByTestId('search-name').fill('picky');
    await page.getByTestId('search-name').press('Enter');
    await until(async () => (await rows.count()) === 3, 10_000);
    await shot('queue');
    pickyBroken = false;
    await page.getByTestId('retry-all').click();
    await page.getByTestId('toast').filter({ hasText: '3 retried' }).waitFor({ timeout: 10_000 });
    await until(async () => (await Promise.all([0, 1, 2].map((i) => naq.getJob(`bill-${i}`)))).every((j) => j?.status === 'completed'), 10_000);

    // Completed, cleaned: the tab empties.
    page.once('dialog', (dialog) => void dialog.accept());
    await page.goto(`${dashboard.url}#/queue/emails?state=completed`);
    await rows.first().waitFor({ timeout: 10_000 });
    await page.getByTestId('clean').click();
    await page.getByTestId('toast').filter({ hasText: 'removed' }).waitFor({ timeout: 10_000 });
    await until(async () => (await rows.count()) === 0, 10_000);
  });

  it("shows the workers' heartbeats and, on the system page, a worker's and the leader's state", async () => {
    await page.goto(`${dashboard.url}#/workers`);
    const row = page.locator('table[data-testid="workers"] tbody tr[data-worker]');
    // One heartbeat per queue a worker serves.
    await until(async () => (await row.count()) === 2, 10_000);
    const shown = await row.allTextContents();
    expect(shown.some((t) => t.includes('emails') && t.includes('running'))).toBe(true);
    expect(shown.some((t) => t.includes('default') && t.includes('running'))).toBe(true);
    await shot('workers');

    await page.goto(`${dashboard.url}#/system`);
    const worker = page.locator('li[data-actor="worker:default"] > .node [data-testid="actor-state"]');
    await expect.poll(() => worker.textContent(), { timeout: 10_000 }).toContain('running');
    await expect(page.locator('li[data-actor="leader"] > .node [data-testid="actor-state"]').textContent()).resolves.toBe('leader');
    await expect(page.locator('li[data-actor="connection"] > .node').textContent()).resolves.toContain(`server 127.0.0.1:${server.port}`);
    await expect(page.getByTestId('leader').textContent()).resolves.toContain(`pid ${process.pid}`);
    await shot('system', { fullPage: true });
  });

  it('a read-only dashboard shows no action; a token-protected one logs the browser in from a link and stays live', async () => {
    const readOnly = await startDashboard({ backend: backendFromNaq(naq), logger: silent, port: 0, readOnly: true });
    const guarded = await startDashboard({ backend: backendFromNaq(naq), logger: silent, port: 0, auth: { token: 'let-me-in' } });
    try {
      const id = await naq.enqueue('work', { ms: 1 }, { jobId: 'seen-read-only' });
      await naq.waitFor(id, { timeoutMs: 10_000 });
      await page.goto(`${readOnly.url}#/job/${id}`);
      await page.getByTestId('job-state').filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
      await expect(page.getByTestId('live').textContent()).resolves.toContain('read-only');
      for (const action of ['retry', 'cancel', 'promote', 'remove']) expect(await page.getByTestId(action).count(), action).toBe(0);
      await page.goto(`${readOnly.url}#/`);
      await page.locator('tr[data-queue="default"]').waitFor({ timeout: 10_000 });
      expect(await page.getByTestId('pause').count()).toBe(0);

      const refused = await page.goto(guarded.url);
      expect(refused?.status()).toBe(401);
      await page.goto(`${guarded.url}?token=let-me-in#/system`);
      expect(page.url()).not.toContain('let-me-in');
      // The event stream carries the cookie too: the page says it is live.
      await page.getByTestId('live').filter({ hasText: /^live/ }).waitFor({ timeout: 10_000 });
      await page.getByTestId('leader').filter({ hasText: `pid ${process.pid}` }).waitFor({ timeout: 10_000 });
    } finally {
      await readOnly.close();
      await guarded.close();
    }
  });

  it('lists schedules and runs one now', async () => {
    await naq.schedule('hourly-resize', { every: 3_600_000 }, 'resize', { width: 64 });
    await page.goto(`${dashboard.url}#/schedules`);
    const row = page.locator('tr[data-schedule="hourly-resize"]');
    await row.waitFor({ timeout: 10_000 });
    await expect(row.textContent()).resolves.toContain('every 1h 0m');
    await row.getByTestId('run-now').click();
    const toast = await page.getByTestId('toast').filter({ hasText: 'enqueued job' }).textContent({ timeout: 10_000 });
    const jobId = /enqueued job (\S+)/.exec(toast ?? '')![1]!;
    await shot('schedules', { keepToast: true });
    expect(await naq.waitFor(jobId, { timeoutMs: 10_000 })).toEqual({ width: 64 });
    await page.getByTestId('toast').getByText('open').click();
    await page.getByTestId('job-state').filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
    await expect(page.getByTestId('job-id').textContent()).resolves.toBe(jobId);

    // The overview for the README, last, when the queues have a history to show.
    await page.goto(dashboard.url);
    await until(async () => (await number('default', 'failed15')) > 0, 10_000);
    await shot('overview');
  });
});
