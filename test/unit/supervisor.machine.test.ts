import { describe, expect, it } from 'vitest';
import { createActor, fromCallback, fromPromise, SimulatedClock, type AnyActorRef, type EventObject } from 'xstate';
import { connectionMachine, type ConnectionEvent, type ConnectionHandle } from '../../src/machines/connection.js';
import { serviceMachine, type ServiceInput } from '../../src/machines/service.js';
import { supervisorMachine, type SupervisorInput, type SupervisorReport } from '../../src/machines/supervisor.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

/** A fake world for the supervisor: a scripted connection and services whose setup can be made to fail. */
function world() {
  const log: string[] = [];
  const statusSinks: Array<(e: ConnectionEvent) => void> = [];
  let connectFails = 0;
  const setupFails: Record<string, number> = {};
  const handlers: Record<string, EventObject[]> = {};

  const connection = connectionMachine.provide({
    actors: {
      connect: fromPromise<ConnectionHandle, { attempt: number }>(async () => {
        log.push('connect');
        if (connectFails > 0) {
          connectFails--;
          throw new Error('refused');
        }
        return { server: 'nats://fake' };
      }),
      watchStatus: fromCallback<ConnectionEvent, { connection: ConnectionHandle }>(({ sendBack }) => {
        statusSinks.push(sendBack);
      }),
      close: fromPromise(async () => {
        log.push('close connection');
      }),
    },
  });
  const service = (name: string) =>
    serviceMachine.provide({
      actors: {
        setup: fromPromise<void, ServiceInput>(async () => {
          log.push(`setup ${name}`);
          if ((setupFails[name] ?? 0) > 0) {
            setupFails[name]!--;
            throw new Error(`${name} setup failed`);
          }
        }),
        handler: fromCallback<EventObject, ServiceInput>(({ receive }) => {
          receive((e) => (handlers[name] ??= []).push(e));
        }),
        teardown: fromPromise<void, ServiceInput>(async () => {
          log.push(`teardown ${name}`);
        }),
      },
    });
  const machine = supervisorMachine.provide({
    actors: { connection, streams: service('streams'), kv: service('kv') } as never,
  });
  return {
    machine,
    log,
    handlers,
    lastStatus: (e: ConnectionEvent) => statusSinks.at(-1)?.(e),
    failConnect: (n: number) => {
      connectFails = n;
    },
    failSetup: (name: string, n: number) => {
      setupFails[name] = n;
    },
  };
}

const input = (over: Partial<SupervisorInput['settings']> = {}): SupervisorInput => ({
  services: ['streams', 'kv'],
  settings: { maxRestarts: 3, restartWindowMs: 60_000, restartDelayMs: 100, restartMaxDelayMs: 1000, stopTimeoutMs: 5000, ...over },
  connection: {
    settings: { maxAttempts: 1, initialDelayMs: 10, maxDelayMs: 10, jitter: 0, reconnectMaxAttempts: 0, reconnectGiveUpAfterMs: 0 },
  },
});

function start(w: ReturnType<typeof world>, over: Partial<SupervisorInput['settings']> = {}) {
  const clock = new SimulatedClock();
  const actor = createActor(w.machine, { input: input(over), clock, systemId: 'supervisor' });
  const reports: string[] = [];
  actor.on('report', (r: SupervisorReport) => reports.push(r.msg));
  actor.start();
  return { actor, clock, reports };
}

const childState = (actor: AnyActorRef, id: string) => actor.system.get(id)?.getSnapshot().value;

