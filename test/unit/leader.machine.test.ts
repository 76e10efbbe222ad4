import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { leaderMachine, type LeaderNotification } from '../../src/machines/leader.js';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

/** A fake KV key with revisions, shared by any number of candidates. */
function fakeKey() {
  const key = { holder: null as string | null, revision: 0, log: [] as string[] };
  const logic = leaderMachine.provide({
    actors: {
      acquire: fromPromise<number, { candidateId: string }>(async ({ input }) => {
        key.log.push(`acquire ${input.candidateId}`);
        if (key.holder !== null) throw new Error('key exists');
        key.holder = input.candidateId;
        return ++key.revision;
      }),
      renew: fromPromise<number, { candidateId: string; revision: number }>(async ({ input }) => {
        key.log.push(`renew ${input.candidateId}@${input.revision}`);
        if (key.revision !== input.revision || key.holder !== input.candidateId) throw new Error('wrong last sequence');
        return ++key.revision;
      }),
      release: fromPromise<void, { revision: number }>(async ({ input }) => {
        key.log.push(`release @${input.revision}`);
        if (key.revision === input.revision) key.holder = null;
      }),
    },
  });
  return { key, logic };
}

const settings = { ttlMs: 3000, renewMs: 1000, retryMs: 500 };

function start(logic: ReturnType<typeof fakeKey>['logic'], id: string, clock: SimulatedClock) {
  const actor = createActor(logic, { input: { settings, candidateId: id }, clock });
  const seen: string[] = [];
  actor.on('LEADER_ELECTED', (e: LeaderNotification) => seen.push(`${e.type} ${e.candidateId}`));
  actor.on('LEADER_LOST', (e: LeaderNotification) => seen.push(`${e.type} ${e.candidateId}`));
  actor.start();
  return { actor, seen };
}

describe('leader machine', () => {
  it('is elected when the key is free, then renews with its revision every renewMs', async () => {
    const { key, logic } = fakeKey();
    const clock = new SimulatedClock();
    const a = start(logic, 'a', clock);
    await flush();
    expect(a.actor.getSnapshot().value).toBe('leader');
    expect(a.seen).toEqual(['LEADER_ELECTED a']);
    clock.increment(1000);
    await flush();
    clock.increment(1000);
    await flush();
    expect(key.log).toEqual(['acquire a', 'renew a@1', 'renew a@2']);
    expect(a.actor.getSnapshot().context.revision).toBe(3);
  });

  it('stands by while another holds the key, retrying every retryMs', async () => {
    const { key, logic } = fakeKey();
    const clock = new SimulatedClock();
    start(logic, 'a', clock);
    await flush();
    const b = start(logic, 'b', clock);
    await flush();
    expect(b.actor.getSnapshot().value).toBe('follower');
    clock.increment(500);
    await flush();
    expect(key.log.filter((l) => l === 'acquire b')).toHaveLength(2);
    expect(b.seen).toEqual([]);
  });

  it('loses leadership when a renew hits a revision mismatch', async () => {
    const { key, logic } = fakeKey();
    const clock = new SimulatedClock();
    const a = start(logic, 'a', clock);
    await flush();
    // Someone else wrote the key (e.g. it expired and another candidate took it).
    key.holder = 'b';
    key.revision = 99;
    clock.increment(1000);
    await flush();
    expect(a.actor.getSnapshot().value).toBe('follower');
    expect(a.seen).toEqual(['LEADER_ELECTED a', 'LEADER_LOST a']);
  });

  it('takes over once the old leader is gone and the key expired', async () => {
    const { key, logic } = fakeKey();
    const clock = new SimulatedClock();
    const a = start(logic, 'a', clock);
    await flush();
    const b = start(logic, 'b', clock);
    await flush();
    a.actor.stop(); // killed: no step-down
    for (let t = 0; t < 3000; t += 500) {
      clock.increment(500);
      await flush();
    }
    expect(b.actor.getSnapshot().value).toBe('follower');
    key.holder = null; // the TTL ran out
    clock.increment(500);
    await flush();
    expect(b.actor.getSnapshot().value).toBe('leader');
    expect(b.seen).toEqual(['LEADER_ELECTED b']);
  });

  it('steps down on STOP: deletes the key with its revision and ends', async () => {
    const { key, logic } = fakeKey();
    const clock = new SimulatedClock();
    const a = start(logic, 'a', clock);
    await flush();
    a.actor.send({ type: 'STOP' });
    await flush();
    expect(key.log.at(-1)).toBe('release @1');
    expect(key.holder).toBeNull();
    expect(a.actor.getSnapshot().status).toBe('done');
  });

  it('gives up leading when a renew hangs until the lease would run out', async () => {
    const hanging = leaderMachine.provide({
      actors: {
        acquire: fromPromise<number, { candidateId: string }>(async () => 1),
        renew: fromPromise<number, { candidateId: string; revision: number }>(() => new Promise<number>(() => {})),
        release: fromPromise<void, { revision: number }>(async () => {}),
      },
    });
    const clock = new SimulatedClock();
    const a = start(hanging, 'a', clock);
    await flush();
    clock.increment(1000);
    await flush();
    expect(a.actor.getSnapshot().value).toBe('renewing');
    clock.increment(1000);
    expect(a.actor.getSnapshot().value).toBe('follower');
    expect(a.seen).toEqual(['LEADER_ELECTED a', 'LEADER_LOST a']);
  });
});
