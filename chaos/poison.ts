/**
 * Bad input published straight onto a queue's job subjects with a raw NATS client, the way a
 * buggy producer in another language would, and the dead letters it should end up as.
 */
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DeadLetter } from '../src/model/job.js';
import { layout } from '../src/model/layout.js';
import { HANG_TIMEOUT_MS, mayHang, PROGRESS_KINDS, VALUE_KINDS, type Final, type Plan, type Step } from '../test/support/outcome-model.js';

export interface PoisonCase {
  /** Short label for the summary table. */
  label: string;
  jobId: string;
  /** Whether it should reach the stream (and so the dead letters). */
  reachesStream: boolean;
  /** What the dead letter's reason must say. */
  reason: RegExp;
  /** What happened to the publish: "stored seq N", or the error. */
  published: string;
  stored: boolean;
}

/** Over nats-server's default max_payload (1 MiB) and naq's jobs.maxPayloadBytes (1 MiB). */
export const BIG_PAYLOAD_BYTES = 2 * 1024 * 1024;

function validJob(id: string, queue: string, extra: Record<string, unknown> = {}) {
  return { v: 1, id, name: 'sleepy', queue, data: { ms: 0 }, attempts: 1, ts: Date.now(), ...extra };
}

/** Publishes every poison case onto `<prefix>.jobs.<queue>.<id>` and reports what each publish did. */
export async function publishPoison(nc: NatsConnection, queue: string, prefix = 'naq'): Promise<PoisonCase[]> {
  const l = layout(prefix);
  const js = jetstream(nc);
  const enc = new TextEncoder();
  // 0xff can start neither JSON nor UTF-8, so the bytes are undecodable whatever follows.
  const bytes = Buffer.concat([Buffer.from([0xff]), randomBytes(511)]);
  const full = JSON.stringify(validJob('poison-truncated', queue));
  const cases: Array<Omit<PoisonCase, 'published' | 'stored'> & { payload: Uint8Array }> = [
    { label: 'random bytes', jobId: 'poison-bytes', reachesStream: true, reason: /^undecodable job: not JSON/, payload: bytes },
    { label: 'truncated JSON', jobId: 'poison-truncated', reachesStream: true, reason: /^undecodable job: not JSON/, payload: enc.encode(full.slice(0, Math.floor(full.length / 2))) },
    {
      label: 'unknown version',
      jobId: 'poison-version',
      reachesStream: true,
      reason: /^undecodable job: unsupported wire version 99/,
      payload: enc.encode(JSON.stringify(validJob('poison-version', queue, { v: 99 }))),
    },
    {
      label: 'unknown handler',
      jobId: 'poison-handler',
      reachesStream: true,
      reason: /no handler named no-such-handler/,
      payload: enc.encode(JSON.stringify(validJob('poison-handler', queue, { name: 'no-such-handler' }))),
    },
    {
      label: '2 MB payload',
      jobId: 'poison-big',
      // nats-server's default max_payload is 1 MiB: it cannot be stored, so it cannot be dead-lettered either.
      reachesStream: false,
      reason: /./,
      payload: enc.encode(JSON.stringify(validJob('poison-big', queue, { data: { ms: 0, pad: 'x'.repeat(BIG_PAYLOAD_BYTES) } }))),
    },
  ];
  const out: PoisonCase[] = [];
  for (const { payload, ...c } of cases) {
    try {
      const ack = await js.publish(l.jobSubject(queue, c.jobId), payload);
      out.push({ ...c, published: `stored seq ${ack.seq}`, stored: true });
    } catch (error) {
      out.push({ ...c, published: `refused: ${(error as Error).message}`, stored: false });
    }
  }
  return out;
}

/**
 * A 2 MiB PUB written on a bare socket, past any client-side check, so what is recorded is
 * what nats-server itself does with it.
 */
export function rawOversizedPublish(url: string, subject: string, size = BIG_PAYLOAD_BYTES, timeoutMs = 5000): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    let buffer = '';
    let settled = false;
    let sent = false;
    const socket = createConnection({ host: u.hostname, port: Number(u.port) });
    const finish = (what: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(what);
    };
    const timer = setTimeout(() => finish(sent ? 'no answer (accepted?)' : 'no INFO from the server'), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (!sent && buffer.includes('\r\n')) {
        sent = true;
        socket.write(`CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nPUB ${subject} ${size}\r\n`);
        // nats-server judges the size from the PUB line alone; the payload follows only if it
        // did not object, so an -ERR is read before a write into a closed socket can fail.
        setTimeout(() => {
          if (settled || socket.destroyed) return;
          socket.write(Buffer.alloc(size, 0x78));
          socket.write('\r\nPING\r\n');
        }, 500).unref();
        return;
      }
      const err = /-ERR ([^\r\n]*)/.exec(buffer);
      if (err) return finish(`-ERR ${err[1]}`);
      if (sent && buffer.includes('PONG')) finish('accepted (PONG)');
    });
    let socketError = '';
    socket.on('error', (e) => (socketError = e.message));
    socket.on('close', () => {
      const err = /-ERR ([^\r\n]*)/.exec(buffer);
      if (err) return finish(`-ERR ${err[1]}`);
      finish(`${sent ? 'connection closed without an error line' : 'connection closed before INFO'}${socketError ? ` (${socketError})` : ''}`);
    });
  });
}

/** Every dead letter on `<prefix>.dead.<queue>`, in stream order. */
export async function readDeadLetters(nc: NatsConnection, queue: string, prefix = 'naq'): Promise<Array<DeadLetter & { seq: number }>> {
  const l = layout(prefix);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(l.deadStream);
  const out: Array<DeadLetter & { seq: number }> = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    try {
      const m = await jsm.streams.getMessage(l.deadStream, { seq });
      if (!m || m.subject !== l.deadSubject(queue)) continue;
      out.push({ ...(JSON.parse(new TextDecoder().decode(m.data)) as DeadLetter), seq });
    } catch {
      // A deleted sequence: nothing there.
    }
  }
  return out;
}

/**
 * Jobs for the `outcome` handler (test/support/fixtures/outcome-handlers.ts) with random plans: results,
 * throws and progress that cannot be stored, hangs past a timeout, hostile log lines.
 */
export function poisonOutcomeJobs(count: number, rand: () => number, queue: string): Array<{ name: 'outcome'; data: Plan; opts: { queue: string; jobId: string; attempts: number; timeoutMs?: number; backoff: { type: 'fixed'; delay: number } } }> {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  const step = (): Step => {
    const r = rand();
    if (r < 0.4) return { progress: pick(PROGRESS_KINDS), swallow: rand() < 0.3 };
    if (r < 0.7) return { sleep: Math.floor(rand() * 30) };
    return { log: pick(['circular', 'bigint', 'error'] as const) };
  };
  const final = (): Final => {
    const r = rand();
    if (r < 0.5) return { return: pick(VALUE_KINDS) };
    if (r < 0.75) return { throw: pick(VALUE_KINDS) };
    if (r < 0.9) return { rejectLater: pick(VALUE_KINDS) };
    return { hang: true };
  };
  return Array.from({ length: count }, (_, i) => {
    const plan: Plan = { steps: Array.from({ length: Math.floor(rand() * 3) }, step), finals: Array.from({ length: 1 + Math.floor(rand() * 2) }, final) };
    return {
      name: 'outcome' as const,
      data: plan,
      opts: { queue, jobId: `bad-${i}`, attempts: 1 + Math.floor(rand() * 2), backoff: { type: 'fixed' as const, delay: 50 }, ...(mayHang(plan) ? { timeoutMs: HANG_TIMEOUT_MS } : {}) },
    };
  });
}