describe('supervisor machine', () => {
  it('connects first, then starts the services in order, then runs', async () => {
    const w = world();
    const { actor } = start(w);
    await flush();
    expect(w.log).toEqual(['connect', 'setup streams', 'setup kv']);
    expect(actor.getSnapshot().value).toEqual({ active: 'running' });
    expect(actor.getSnapshot().context.live).toEqual(['connection', 'streams', 'kv']);
    expect(childState(actor, 'connection')).toEqual({ online: 'connected' });
    expect(childState(actor, 'kv')).toBe('ready');
  });

  it('forwards requests to a running service and DISCONNECTED / RECONNECTED to every service', async () => {
    const w = world();
    const { actor } = start(w);
    await flush();
    const replyTo = { id: 'r', send: () => {} };
    actor.system.get('kv')!.send({ type: 'kv.get', bucket: 'b', key: 'k', replyTo });
    expect(w.handlers.kv?.map((e) => e.type)).toEqual(['kv.get']);
    w.lastStatus({ type: 'NATS.DISCONNECT', server: 'nats://fake' });
    expect(actor.system.get('streams')!.getSnapshot().context.online).toBe(false);
    w.lastStatus({ type: 'NATS.RECONNECT', server: 'nats://fake' });
    expect(actor.system.get('streams')!.getSnapshot().context.online).toBe(true);
    expect(actor.system.get('kv')!.getSnapshot().context.online).toBe(true);
  });

  it('restarts a failed service after a backoff on the actor clock', async () => {
    const w = world();
    w.failSetup('kv', 1);
    const { actor, clock, reports } = start(w);
    await flush();
    expect(w.log).toEqual(['connect', 'setup streams', 'setup kv']);
    expect(actor.getSnapshot().value).toEqual({ active: 'startingServices' });
    expect(reports).toContain('kv failed');
    clock.increment(99);
    await flush();
    expect(w.log.filter((l) => l === 'setup kv')).toHaveLength(1);
    clock.increment(1);
    await flush();
    expect(w.log.filter((l) => l === 'setup kv')).toHaveLength(2);
    expect(actor.getSnapshot().value).toEqual({ active: 'running' });
    expect(actor.getSnapshot().context.totalFailures).toBe(1);
  });

  it('backs off exponentially between restarts of the same child', async () => {
    const w = world();
    w.failSetup('kv', 2);
    const { clock, reports } = start(w, { maxRestarts: 5 });
    await flush();
    clock.increment(100);
    await flush();
    expect(reports.filter((r) => r.startsWith('restarting kv'))).toEqual(['restarting kv in 100 ms', 'restarting kv in 200 ms']);
    clock.increment(200);
    await flush();
    expect(w.log.filter((l) => l === 'setup kv')).toHaveLength(3);
  });

  it('fails for good after too many restarts in the window', async () => {
    const w = world();
    w.failSetup('kv', 100);
    const { actor, clock } = start(w, { maxRestarts: 2 });
    for (let i = 0; i < 10; i++) {
      await flush();
      clock.increment(1000);
    }
    await flush();
    const snap = actor.getSnapshot();
    expect(snap.status).toBe('done');
    expect(snap.value).toBe('failed');
    expect(snap.output).toEqual({
      status: 'failed',
      failure: { child: 'kv', error: { name: 'Error', message: 'kv setup failed' } },
    });
    expect(w.log.filter((l) => l === 'setup kv')).toHaveLength(3);
  });

  it('forgets restarts once the window has passed', async () => {
    const w = world();
    w.failSetup('kv', 1);
    const { actor, clock } = start(w, { maxRestarts: 1, restartWindowMs: 10_000 });
    await flush();
    clock.increment(100);
    await flush();
    expect(actor.getSnapshot().context.recentRestarts).toBe(1);
    clock.increment(10_000);
    expect(actor.getSnapshot().context.recentRestarts).toBe(0);
    // A service ending on its own after the window is one restart, not the second.
    actor.system.get('kv')!.send({ type: 'STOP' });
    await flush();
    expect(actor.getSnapshot().status).toBe('active');
    expect(actor.getSnapshot().context.recentRestarts).toBe(1);
    clock.increment(100);
    await flush();
    expect(actor.getSnapshot().value).toEqual({ active: 'running' });
    expect(actor.getSnapshot().context.live).toEqual(['connection', 'streams', 'kv']);
  });

  it('stops the services and restarts everything when the connection fails', async () => {
    const w = world();
    const { actor, clock } = start(w);
    await flush();
    w.lastStatus({ type: 'NATS.CLOSED', error: { name: 'Error', message: 'gone' } });
    await flush();
    expect(actor.getSnapshot().value).toEqual({ active: 'recovering' });
    expect(actor.system.get('kv')).toBeUndefined();
    clock.increment(100);
    await flush();
    expect(w.log).toEqual(['connect', 'setup streams', 'setup kv', 'connect', 'setup streams', 'setup kv']);
    expect(actor.getSnapshot().value).toEqual({ active: 'running' });
  });

  it('stops children in reverse order on STOP and ends stopped', async () => {
    const w = world();
    const { actor } = start(w);
    await flush();
    actor.send({ type: 'STOP' });
    await flush();
    expect(w.log.slice(3)).toEqual(['teardown kv', 'teardown streams', 'close connection']);
    expect(actor.getSnapshot().value).toBe('stopped');
    expect(actor.getSnapshot().output).toEqual({ status: 'stopped' });
  });

  it('does not wait forever for a child that will not stop', async () => {
    const w = world();
    const stuck = supervisorMachine.provide({
      actors: {
        ...(w.machine.implementations.actors as object),
        kv: serviceMachine.provide({
          actors: {
            setup: fromPromise(async () => {}),
            handler: fromCallback(() => {}),
            teardown: fromPromise(() => new Promise<void>(() => {})),
          },
        }),
      } as never,
    });
    const clock = new SimulatedClock();
    const actor = createActor(stuck, { input: input({ stopTimeoutMs: 3000 }), clock }).start();
    await flush();
    actor.send({ type: 'STOP' });
    await flush();
    expect(actor.getSnapshot().context.stopQueue).toEqual(['kv', 'streams', 'connection']);
    clock.increment(3000);
    await flush();
    expect(actor.getSnapshot().value).toBe('stopped');
  });

  it('restarts a service whose handler throws (the actor errors rather than ending)', async () => {
    const w = world();
    let handlerStarts = 0;
    const throwing = supervisorMachine.provide({
      actors: {
        ...(w.machine.implementations.actors as object),
        kv: serviceMachine.provide({
          actors: {
            setup: fromPromise(async () => {}),
            handler: fromCallback(({ receive }) => {
              handlerStarts++;
              receive(() => {
                throw new Error('handler blew up');
              });
            }),
          },
        }),
      } as never,
    });
    const clock = new SimulatedClock();
    const actor = createActor(throwing, { input: input(), clock }).start();
    const reports: string[] = [];
    actor.on('report', (r: SupervisorReport) => reports.push(r.msg));
    await flush();
    expect(handlerStarts).toBe(1);
    actor.system.get('kv')!.send({ type: 'kv.get', replyTo: { id: 'r', send: () => {} } });
    await flush();
    expect(reports).toContain('kv failed');
    expect(actor.getSnapshot().context.lastFailure).toEqual({ child: 'kv', error: { name: 'Error', message: 'handler blew up' } });
    expect(actor.system.get('kv')).toBeUndefined();
    clock.increment(100);
    await flush();
    expect(handlerStarts).toBe(2);
    expect(actor.getSnapshot().context.live).toEqual(['connection', 'streams', 'kv']);
  });

  it('restarts a child whose logic rejects outright', async () => {
    const w = world();
    let starts = 0;
    const rejecting = supervisorMachine.provide({
      actors: {
        ...(w.machine.implementations.actors as object),
        kv: fromPromise(async () => {
          starts++;
          throw new Error('kv crashed');
        }),
      } as never,
    });
    const clock = new SimulatedClock();
    const actor = createActor(rejecting, { input: input({ maxRestarts: 2 }), clock }).start();
    await flush();
    expect(starts).toBe(1);
    clock.increment(100);
    await flush();
    expect(starts).toBe(2);
    clock.increment(200);
    await flush();
    expect(starts).toBe(3);
    expect(actor.getSnapshot().output).toMatchObject({ status: 'failed', failure: { child: 'kv', error: { message: 'kv crashed' } } });
  });

  it('fails at once, without restarts, when the connection failure is fatal (credentials refused)', async () => {
    const w = world();
    let connects = 0;
    const refusing = supervisorMachine.provide({
      actors: {
        ...(w.machine.implementations.actors as object),
        connection: connectionMachine.provide({
          actors: {
            connect: fromPromise<ConnectionHandle, { attempt: number }>(async () => {
              connects++;
              throw Object.assign(new Error('Authorization Violation'), { fatal: true });
            }),
          },
        }),
      } as never,
    });
    const clock = new SimulatedClock();
    const actor = createActor(refusing, { input: input({ maxRestarts: 5 }), clock }).start();
    await flush();
    clock.increment(60_000);
    await flush();
    expect(connects).toBe(1);
    expect(actor.getSnapshot().output).toMatchObject({
      status: 'failed',
      failure: { child: 'connection', error: { message: 'Authorization Violation' } },
    });
    expect(actor.getSnapshot().context.totalFailures).toBe(1);
  });
});
