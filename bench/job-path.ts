/**
 * The job path alone: `JobPath.process` (decode → already finished / cancelled → run → the
 * record's bytes → ack) on I/O that does nothing, warm, in a process of its own. No server, no
 * socket, no client: what the per-job path itself costs of the worker's CPU per job, apart from
 * the I/O around it (`node dist/bench/run.js --only path`, a few seconds). On a shared VM its
 * rounds still move by a quarter, as the drains do: compare a change to the path in
 * alternating pairs of runs, not one run against another.
 */
import { fork } from 'node:child_process';
import { nuid } from '@nats-io/transport-node';
import { pino } from 'pino';
import { JobPath, type JobIO } from '../src/actors/worker/job-path.js';
import type { Delivery } from '../src/actors/worker/delivery.js';
import { systemClock } from '../src/core/clock.js';
import { layout } from '../src/model/layout.js';
import { buildJob } from '../src/model/job.js';
import { WORKER_EXEC_ARGV } from './util.js';

export interface JobPathSettings {
  /** Jobs per measured round. */
  jobs: number;
  rounds: number;
  /** Jobs run before the first round, so that the rounds measure compiled code. */
  warm: number;
  /** Deliveries in flight, as the worker's concurrency. */
  concurrency: number;
}

export interface JobPathResult {
  /** CPU µs per job (process.cpuUsage: every thread) of each round. */
  cpuUsPerJob: number[];
  /** Jobs that completed (record written, acked) over the warm-up and the rounds. */
  completed: number;
  /** Deliveries that took any other way (dead letter, NAK): 0 unless the bodies are wrong. */
  other: number;
}

const QUEUE = 'bench';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Deliveries as the worker gets them: the bench's no-op job, encoded as enqueue encodes it. */
function deliveries(n: number, count: { acks: number; other: number }): Delivery[] {
  const names = layout('naq');
  const defaults = { attempts: 1, backoff: { type: 'fixed' as const, delay: 1000 }, maxPayloadBytes: 1_048_576 };
  const out: Delivery[] = [];
  for (let i = 0; i < n; i++) {
    const id = nuid.next();
    const { bytes } = buildJob('noop', { i }, { queue: QUEUE }, id, defaults);
    out.push({
      // Flat, as the client's decoded subject is (a concatenation is read slower until flattened).
      subject: decoder.decode(encoder.encode(names.jobSubject(QUEUE, id))),
      data: bytes,
      ack: () => void count.acks++,
      nak: () => void count.other++,
      working: () => undefined,
    } as Delivery);
  }
  return out;
}

/** Runs the rounds in this process; the bench runs it in a child of its own (measureJobPath). */
export async function runJobPath(settings: JobPathSettings): Promise<JobPathResult> {
  const count = { acks: 0, other: 0, written: 0 };
  const written = Promise.resolve();
  // Not memoryIO (src/testing/): it parses and keeps every record, work the rounds would time.
  const io: JobIO = {
    readRecord: () => Promise.resolve(null),
    writeRecord: () => {
      count.written++;
      return written;
    },
    index: () => undefined,
    deadLetter: () => {
      count.other++;
      return Promise.resolve(1);
    },
    ackLater: (msg) => msg.ack(),
    emit: () => undefined,
    maxMessageBytes: () => 1_048_576,
    hold: () => undefined,
    groupDone: () => undefined,
    tellParent: () => Promise.resolve(),
    children: () => Promise.resolve({ results: {}, failures: {} }),
  };
  const path = new JobPath({
    queue: QUEUE,
    workerId: 'bench-worker',
    handlers: { noop: async () => null },
    ackWaitMs: 30_000,
    activeAfterMs: 0,
    clock: systemClock,
    io,
    log: pino({ level: 'silent' }),
    onRefused: () => void count.other++,
  });
  // Bodies are made before each round, outside its measurement (as the socket's bytes are).
  const drive = async (queue: Delivery[]): Promise<void> => {
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < queue.length) await path.process(queue[next++]!, 1);
    };
    await Promise.all(Array.from({ length: settings.concurrency }, lane));
  };
  await drive(deliveries(settings.warm, count));
  const cpuUsPerJob: number[] = [];
  for (let r = 0; r < settings.rounds; r++) {
    const queue = deliveries(settings.jobs, count);
    const cpu0 = process.cpuUsage();
    await drive(queue);
    const cpu = process.cpuUsage(cpu0);
    cpuUsPerJob.push((cpu.user + cpu.system) / settings.jobs);
  }
  path.stop();
  // A job completed when its record was written and it was acked.
  return { cpuUsPerJob, completed: Math.min(count.acks, count.written), other: count.other };
}

/** The rounds in a fresh child (bench/job-path-process.ts), with the V8 flags of `naq worker`. */
export function measureJobPath(script: string, settings: JobPathSettings): Promise<JobPathResult> {
  return new Promise((resolve, reject) => {
    const child = fork(script, [JSON.stringify(settings)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: WORKER_EXEC_ARGV });
    let result: JobPathResult | undefined;
    child.on('message', (msg: { result?: JobPathResult; error?: string }) => {
      if (msg.error) reject(new Error(`job path bench: ${msg.error}`));
      else result = msg.result;
    });
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`job path bench: the child exited with ${code} and no result`))));
  });
}
