/**
 * `naq conformance worker --queue Q`: drives a worker under test that already serves queue Q
 * with the reference handlers (handlers.ts), through the fixtures of docs/wire-format.md's
 * worker algorithm, and checks what it wrote: records, acks, dead letters, timing. Every
 * fixture is published raw, as a producer in another language would, so the kit tests the
 * wire format and not naq's enqueue.
 */
import { nuid } from '@nats-io/transport-node';
import { WIRE_VERSION, type BackoffOptions, type JobMessage, type JobRecord } from '../model/job.js';
import { utf8 } from '../core/utf8.js';
import { expect, expectEqual, runChecks, waitUntil, type Check, type CheckResult } from './checks.js';
import { FAILURE_CODE } from './handlers.js';
import { Probe, type ProbeOptions } from './probe.js';

export interface WorkerKitOptions extends ProbeOptions {
  print: (line: string) => void;
}

/** The longest ack_wait the kit waits out to check that a long job is kept alive and runs once. */
const MAX_ACK_WAIT_CHECKED_MS = 10_000;
/** Slack on top of a backoff delay: the worker's NAK, the server's redelivery, a busy machine. */
const DELAY_SLACK_MS = 3000;
/** A delay may come early by this much (clocks read at different points of the path). */
const EARLY_MS = 50;

interface Fixture {
  name: string;
  data?: unknown;
  attempts?: number;
  backoff?: BackoffOptions;
  timeoutMs?: number;
  dependsOn?: string[];
}

class WorkerKit extends Probe {
  readonly #run = nuid.next().slice(-8);
  #seq = 0;

  /** A job id of this run, readable in the worker's logs. */
  id(tag: string): string {
    return `conf-${this.#run}-${tag}-${++this.#seq}`;
  }

  message(id: string, f: Fixture): JobMessage {
    const m: JobMessage = { v: WIRE_VERSION, id, name: f.name, queue: this.o.queue, data: f.data ?? null, attempts: f.attempts ?? 1, ts: Date.now() };
    if (f.backoff) m.backoff = f.backoff;
    if (f.timeoutMs !== undefined) m.timeoutMs = f.timeoutMs;
    if (f.dependsOn) m.dependsOn = f.dependsOn;
    return m;
  }

  /** Publishes a job as the spec says a producer does: one message, `Nats-Msg-Id: <id>:<ts>`. */
  async publish(m: JobMessage): Promise<JobMessage & { seq: number }> {
    const ack = await this.js.publish(this.o.layout.jobSubject(m.queue, m.id), utf8(JSON.stringify(m)), { msgID: `${m.id}:${m.ts}` });
    return { ...m, seq: ack.seq };
  }

  async publishRaw(id: string, text: string): Promise<void> {
    await this.js.publish(this.o.layout.jobSubject(this.o.queue, id), utf8(text));
  }

  /** A job with dependencies is created in the waiting bucket (KV create: never over another). */
  async park(m: JobMessage): Promise<void> {
    await this.waiting.create(m.id, utf8(JSON.stringify(m)));
  }

  cancel(id: string): void {
    this.o.nc.publish(this.o.layout.cancelSubject(this.o.queue), id);
  }
}

/** The gap between the end of attempt n and the start of attempt n+1, within the backoff's delay. */
function checkGaps(r: JobRecord, delays: number[]): void {
  expectEqual(r.attempts.length, delays.length + 1, `record ${r.id}: the number of attempts`);
  for (let i = 0; i < delays.length; i++) {
    const prev = r.attempts[i]!;
    const next = r.attempts[i + 1]!;
    expect(prev.finishedAt !== undefined, `record ${r.id}: attempt ${prev.n} has no finishedAt`);
    const gap = next.startedAt - prev.finishedAt!;
    const want = delays[i]!;
    expect(gap >= want - EARLY_MS && gap <= want + DELAY_SLACK_MS, `record ${r.id}: attempt ${next.n} started ${gap} ms after attempt ${prev.n} ended, expected ${want} ms`);
  }
}

function checkErrorCode(r: JobRecord, code: string): void {
  expect(r.error, `record ${r.id}: a ${r.status} record without an error`);
  expectEqual(r.error!.code, code, `record ${r.id}: error.code`);
  expect(typeof r.error!.message === 'string', `record ${r.id}: error.message is not a string`);
}

