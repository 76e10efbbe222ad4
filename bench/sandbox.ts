/**
 * The sandbox section of the bench (`--only sandbox`, issue 13): what running a no-op job in a
 * worker thread costs against running it in-process. One worker process drains a backlog of
 * no-op jobs with the same handlers module, concurrency and middleware both ways; only where
 * the handler runs differs. The two alternate, which goes first turning each round.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { CreateNaqLike } from './naq-contract.js';
import { BenchChild, fmtRate, median, resetJetStream } from './util.js';

const QUEUE = 'sandbox';
const CHUNK = 5000;
/** Enough jobs that starting the threads is a small part of the time, few enough to stay short. */
export const SANDBOX_MAX_JOBS = 20_000;
/** Threads are an isolate each: far fewer than the main lines' 100 in flight. */
export const SANDBOX_MAX_CONCURRENCY = 8;

export interface SandboxSettings {
  jobs: number;
  concurrency: number;
  rounds: number;
}

interface Drain {
  jobsPerSec: number;
  cpuUsPerJob: number | undefined;
}

export interface SandboxResult {
  jobs: number;
  concurrency: number;
  inProcess: Drain[];
  sandbox: Drain[];
}

interface Env {
  createNaq: CreateNaqLike;
  jsm: JetStreamManager;
  url: string;
  script: string;
  module: string;
}

/** One drain of `jobs` no-op jobs by a fresh worker process: from its first job done to its last. */
async function drain(env: Env, s: SandboxSettings, sandbox: boolean): Promise<Drain> {
  await resetJetStream(env.jsm);
  const producer = env.createNaq({ nats: { url: env.url }, log: { level: 'warn' } });
  let child: BenchChild | undefined;
  try {
    await producer.start({ timeoutMs: 10_000 });
    for (let start = 0; start < s.jobs; start += CHUNK) {
      const jobs = Array.from({ length: Math.min(CHUNK, s.jobs - start) }, (_, i) => ({ name: 'noop', data: { i: start + i }, opts: { queue: QUEUE } }));
      await producer.enqueueBulk!(jobs);
    }
    child = new BenchChild(env.script, { url: env.url, queue: QUEUE, jobs: s.jobs, concurrency: s.concurrency, sandbox, module: env.module });
    const first = await child.next('first');
    const done = await child.next('done');
    const seconds = (done.t - first.t) / 1000;
    return { jobsPerSec: seconds > 0 ? (s.jobs - 1) / seconds : 0, cpuUsPerJob: done.cpuUs === undefined ? undefined : done.cpuUs / s.jobs };
  } finally {
    await child?.stop();
    await producer.stop().catch(() => undefined);
  }
}

export async function runSandbox(createNaq: CreateNaqLike, jsm: JetStreamManager, url: string, script: string, module: string, s: SandboxSettings, log: (line: string) => void): Promise<SandboxResult> {
  const env: Env = { createNaq, jsm, url, script, module };
  const result: SandboxResult = { jobs: s.jobs, concurrency: s.concurrency, inProcess: [], sandbox: [] };
  for (let round = 1; round <= s.rounds; round++) {
    for (const sandbox of round % 2 === 1 ? [false, true] : [true, false]) {
      log(`sandbox: ${s.jobs} no-op jobs ${sandbox ? 'in worker threads' : 'in-process'}, concurrency ${s.concurrency}, round ${round}/${s.rounds}...`);
      (sandbox ? result.sandbox : result.inProcess).push(await drain(env, s, sandbox));
    }
  }
  await resetJetStream(jsm);
  return result;
}

export function sandboxLines(r: SandboxResult): string[] {
  const rate = (d: Drain[]) => median(d.map((x) => x.jobsPerSec));
  const cpu = (d: Drain[]) => {
    const v = d.map((x) => x.cpuUsPerJob).filter((x): x is number => x !== undefined);
    return v.length ? `${median(v).toFixed(1)} µs` : '-';
  };
  const inProcess = rate(r.inProcess);
  const sandbox = rate(r.sandbox);
  const all = (d: Drain[]) => d.map((x) => fmtRate(x.jobsPerSec)).join(' / ');
  return [
    `sandbox: a no-op job in a worker thread against in-process (${r.jobs} jobs drained by one worker process, concurrency ${r.concurrency}, ` +
      `median of ${r.inProcess.length}): in-process ${fmtRate(inProcess)} jobs/s, sandbox ${fmtRate(sandbox)} jobs/s = ${inProcess > 0 ? (sandbox / inProcess).toFixed(2) : '-'}x ` +
      `(rounds: ${all(r.inProcess)} against ${all(r.sandbox)}); CPU per job, all threads: ${cpu(r.inProcess)} in-process, ${cpu(r.sandbox)} sandbox`,
  ];
}
