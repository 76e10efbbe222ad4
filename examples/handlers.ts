/**
 * The handlers `npm start` runs (examples/start.yaml names the built file), so a first run has
 * something to show: try `npx naq enqueue add --data '{"a":1,"b":2}'` or `resize`, and watch
 * them on the dashboard. `flaky` fails now and then, so failures, retries and dead letters show
 * up too. Start your own with `npm start -- --handlers your-handlers.ts`.
 */
import type { JobContext } from '../src/index.js';

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });

export function add(data: { a: number; b: number }, ctx: JobContext) {
  ctx.log.info(`adding ${data.a} and ${data.b}`);
  return data.a + data.b;
}

/** Pretends to resize an image in ten steps, reporting progress. */
export async function resize(data: { url: string; width: number }, ctx: JobContext) {
  ctx.log.info(`resizing ${data.url} to ${data.width}px`);
  for (let step = 1; step <= 10; step++) {
    await sleep(100, ctx.signal);
    ctx.progress(step * 10);
  }
  return { url: data.url, width: data.width };
}

/** Fails `failRate` of its attempts (default 0.3), as a flaky upstream would. */
export async function flaky(data: { failRate?: number }, ctx: JobContext) {
  await sleep(50, ctx.signal);
  if (Math.random() < (data.failRate ?? 0.3)) {
    ctx.log.warn(`attempt ${ctx.attempt} of ${ctx.maxAttempts}: the upstream did not answer`);
    throw new Error('upstream did not answer in time', { cause: new Error('connect ETIMEDOUT 10.0.0.7:443') });
  }
  return { ok: true, attempt: ctx.attempt };
}

/** What a recurring schedule would run: `npx naq schedule add nightly report --every 60000`. */
export async function report(_data: unknown, ctx: JobContext) {
  ctx.log.info('building the report');
  await sleep(200, ctx.signal);
  return { rows: Math.floor(Math.random() * 1000) };
}