function checks(kit: WorkerKit, queue: string): Check[] {
  /** failUntil with a backoff: the attempts' gaps follow the delays. */
  const retry = (label: string, backoff: BackoffOptions | undefined, attempts: number, delays: number[]): Check => ({
    name: `retry, ${label}`,
    run: async () => {
      const m = await kit.publish(kit.message(kit.id('retry'), { name: 'conformance.failUntil', data: { attempt: attempts }, attempts, ...(backoff ? { backoff } : {}) }));
      const r = await kit.outcome(m.id, 'completed');
      expectEqual(r.result, { attempt: attempts }, `record ${m.id}: result`);
      checkGaps(r, delays);
      for (const a of r.attempts.slice(0, -1)) expectEqual(a.error?.code, FAILURE_CODE, `record ${m.id}: attempt ${a.n} error.code`);
      expectEqual(r.attempts.map((a) => a.n), Array.from({ length: attempts }, (_, i) => i + 1), `record ${m.id}: attempt numbers`);
      await kit.acked(m.id);
    },
  });

  return [
    {
      name: 'heartbeat in the workers bucket',
      run: async () => {
        const hb = await waitUntil(`a heartbeat of a worker serving ${queue}`, 15_000, async () =>
          (await kit.heartbeats()).find((w) => Array.isArray(w.queues) && w.queues.includes(queue)),
        );
        for (const key of ['id', 'host', 'status'] as const) expect(typeof hb[key] === 'string', `heartbeat: ${key} is not a string`);
        for (const key of ['pid', 'inFlight', 'processed', 'failed', 'concurrency', 'startedAt', 'ts'] as const) {
          expect(Number.isInteger(hb[key]), `heartbeat: ${key} is not an integer`);
        }
        expect(Math.abs(Date.now() - hb.ts) < 60_000, `heartbeat: ts is ${Date.now() - hb.ts} ms old`);
      },
    },
    {
      name: 'success: the result is recorded, then the message acked',
      run: async () => {
        const data = { text: 'héllo', list: [1, 2.5, null, { nested: true }] };
        const m = await kit.publish(kit.message(kit.id('echo'), { name: 'conformance.echo', data, attempts: 3 }));
        const r = await kit.outcome(m.id, 'completed');
        expectEqual(r.result, data, `record ${m.id}: result`);
        expectEqual(r.name, 'conformance.echo', `record ${m.id}: name`);
        expectEqual(r.maxAttempts, 3, `record ${m.id}: maxAttempts`);
        expectEqual(r.enqueuedAt, m.ts, `record ${m.id}: enqueuedAt (the message's ts)`);
        expectEqual(r.attempts.length, 1, `record ${m.id}: the number of attempts`);
        const [a] = r.attempts;
        expect(typeof a!.workerId === 'string', `record ${m.id}: the attempt has no workerId`);
        expect(a!.finishedAt !== undefined && a!.finishedAt >= a!.startedAt, `record ${m.id}: the attempt's finishedAt is before its startedAt`);
        await kit.acked(m.id);
      },
    },
    retry('fixed backoff 300 ms', { type: 'fixed', delay: 300 }, 3, [300, 300]),
    retry('exponential backoff from 200 ms', { type: 'exponential', delay: 200 }, 3, [200, 400]),
    retry('list backoff [100, 600] repeats its last delay', { type: 'list', delays: [100, 600] }, 4, [100, 600, 600]),
    retry('no backoff retries at once', undefined, 2, [0]),
    {
      name: 'last attempt failed: dead letter, then a failed record with its deadSeq',
      run: async () => {
        const data = { message: 'conformance says no', code: 'CONFORMANCE_NO' };
        const m = await kit.publish(kit.message(kit.id('fail'), { name: 'conformance.fail', data, attempts: 2, backoff: { type: 'fixed', delay: 100 } }));
        const r = await kit.outcome(m.id, 'failed');
        checkErrorCode(r, 'CONFORMANCE_NO');
        expectEqual(r.error!.message, data.message, `record ${m.id}: error.message`);
        expectEqual(r.attempts.length, 2, `record ${m.id}: the number of attempts`);
        const dead = await kit.deadLetter(r);
        expectEqual(dead.job?.id, m.id, 'the dead letter job.id');
        expectEqual(dead.job?.data, data, 'the dead letter job.data');
        expectEqual(dead.error?.code, 'CONFORMANCE_NO', 'the dead letter error.code');
        await kit.acked(m.id);
      },
    },
    {
      name: 'undecodable message: dead letter with its raw text, failed record with code DECODE',
      run: async () => {
        const id = kit.id('undecodable');
        const text = `{"v":1,"id":"${id}", this is not JSON`;
        await kit.publishRaw(id, text);
        const r = await kit.outcome(id, 'failed');
        checkErrorCode(r, 'DECODE');
        const dead = await kit.deadLetter(r);
        expectEqual(dead.raw, text, 'the dead letter raw');
        await kit.acked(id);
      },
    },
    {
      name: 'unknown handler: failed at once with code UNKNOWN_HANDLER, no retries',
      run: async () => {
        const m = await kit.publish(kit.message(kit.id('unknown'), { name: 'conformance.noSuchHandler', attempts: 3 }));
        const r = await kit.outcome(m.id, 'failed');
        checkErrorCode(r, 'UNKNOWN_HANDLER');
        expectEqual(r.attempts.length, 1, `record ${m.id}: the number of attempts`);
        await kit.deadLetter(r);
        await kit.acked(m.id);
      },
    },
    {
      name: 'timeout: the attempt ends at timeoutMs with code JOB_TIMEOUT',
      run: async () => {
        const m = await kit.publish(kit.message(kit.id('timeout'), { name: 'conformance.sleep', data: { ms: 20_000 }, timeoutMs: 300 }));
        const r = await kit.outcome(m.id, 'failed', 10_000);
        checkErrorCode(r, 'JOB_TIMEOUT');
        const a = r.attempts[0]!;
        const ran = (a.finishedAt ?? 0) - a.startedAt;
        expect(ran >= 300 - EARLY_MS && ran < 300 + DELAY_SLACK_MS, `record ${m.id}: the attempt ran ${ran} ms, expected about 300`);
        await kit.deadLetter(r);
        await kit.acked(m.id);
      },
    },
    {
      name: 'cancel while running: a cancelled record, the message acked',
      run: async () => {
        const m = await kit.publish(kit.message(kit.id('cancel'), { name: 'conformance.sleep', data: { ms: 20_000 }, attempts: 2 }));
        // Delivered to the worker; a moment later it is in the handler (and if it is not, the
        // worker must remember the cancel: the outcome is the same).
        await kit.delivered(m.seq);
        await new Promise((r) => setTimeout(r, 200));
        kit.cancel(m.id);
        const r = await kit.outcome(m.id, 'cancelled', 10_000);
        expect(r.result === undefined || r.result === null, `record ${m.id}: a cancelled job has a result`);
        await kit.acked(m.id);
      },
    },
    {
      name: 'cancelled before it arrives: recorded cancelled without running',
      run: async () => {
        const m = kit.message(kit.id('precancel'), { name: 'conformance.echo', data: { ran: true } });
        kit.cancel(m.id);
        // The notice is a core message: give it a moment to reach the worker before the job does.
        await new Promise((r) => setTimeout(r, 200));
        await kit.publish(m);
        const r = await kit.outcome(m.id, 'cancelled');
        expect(r.result === undefined || r.result === null, `record ${m.id}: the handler ran (result ${JSON.stringify(r.result)})`);
        await kit.acked(m.id);
      },
    },
    {
      name: 'redelivery after the outcome was recorded: acked without running',
      run: async () => {
        const m = await kit.publish(kit.message(kit.id('recorded'), { name: 'conformance.failUntil', data: { attempt: 2 }, attempts: 2, backoff: { type: 'fixed', delay: 1500 } }));
        // Attempt 1 fails and is recorded 'retrying'; before attempt 2 is delivered, another
        // worker's outcome lands (as after a crash between record and ack).
        const retrying = await waitUntil(`a retrying record for ${m.id}`, 10_000, async () => {
          const r = await kit.record(m.id);
          return r?.status === 'retrying' ? r : undefined;
        });
        const now = Date.now();
        const planted: JobRecord = {
          ...retrying,
          status: 'completed',
          result: { planted: true },
          startedAt: now,
          finishedAt: now,
          attempts: [...retrying.attempts.filter((a) => a.n < 2), { n: 2, startedAt: now, finishedAt: now, workerId: 'conformance-kit' }],
        };
        delete planted.error;
        await kit.writeRecord(planted);
        await waitUntil(`the redelivery of ${m.id} acked`, 1500 + DELAY_SLACK_MS + 5000, async () => ((await kit.pending(m.id)) ? undefined : true));
        const r = await kit.record(m.id);
        expectEqual(r?.result, { planted: true }, `record ${m.id}: result (the handler ran again and overwrote the recorded outcome)`);
      },
    },
    {
      name: 'a job running past ack_wait is kept alive (+WPI) and runs once',
      run: async () => {
        const ackWait = await kit.ackWaitMs();
        if (ackWait > MAX_ACK_WAIT_CHECKED_MS) return { skipped: `the consumer's ack_wait is ${ackWait} ms; give it ${MAX_ACK_WAIT_CHECKED_MS} ms or less to check this` };
        const ms = Math.round(ackWait * 1.5);
        const m = await kit.publish(kit.message(kit.id('long'), { name: 'conformance.sleep', data: { ms }, attempts: 3 }));
        const r = await kit.outcome(m.id, 'completed', ms + 10_000);
        expectEqual(r.result, { slept: ms }, `record ${m.id}: result`);
        expectEqual(r.attempts.length, 1, `record ${m.id}: the number of attempts (redelivered while it ran)`);
        await kit.acked(m.id);
      },
    },
    {
      name: 'dependencies: a waiting job runs after the job it depends on completed',
      run: async () => {
        const first = await kit.publish(kit.message(kit.id('dep'), { name: 'conformance.sleep', data: { ms: 300 } }));
        const then = kit.message(kit.id('dependent'), { name: 'conformance.echo', data: { after: first.id }, dependsOn: [first.id] });
        await kit.park(then);
        const a = await kit.outcome(first.id, 'completed');
        const b = await kit.outcome(then.id, 'completed');
        expect(b.startedAt! >= a.finishedAt!, `job ${then.id} started before the job it depends on finished`);
        expectEqual(b.result, { after: first.id }, `record ${then.id}: result`);
      },
    },
  ];
}

/** Runs every check against the worker serving `queue`; resolves with one result per check. */
export async function checkWorker(options: WorkerKitOptions): Promise<CheckResult[]> {
  const kit = new WorkerKit(options);
  await kit.open();
  return runChecks(checks(kit, options.queue), options.print);
}
