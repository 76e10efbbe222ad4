/**
 * naq instances for integration tests against a harness server: each one is stopped after
 * its test (`afterEach(stopNaqs)`), with the short reconnect and deadlines the tests use.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import type { Handlers } from '../../src/actors/worker/queue-worker.js';
import type { NaqConfigInput } from '../../src/config/index.js';
import type { Logger } from '../../src/core/log.js';
import { createNaq, type Naq } from '../../src/naq.js';
import { connectTo, type TestServer } from './harness.js';

export const silent = pino({ level: 'silent' });
const running: Naq<any>[] = [];

/** Stops every naq started through this module since the last call. */
export async function stopNaqs(): Promise<void> {
  await Promise.all(running.splice(0).map((n) => n.stop()));
}

export const baseConfig = (server: TestServer) => ({
  nats: { url: server.url },
  reconnect: { timeWaitMs: 100 },
  ops: { timeoutMs: 5000 },
  supervisor: { stopTimeoutMs: 5000 },
});

/** A started naq with `config` over the base config. */
export async function startNaq<H extends Handlers = Handlers>(server: TestServer, config: NaqConfigInput = {}, handlers?: H, logger: Logger = silent): Promise<Naq<H>> {
  const naq = createNaq<H>({ ...baseConfig(server), ...config }, { logger, ...(handlers ? { handlers } : {}) });
  running.push(naq);
  await naq.start({ timeoutMs: 10_000 });
  return naq;
}

export const producer = (server: TestServer) => startNaq(server);

/** A worker on `default` (concurrency 4, ack wait 5 s), `worker` settings over those. */
export function worker<H extends Handlers>(server: TestServer, handlers: H, worker: Record<string, unknown> = {}, logger?: Logger): Promise<Naq<H>> {
  return startNaq(server, { roles: ['worker'], worker: { queues: ['default'], concurrency: 4, ackWaitMs: 5000, drainGraceMs: 1000, ...worker } }, handlers, logger);
}

/** Every dead letter in NAQ_DEAD, read with a client of the test's own. */
export async function deadLetters(server: TestServer): Promise<Array<Record<string, any>>> {
  const nc = await connectTo(server);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info('NAQ_DEAD');
  const out: Array<Record<string, any>> = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage('NAQ_DEAD', { seq }).catch(() => null);
    if (m) out.push(m.json());
  }
  await nc.close();
  return out;
}
