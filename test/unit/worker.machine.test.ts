import { describe, expect, it } from 'vitest';
import { createActor, createMachine, fromCallback, fromPromise, SimulatedClock, type AnyActorRef } from 'xstate';
import { workerMachine, type ProcessorCommand, type WorkerEvent, type WorkerInput } from '../../src/machines/worker.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

function world(options: { setupFails?: boolean } = {}) {
  const commands: ProcessorCommand['type'][] = [];
  let back: ((e: WorkerEvent) => void) | null = null;
  let processorStops = 0;
  const machine = workerMachine.provide({
    actors: {
      setup: fromPromise<void, WorkerInput>(async () => {
        if (options.setupFails) throw new Error('no consumer');
      }),
      processor: fromCallback<ProcessorCommand, WorkerInput>(({ receive, sendBack }) => {
        back = sendBack;
        receive((c) => commands.push(c.type));
        return () => {
          processorStops++;
        };
      }),
    },
  });
  return {
    machine,
    commands,
    send: (e: WorkerEvent) => back?.(e),
    get processorStops() {
      return processorStops;
    },
  };
}

/** The worker reports SERVICE_READY to its parent; a tiny parent records it. */
function startUnderParent(w: ReturnType<typeof world>, clock: SimulatedClock) {
  const seen: string[] = [];
  const parent = createMachine({
    invoke: {
      id: 'w',
      src: w.machine,
      input: { name: 'worker:q', queue: 'q', connection: { server: 's' }, heartbeatMs: 1000, drainGraceMs: 3000 },
    },
    on: { '*': { actions: ({ event }) => seen.push(event.type) } },
  });
  const actor = createActor(parent, { clock }).start();
  const worker = () => actor.getSnapshot().children.w as AnyActorRef;
  return { actor, worker, seen };
}

describe('worker machine', () => {
  it('prepares, reports ready, then serves: running with a heartbeat on the clock', async () => {
    const w = world();
    const clock = new SimulatedClock();
    const { worker, seen } = startUnderParent(w, clock);
    await flush();
    expect(seen).toContain('SERVICE_READY');
    expect(worker().getSnapshot().value).toEqual({ active: { serving: { flow: 'running', hold: 'open', heartbeat: 'waiting' } } });
    clock.increment(999);
    expect(w.commands).toEqual([]);
    clock.increment(1);
    clock.increment(1000);
    expect(w.commands).toEqual(['HEARTBEAT', 'HEARTBEAT']);
  });

  it('pauses on DISCONNECTED and resumes on RECONNECTED', async () => {
    const w = world();
    const { worker } = startUnderParent(w, new SimulatedClock());
    await flush();
    worker().send({ type: 'DISCONNECTED', server: 's' });
    expect(worker().getSnapshot().value).toMatchObject({ active: { serving: { flow: 'paused' } } });
    worker().send({ type: 'RECONNECTED', connection: { server: 's' }, server: 's' });
    expect(worker().getSnapshot().value).toMatchObject({ active: { serving: { flow: 'running' } } });
    expect(w.commands).toEqual(['PAUSE', 'RESUME']);
  });

  it('holds while its queue is paused by an operator, independently of the link, and releases on resume', async () => {
    const w = world();
    const { worker } = startUnderParent(w, new SimulatedClock());
    await flush();
    w.send({ type: 'QUEUE.PAUSED' });
    expect(worker().getSnapshot().value).toMatchObject({ active: { serving: { flow: 'running', hold: 'held' } } });
    // A repeated notice (the watch replays the current value) changes nothing.
    w.send({ type: 'QUEUE.PAUSED' });
    worker().send({ type: 'DISCONNECTED', server: 's' });
    worker().send({ type: 'RECONNECTED', connection: { server: 's' }, server: 's' });
    expect(worker().getSnapshot().value).toMatchObject({ active: { serving: { flow: 'running', hold: 'held' } } });
    w.send({ type: 'QUEUE.RESUMED' });
    w.send({ type: 'QUEUE.RESUMED' });
    expect(worker().getSnapshot().value).toMatchObject({ active: { serving: { flow: 'running', hold: 'open' } } });
    expect(w.commands).toEqual(['HOLD', 'PAUSE', 'RESUME', 'RELEASE']);
  });

  it('drains on STOP while held: running jobs finish as on any drain', async () => {
    const w = world();
    const { worker } = startUnderParent(w, new SimulatedClock());
    await flush();
    w.send({ type: 'QUEUE.PAUSED' });
    worker().send({ type: 'STOP' });
    expect(worker().getSnapshot().value).toEqual({ active: 'draining' });
    expect(w.commands).toEqual(['HOLD', 'DRAIN']);
  });

  it('drains on STOP; NAKs the rest after the grace period; ends stopped when the processor is drained', async () => {
    const w = world();
    const clock = new SimulatedClock();
    const { worker, seen } = startUnderParent(w, clock);
    await flush();
    worker().send({ type: 'STOP' });
    expect(worker().getSnapshot().value).toEqual({ active: 'draining' });
    expect(w.commands).toEqual(['DRAIN']);
    clock.increment(2999);
    expect(w.commands).toEqual(['DRAIN']);
    clock.increment(1);
    expect(w.commands).toEqual(['DRAIN', 'NAK_REST']);
    // No heartbeat while draining.
    clock.increment(5000);
    expect(w.commands).toEqual(['DRAIN', 'NAK_REST']);
    w.send({ type: 'PROCESSOR.DRAINED' });
    await flush();
    expect(seen).toContain('xstate.done.actor.w');
    expect(w.processorStops).toBe(1);
  });

  it('ends failed when its processor fails, and when setup fails', async () => {
    const w = world();
    const { seen } = startUnderParent(w, new SimulatedClock());
    await flush();
    w.send({ type: 'PROCESSOR.FAILED', error: { name: 'Error', message: 'consumer deleted' } });
    await flush();
    expect(seen).toContain('xstate.done.actor.w');

    const broken = world({ setupFails: true });
    const clock = new SimulatedClock();
    const parent = createActor(
      createMachine({
        invoke: {
          id: 'w',
          src: broken.machine,
          input: { name: 'worker:q', queue: 'q', connection: { server: 's' }, heartbeatMs: 1000, drainGraceMs: 3000 },
          onDone: { actions: ({ event }) => outputs.push(event.output) },
        },
      }),
      { clock },
    );
    const outputs: unknown[] = [];
    parent.start();
    await flush();
    expect(outputs).toEqual([{ status: 'failed', error: { name: 'Error', message: 'no consumer' } }]);
  });
});
