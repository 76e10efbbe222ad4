/**
 * Testing the handlers of handlers.ts both ways, as a user of naq would:
 * - with `createTestNaq` from `naq/testing`: no NATS, the real job path, time moved by hand
 *   (a retry's backoff and a 30 s timeout cost no real time);
 * - with `startTestServer` (a throwaway nats-server) and `createNaq`: the real thing, end to end.
 * The same fakes of the shop's services serve both.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createNaq, JobFailedError, type Naq } from 'naq';
import { createTestNaq, startTestServer, type TestServer } from 'naq/testing';
import { makeHandlers, type ShopHandlers, type ShopServices } from './handlers.js';

/** The shop's services, faked: the provider fails its first `chargeFailures` charges; the reports service may hang. */
function fakeServices(options: { chargeFailures?: number; reportHangs?: boolean } = {}) {
  let failures = options.chargeFailures ?? 0;
  const calls = { charges: 0, mails: [] as string[] };
  const services: ShopServices = {
    async charge(orderId) {
      calls.charges++;
      if (failures-- > 0) throw Object.assign(new Error('provider unavailable'), { code: 'PROVIDER_503' });
      return { chargeId: `ch_${orderId}` };
    },
    report: (_month, signal) =>
      options.reportHangs
        ? new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
        : Promise.resolve({ rows: 42 }),
    async mail(to) {
      calls.mails.push(to);
    },
  };
  return { services, calls };
}

const failure = (promise: Promise<unknown>) => promise.then(() => null, (e: unknown) => e as JobFailedError);

describe('shop handlers without NATS (createTestNaq)', () => {
  it('chargeOrder retries with exponential backoff until the provider answers', async () => {
    const { services, calls } = fakeServices({ chargeFailures: 2 });
    const naq = createTestNaq({ handlers: makeHandlers(services) });
    const id = await naq.enqueue('chargeOrder', { orderId: 'o-1', cents: 1299 }, { attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
    await naq.runUntilIdle();
    expect(calls.charges).toBe(1);
    expect(await naq.getJob(id)).toMatchObject({ status: 'retrying', attempts: [{ n: 1, error: { code: 'PROVIDER_503' } }] });
    await naq.advance(1000);
    expect(calls.charges).toBe(2);
    // The second retry waits twice as long.
    await naq.advance(1999);
    expect(calls.charges).toBe(2);
    await naq.advance(1);
    const record = await naq.getJob(id);
    expect(record).toMatchObject({ status: 'completed', result: { orderId: 'o-1', chargeId: 'ch_o-1' } });
    expect(record!.logs!.map((l) => l.msg)).toEqual(['charging o-1 (attempt 1 of 5)', 'charging o-1 (attempt 2 of 5)', 'charging o-1 (attempt 3 of 5)']);
  });

  it('buildReport fails with JOB_TIMEOUT when the reports service hangs (30 virtual seconds, no real wait)', async () => {
    const { services } = fakeServices({ reportHangs: true });
    const naq = createTestNaq({ handlers: makeHandlers(services) });
    const started = naq.clock.now();
    const id = await naq.enqueue('buildReport', { month: '2030-01' }, { timeoutMs: 30_000 });
    const error = await failure(naq.waitFor(id));
    expect(error).toBeInstanceOf(JobFailedError);
    expect(error!.error).toMatchObject({ code: 'JOB_TIMEOUT' });
    expect(naq.clock.now() - started).toBe(30_000);
    expect(naq.deadLetters.map((d) => d.jobId)).toEqual([id]);
  });

  it('sendReceipt runs after the charge completed, and not at all when the charge failed for good', async () => {
    const { services, calls } = fakeServices({ chargeFailures: 2 });
    const naq = createTestNaq({ handlers: makeHandlers(services) });
    const charge = await naq.enqueue('chargeOrder', { orderId: 'o-2', cents: 500 }, { attempts: 3, backoff: { type: 'fixed', delay: 60_000 } });
    const receipt = await naq.enqueue('sendReceipt', { orderId: 'o-2', email: 'ann@example.com' }, { dependsOn: [charge] });
    await naq.drain();
    expect(await naq.getJob(receipt)).toMatchObject({ status: 'completed', result: { sentTo: 'ann@example.com' } });
    expect(calls.mails).toEqual(['ann@example.com']);

    const broken = fakeServices({ chargeFailures: 10 });
    const naq2 = createTestNaq({ handlers: makeHandlers(broken.services) });
    const charge2 = await naq2.enqueue('chargeOrder', { orderId: 'o-3', cents: 500 }, { attempts: 2 });
    const receipt2 = await naq2.enqueue('sendReceipt', { orderId: 'o-3', email: 'bob@example.com' }, { dependsOn: [charge2] });
    const error = await failure(naq2.waitFor(receipt2));
    expect(error!.error).toMatchObject({ code: 'DEPENDENCY_FAILED', message: `dependency ${charge2} failed` });
    expect(broken.calls.mails).toEqual([]);
  });
});

describe('shop handlers against a real nats-server (startTestServer + createNaq)', () => {
  let server: TestServer;
  let naq: Naq<ShopHandlers> | undefined;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterEach(async () => {
    await naq?.stop();
    naq = undefined;
  });
  afterAll(() => server?.stop());

  /** A worker and producer in one process, on the throwaway server. */
  async function start(services: ShopServices): Promise<Naq<ShopHandlers>> {
    naq = createNaq({ nats: { url: server.url }, roles: ['worker'], worker: { queues: ['default'] }, log: { level: 'error' } }, { handlers: makeHandlers(services) });
    await naq.start({ timeoutMs: 15_000 });
    return naq;
  }

  it('chargeOrder retries until the provider answers', async () => {
    const { services, calls } = fakeServices({ chargeFailures: 2 });
    const naq = await start(services);
    const id = await naq.enqueue('chargeOrder', { orderId: 'o-1', cents: 1299 }, { attempts: 5, backoff: { type: 'fixed', delay: 100 } });
    expect(await naq.waitFor(id)).toEqual({ orderId: 'o-1', chargeId: 'ch_o-1' });
    expect(calls.charges).toBe(3);
    expect((await naq.getJob(id))!.attempts.map((a) => a.error?.code ?? 'ok')).toEqual(['PROVIDER_503', 'PROVIDER_503', 'ok']);
  });

  it('buildReport fails with JOB_TIMEOUT when the reports service hangs', async () => {
    const naq = await start(fakeServices({ reportHangs: true }).services);
    const id = await naq.enqueue('buildReport', { month: '2030-01' }, { timeoutMs: 300 });
    const error = await failure(naq.waitFor(id));
    expect(error).toBeInstanceOf(JobFailedError);
    expect(error!.error).toMatchObject({ code: 'JOB_TIMEOUT' });
  });

  it('sendReceipt runs after the charge completed', async () => {
    const { services, calls } = fakeServices({ chargeFailures: 1 });
    const naq = await start(services);
    const charge = await naq.enqueue('chargeOrder', { orderId: 'o-2', cents: 500 }, { attempts: 2, backoff: { type: 'fixed', delay: 100 } });
    const receipt = await naq.enqueue('sendReceipt', { orderId: 'o-2', email: 'ann@example.com' }, { dependsOn: [charge] });
    expect(await naq.waitFor(receipt)).toEqual({ sentTo: 'ann@example.com' });
    expect(calls.mails).toEqual(['ann@example.com']);
  });
});
