import { describe, expect, it } from 'vitest';
import { createActor, createMachine, fromCallback, fromPromise, SimulatedClock, type AnyActorRef } from 'xstate';
import {
  connectionMachine,
  type ConnectionEvent,
  type ConnectionHandle,
  type ConnectionNotification,
  type ConnectionSettings,
} from '../../src/machines/connection.js';

const settings: ConnectionSettings = {
  maxAttempts: 4,
  initialDelayMs: 100,
  maxDelayMs: 1000,
  jitter: 0,
  reconnectMaxAttempts: 0,
  reconnectGiveUpAfterMs: 0,
};

const flush = () => new Promise((r) => setTimeout(r, 0));

/** A fake NATS world: connect outcomes are scripted; the status watcher is driven by hand. */
function world(outcomes: Array<'ok' | 'fail' | 'auth'>) {
  const calls: number[] = [];
  let statusSink: ((e: ConnectionEvent) => void) | null = null;
  let closed = 0;
  let abandoned = 0;
  const machine = connectionMachine.provide({
    actors: {
      connect: fromPromise<ConnectionHandle, { attempt: number }>(async ({ input }) => {
        calls.push(input.attempt);
        const outcome = outcomes.shift() ?? 'ok';
        if (outcome === 'ok') return { server: 'nats://fake:4222' };
        const err = new Error(outcome === 'auth' ? 'Authorization Violation' : 'ECONNREFUSED') as Error & { fatal?: boolean };
        if (outcome === 'auth') err.fatal = true;
        throw err;
      }),
      watchStatus: fromCallback<ConnectionEvent, { connection: ConnectionHandle }>(({ sendBack }) => {
        statusSink = sendBack;
        return () => {
          statusSink = null;
        };
      }),
      close: fromPromise(async () => {
        closed++;
      }),
    },
    actions: {
      abandonConnection: () => {
        abandoned++;
      },
    },
  });
  return {
    machine,
    calls,
    status: (e: ConnectionEvent) => statusSink?.(e),
    get closed() {
      return closed;
    },
    get abandoned() {
      return abandoned;
    },
    get watching() {
      return statusSink !== null;
    },
  };
}

/** Records notifications as a subscriber actor would receive them. */
function recorder() {
  const got: string[] = [];
  const logic = createMachine({ on: { '*': { actions: ({ event }) => got.push(event.type) } } });
  return { got, logic };
}

function start(w: ReturnType<typeof world>, extra: Partial<ConnectionSettings> = {}, random = () => 0.5) {
  const clock = new SimulatedClock();
  const actor = createActor(w.machine, { input: { settings: { ...settings, ...extra }, random }, clock });
  const emitted: ConnectionNotification['type'][] = [];
  for (const t of ['CONNECTED', 'DISCONNECTED', 'RECONNECTED', 'CONNECTION_FAILED', 'CONNECTION_CLOSED'] as const) {
    actor.on(t, (e) => emitted.push(e.type));
  }
  actor.start();
  return { clock, actor, emitted };
}

