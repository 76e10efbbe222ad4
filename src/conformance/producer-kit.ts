/**
 * `naq conformance producer --queue Q`: naq's reference worker runs queue Q while a producer
 * under test enqueues onto it; every message it publishes (on the jobs subject, or into the
 * waiting bucket for a job with dependencies) is checked against the wire format as it goes
 * by, and every job it enqueued must end as its reference handler says. The producer ends by
 * enqueueing one `conformance.done` job whose data says how many jobs it enqueued before.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { decodeJob, WIRE_VERSION, type JobMessage } from '../model/job.js';
import { CheckFailed, DONE_JOB, expect, expectEqual, runChecks, type Check, type CheckResult } from './checks.js';
import { referenceHandlers } from './handlers.js';
import { Probe, type ProbeOptions } from './probe.js';

export { DONE_JOB };

export interface ProducerKitOptions extends ProbeOptions {
  print: (line: string) => void;
  /** Resolves with the `conformance.done` job's data once the reference worker ran it. */
  done: Promise<unknown>;
  /** How long to wait for the producer's `conformance.done` job. */
  waitMs: number;
}

/** One message the producer published, as it went by. */
interface Seen {
  id: string;
  subject: string;
  /** Into the waiting bucket (a job with dependencies), not the jobs stream. */
  parked: boolean;
  msgId: string | undefined;
  /** Set by a resolver when it releases a waiting job (`<id>:<ts>:release`). */
  released: boolean;
  text: string;
}

const REFERENCE_NAMES = new Set([...Object.keys(referenceHandlers), DONE_JOB]);
/** An enqueue time further than this from the kit's clock is a unit or clock mistake. */
const MAX_CLOCK_SKEW_MS = 60 * 60_000;

class Watcher {
  readonly seen: Seen[] = [];
  readonly #subs: Subscription[] = [];

  constructor(nc: NatsConnection, jobsSubject: string, waitingSubject: string) {
    const watch = (subject: string, parked: boolean) => {
      this.#subs.push(nc.subscribe(subject, { callback: (_error, msg) => this.#add(msg, parked) }));
    };
    watch(jobsSubject, false);
    watch(waitingSubject, true);
  }

  #add(msg: Msg, parked: boolean): void {
    // A delete or purge of a waiting job (the resolver releasing it) carries no job.
    if (parked && (msg.headers?.get('KV-Operation') ?? '') !== '') return;
    const msgId = msg.headers?.get('Nats-Msg-Id') || undefined;
    const id = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
    this.seen.push({ id, subject: msg.subject, parked, msgId, released: msgId !== undefined && msgId.startsWith(`${id}:`) && msgId.endsWith(':release'), text: msg.string() });
  }

  stop(): void {
    for (const sub of this.#subs) sub.unsubscribe();
  }
}

/** The message as published, checked against the job message table of the spec. */
function checkMessage(s: Seen, queue: string): JobMessage {
  let job: JobMessage;
  try {
    job = decodeJob(new TextEncoder().encode(s.text));
  } catch (error) {
    throw new CheckFailed(`${s.subject}: not a valid job message: ${(error as Error).message}`);
  }
  expectEqual(job.v, WIRE_VERSION, `${s.subject}: v`);
  expectEqual(job.id, s.id, `${s.subject}: id (the subject's last token)`);
  expectEqual(job.queue, queue, `${s.subject}: queue`);
  expect(REFERENCE_NAMES.has(job.name), `${s.subject}: name ${JSON.stringify(job.name)} is not a reference handler`);
  expect(Math.abs(Date.now() - job.ts) < MAX_CLOCK_SKEW_MS, `${s.subject}: ts ${job.ts} is not the enqueue time in ms since the epoch`);
  // The old advice (`Nats-Msg-Id: <id>`) made a re-enqueue within the duplicate window vanish.
  expect(s.msgId !== job.id, `${s.subject}: Nats-Msg-Id is the bare job id; use one value per enqueue, such as <id>:<ts>`);
  return job;
}

function field(data: unknown, key: string): unknown {
  return typeof data === 'object' && data !== null ? (data as Record<string, unknown>)[key] : undefined;
}

