/**
 * Handlers of a small shop, written to be tested: what they talk to (the payment provider,
 * the reports service, the mailer) is given to `makeHandlers`, so a test gives fakes and a
 * deployment gives the real clients. examples/testing/handlers.test.ts tests them both ways:
 * with `createTestNaq` (no NATS, time moved by hand) and against a real nats-server
 * (`startTestServer` + `createNaq`).
 *
 * How they are meant to be enqueued:
 * - `chargeOrder` with retries: `{ attempts: 5, backoff: { type: 'exponential', delay: 1000 } }`
 *   — the provider fails now and then, and a retry a little later usually goes through.
 * - `buildReport` with a timeout: `{ timeoutMs: 30_000 }` — the reports service sometimes hangs;
 *   the job's signal aborts the request, and the attempt fails with JOB_TIMEOUT.
 * - `sendReceipt` after the charge: `{ dependsOn: [chargeId] }` — it runs only once the charge
 *   completed, and fails (naming it) if the charge failed for good.
 */
import type { JobContext } from 'naq';

export interface ShopServices {
  /** Charges the order's card; rejects on a provider error (worth retrying). */
  charge(orderId: string, cents: number, signal: AbortSignal): Promise<{ chargeId: string }>;
  /** Builds a report; may take long, must stop when `signal` aborts. */
  report(month: string, signal: AbortSignal): Promise<{ rows: number }>;
  /** Sends an email. */
  mail(to: string, subject: string): Promise<void>;
}

export function makeHandlers(services: ShopServices) {
  return {
    async chargeOrder(data: { orderId: string; cents: number }, ctx: JobContext) {
      ctx.log(`charging ${data.orderId} (attempt ${ctx.attempt} of ${ctx.maxAttempts})`);
      const { chargeId } = await services.charge(data.orderId, data.cents, ctx.signal);
      return { orderId: data.orderId, chargeId };
    },

    async buildReport(data: { month: string }, ctx: JobContext) {
      const { rows } = await services.report(data.month, ctx.signal);
      return { month: data.month, rows };
    },

    async sendReceipt(data: { orderId: string; email: string }) {
      await services.mail(data.email, `Your receipt for order ${data.orderId}`);
      return { sentTo: data.email };
    },
  };
}

export type ShopHandlers = ReturnType<typeof makeHandlers>;