describe('connection machine', () => {
  it('starts idle and connects on CONNECT', async () => {
    const w = world(['ok']);
    const { actor, emitted } = start(w);
    expect(actor.getSnapshot().value).toBe('idle');
    actor.send({ type: 'CONNECT' });
    expect(actor.getSnapshot().value).toBe('connecting');
    await flush();
    expect(actor.getSnapshot().value).toEqual({ online: 'connected' });
    expect(actor.getSnapshot().context.connection?.server).toBe('nats://fake:4222');
    expect(emitted).toEqual(['CONNECTED']);
    expect(w.watching).toBe(true);
  });

  it('retries the initial connect on an exponential backoff schedule', async () => {
    const w = world(['fail', 'fail', 'fail', 'ok']);
    const { actor, clock } = start(w, { maxAttempts: 0, initialDelayMs: 100, maxDelayMs: 300 });
    actor.send({ type: 'CONNECT' });
    await flush();
    expect(w.calls).toEqual([1]);
    expect(actor.getSnapshot().value).toBe('waiting');
    // Attempt 1 failed: wait 100 ms.
    clock.increment(99);
    await flush();
    expect(w.calls).toEqual([1]);
    clock.increment(1);
    await flush();
    expect(w.calls).toEqual([1, 2]);
    // Attempt 2 failed: wait 200 ms.
    clock.increment(199);
    await flush();
    expect(w.calls).toEqual([1, 2]);
    clock.increment(1);
    await flush();
    expect(w.calls).toEqual([1, 2, 3]);
    // Attempt 3 failed: 400 ms capped to the 300 ms maximum.
    clock.increment(299);
    await flush();
    expect(w.calls).toEqual([1, 2, 3]);
    clock.increment(1);
    await flush();
    expect(w.calls).toEqual([1, 2, 3, 4]);
    expect(actor.getSnapshot().value).toEqual({ online: 'connected' });
    expect(actor.getSnapshot().context.attempt).toBe(0);
  });

  it('applies jitter from the injected random source', async () => {
    const w = world(['fail', 'ok']);
    const { actor, clock } = start(w, { jitter: 0.5, initialDelayMs: 100 }, () => 1);
    actor.send({ type: 'CONNECT' });
    await flush();
    // 100 ms reduced by the full 50 % jitter.
    clock.increment(49);
    await flush();
    expect(w.calls).toEqual([1]);
    clock.increment(1);
    await flush();
    expect(w.calls).toEqual([1, 2]);
  });

  it('gives up after maxAttempts and ends failed with the last error', async () => {
    const w = world(['fail', 'fail', 'fail']);
    const { actor, clock, emitted } = start(w, { maxAttempts: 3 });
    actor.send({ type: 'CONNECT' });
    for (let i = 0; i < 3; i++) {
      await flush();
      clock.increment(1000);
    }
    await flush();
    expect(w.calls).toEqual([1, 2, 3]);
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('failed');
    expect(snap.status).toBe('done');
    expect(snap.output).toEqual({ status: 'failed', error: { name: 'Error', message: 'ECONNREFUSED' }, fatal: false });
    expect(emitted).toEqual(['CONNECTION_FAILED']);
  });

  it('fails at once, without retrying, on a fatal error such as refused credentials', async () => {
    const w = world(['auth', 'ok']);
    const { actor } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    expect(w.calls).toEqual([1]);
    expect(actor.getSnapshot().output).toMatchObject({ status: 'failed', fatal: true, error: { message: 'Authorization Violation' } });
  });

  it('goes disconnect → reconnecting → connected and tells subscribers', async () => {
    const w = world(['ok']);
    const rec = recorder();
    const { actor, emitted } = start(w);
    const sub = createActor(rec.logic).start();
    actor.send({ type: 'SUBSCRIBE', ref: sub as AnyActorRef });
    actor.send({ type: 'CONNECT' });
    await flush();
    w.status({ type: 'NATS.DISCONNECT', server: 'nats://fake:4222' });
    expect(actor.getSnapshot().value).toEqual({ online: 'reconnecting' });
    w.status({ type: 'NATS.RECONNECTING' });
    w.status({ type: 'NATS.RECONNECTING' });
    expect(actor.getSnapshot().context.reconnectAttempts).toBe(2);
    w.status({ type: 'NATS.RECONNECT', server: 'nats://fake:4222' });
    expect(actor.getSnapshot().value).toEqual({ online: 'connected' });
    expect(rec.got).toEqual(['CONNECTED', 'DISCONNECTED', 'RECONNECTED']);
    expect(emitted).toEqual(['CONNECTED', 'DISCONNECTED', 'RECONNECTED']);
  });

  it('tells a late subscriber that it is already connected', async () => {
    const w = world(['ok']);
    const { actor } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    const rec = recorder();
    actor.send({ type: 'SUBSCRIBE', ref: createActor(rec.logic).start() as AnyActorRef });
    expect(rec.got).toEqual(['CONNECTED']);
  });

  it('fails after the reconnect attempt limit', async () => {
    const w = world(['ok']);
    const { actor } = start(w, { reconnectMaxAttempts: 2 });
    actor.send({ type: 'CONNECT' });
    await flush();
    w.status({ type: 'NATS.DISCONNECT', server: 's' });
    w.status({ type: 'NATS.RECONNECTING' });
    w.status({ type: 'NATS.RECONNECTING' });
    expect(actor.getSnapshot().value).toEqual({ online: 'reconnecting' });
    w.status({ type: 'NATS.RECONNECTING' });
    expect(actor.getSnapshot().value).toBe('failed');
    expect(actor.getSnapshot().output).toMatchObject({ status: 'failed', error: { message: 'gave up after 2 reconnect attempts' } });
    expect(w.abandoned).toBe(1);
  });

  it('fails when reconnecting outlasts giveUpAfterMs, on the actor clock', async () => {
    const w = world(['ok']);
    const { actor, clock } = start(w, { reconnectGiveUpAfterMs: 5000 });
    actor.send({ type: 'CONNECT' });
    await flush();
    w.status({ type: 'NATS.DISCONNECT', server: 's' });
    clock.increment(4999);
    expect(actor.getSnapshot().value).toEqual({ online: 'reconnecting' });
    clock.increment(1);
    expect(actor.getSnapshot().value).toBe('failed');
  });

  it('never gives up reconnecting when no limit is set', async () => {
    const w = world(['ok']);
    const { actor, clock } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    w.status({ type: 'NATS.DISCONNECT', server: 's' });
    for (let i = 0; i < 100; i++) w.status({ type: 'NATS.RECONNECTING' });
    clock.increment(24 * 3600_000);
    expect(actor.getSnapshot().value).toEqual({ online: 'reconnecting' });
  });

  it('treats the client closing by itself as a failure', async () => {
    const w = world(['ok']);
    const { actor } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    w.status({ type: 'NATS.CLOSED', error: { name: 'Error', message: 'stale connection' } });
    expect(actor.getSnapshot().output).toMatchObject({ status: 'failed', error: { message: 'stale connection' } });
  });

  it('closes on CLOSE: drains through the provided close actor and ends closed', async () => {
    const w = world(['ok']);
    const { actor, emitted } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    actor.send({ type: 'CLOSE' });
    expect(actor.getSnapshot().value).toBe('closing');
    expect(w.watching).toBe(false);
    await flush();
    expect(w.closed).toBe(1);
    expect(actor.getSnapshot().value).toBe('closed');
    expect(actor.getSnapshot().output).toEqual({ status: 'closed' });
    expect(emitted).toEqual(['CONNECTED', 'CONNECTION_CLOSED']);
  });

  it('can be closed while waiting to retry', async () => {
    const w = world(['fail']);
    const { actor } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    expect(actor.getSnapshot().value).toBe('waiting');
    actor.send({ type: 'CLOSE' });
    expect(actor.getSnapshot().value).toBe('closed');
  });

  it('tells a subscriber who arrives during an outage that it is disconnected, then that it reconnected', async () => {
    const w = world(['ok']);
    const { actor } = start(w);
    actor.send({ type: 'CONNECT' });
    await flush();
    w.status({ type: 'NATS.DISCONNECT', server: 's' });
    const rec = recorder();
    actor.send({ type: 'SUBSCRIBE', ref: createActor(rec.logic).start() as AnyActorRef });
    w.status({ type: 'NATS.RECONNECT', server: 's' });
    expect(rec.got).toEqual(['DISCONNECTED', 'RECONNECTED']);
  });
});