/** What the job's handler makes of it, checked on its final record. */
async function checkOutcome(probe: Probe, job: JobMessage, publishes: number): Promise<string> {
  switch (job.name) {
    case 'conformance.echo': {
      const r = await probe.outcome(job.id, 'completed');
      expectEqual(r.result, job.data ?? null, `record ${job.id}: result`);
      expectEqual(r.attempts.length, 1, `record ${job.id}: attempts${publishes > 1 ? ` (published ${publishes} times: it must run once)` : ''}`);
      for (const dep of job.dependsOn ?? []) {
        const d = await probe.outcome(dep, 'completed');
        expect(r.startedAt! >= d.finishedAt!, `job ${job.id} started before its dependency ${dep} finished`);
      }
      return job.dependsOn?.length ? 'completed after its dependencies' : 'completed with its data as result';
    }
    case 'conformance.failUntil': {
      const until = Number(field(job.data, 'attempt') ?? 1);
      if (until > job.attempts) {
        await probe.outcome(job.id, 'failed');
        return 'failed, as its attempts run out first';
      }
      const r = await probe.outcome(job.id, 'completed');
      expectEqual(r.result, { attempt: until }, `record ${job.id}: result`);
      return `completed on attempt ${until}`;
    }
    case 'conformance.fail': {
      const r = await probe.outcome(job.id, 'failed');
      await probe.deadLetter(r);
      return `failed after ${r.attempts.length} attempt(s), dead-lettered`;
    }
    case 'conformance.sleep': {
      const r = await probe.outcome(job.id);
      return `ended ${r.status}`;
    }
    default:
      throw new CheckFailed(`job ${job.id}: no reference handler ${job.name}`);
  }
}

/** Watches, waits for `conformance.done`, then checks every job the producer enqueued. */
export async function checkProducer(options: ProducerKitOptions, ready: () => void): Promise<CheckResult[]> {
  const { layout, queue, nc } = options;
  const probe = new Probe(options);
  await probe.open();
  const watcher = new Watcher(nc, layout.jobSubject(queue, '*'), `$KV.${layout.waitingBucket}.*`);
  // Subscriptions are registered once the server has seen them: only then can nothing slip by.
  await nc.flush();
  ready();
  let announced: unknown;
  try {
    announced = await Promise.race([
      options.done,
      new Promise((_, reject) => setTimeout(() => reject(new CheckFailed(`no ${DONE_JOB} job within ${options.waitMs} ms`)), options.waitMs)),
    ]);
  } catch (error) {
    watcher.stop();
    return runChecks([{ name: `the producer enqueued ${DONE_JOB}`, run: () => Promise.reject(error) }], options.print);
  }
  // Published before the done job, but a waiting job may still be on its way to the queue.
  await new Promise((r) => setTimeout(r, 200));
  watcher.stop();

  const byId = new Map<string, Seen[]>();
  for (const s of watcher.seen) {
    if (s.released) continue;
    const list = byId.get(s.id) ?? [];
    list.push(s);
    byId.set(s.id, list);
  }
  const jobs: Array<{ id: string; publishes: Seen[] }> = [];
  for (const [id, publishes] of byId) {
    const first = publishes[0]!;
    if (first.text.includes(`"${DONE_JOB}"`)) continue;
    jobs.push({ id, publishes });
  }
  const count = Number(field(announced, 'jobs'));
  const checks: Check[] = [
    {
      name: `${DONE_JOB} announced ${Number.isInteger(count) ? count : '?'} jobs, and that many were seen`,
      run: async () => {
        expect(Number.isInteger(count) && count >= 1, `${DONE_JOB} data.jobs is ${JSON.stringify(field(announced, 'jobs'))}, expected the number of jobs enqueued`);
        expectEqual(jobs.length, count, 'distinct job ids seen');
      },
    },
    ...jobs.map(({ id, publishes }) => ({
      name: `job ${id}`,
      run: async () => {
        const job = checkMessage(publishes[0]!, queue);
        for (const again of publishes.slice(1)) checkMessage(again, queue);
        expect(!job.dependsOn?.length || publishes[0]!.parked, `job ${id} has dependsOn but was published to the jobs stream; create it in ${layout.waitingBucket}`);
        return { detail: `${job.name}, ${await checkOutcome(probe, job, publishes.length)}` };
      },
    })),
  ];
  return runChecks(checks, options.print);
}
