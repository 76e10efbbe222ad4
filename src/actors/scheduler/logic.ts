/** The scheduler machine with its leader election (a lease on the leader bucket) and dispatcher on NATS. */
import { hostname } from 'node:os';
import { nuid } from '@nats-io/transport-node';
import { fromCallback, fromPromise } from 'xstate';
import type { NaqConfig } from '../../config/index.js';
import { errorInfo } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { leaderMachine, type LeaderSettings, type LeaseInput } from '../../machines/leader.js';
import { schedulerMachine, type SchedulerInput } from '../../machines/scheduler.js';
import type { ConnectionHandle } from '../../machines/shared.js';
import { encodeJson } from '../../model/job.js';
import { contextOf } from '../nats/context.js';
import { isWrongLastSequence } from '../nats/jetstream.js';
import { ScheduleDispatcher } from './dispatcher.js';
import { FlowTracker } from './flows.js';
import { GroupDispatcher } from './group-dispatcher.js';

const LEADER_KEY = 'scheduler';

export function candidateId(): string {
  return `${hostname()}-${process.pid}-${nuid.next().slice(-6)}`.replace(/[^A-Za-z0-9_=-]/g, '_');
}

/** The scheduler machine with its leader election and dispatcher on NATS. */
export function schedulerLogic(config: NaqConfig, log: Logger) {
  const leader = leaderMachine.provide({
    actors: {
      acquire: fromPromise<number, LeaseInput>(async ({ input }) => {
        const kv = await contextOf(input.connection).storage.leaderKv();
        try {
          return await kv.create(LEADER_KEY, encodeJson({ candidateId: input.candidateId, host: hostname(), pid: process.pid, ts: Date.now() }));
        } catch (error) {
          // Someone holding the lease is the normal case for a follower; anything else is worth seeing.
          if (!isWrongLastSequence(error)) log.debug({ err: error, candidate: input.candidateId }, 'leader lease not acquired');
          throw error;
        }
      }),
      renew: fromPromise<number, LeaseInput & { revision: number }>(async ({ input }) => {
        const kv = await contextOf(input.connection).storage.leaderKv();
        try {
          return await kv.update(LEADER_KEY, encodeJson({ candidateId: input.candidateId, host: hostname(), pid: process.pid, ts: Date.now() }), input.revision);
        } catch (error) {
          log.warn({ err: error, candidate: input.candidateId }, 'leader lease not renewed; this process stops firing schedules');
          throw error;
        }
      }),
      release: fromPromise<void, { revision: number; connection?: ConnectionHandle | undefined }>(async ({ input }) => {
        const kv = await contextOf(input.connection).storage.leaderKv();
        await kv.delete(LEADER_KEY, { previousSeq: input.revision });
      }),
    },
  });
  return schedulerMachine.provide({
    actors: {
      setup: fromPromise<LeaderSettings | void, SchedulerInput>(async ({ input }) => {
        const ctx = contextOf(input.connection);
        await ctx.storage.ensureLayout();
        // The lease is the leader bucket's TTL, set by whichever process created the bucket:
        // renew well inside it, whatever this process's config says.
        const ttlMs = (await (await ctx.storage.leaderKv()).status()).ttl || input.leader.ttlMs;
        if (ttlMs !== input.leader.ttlMs) {
          log.warn(
            { setting: 'scheduler.leaderTtlMs', bucketTtlMs: ttlMs, configured: input.leader.ttlMs },
            `scheduler.leaderTtlMs is ${input.leader.ttlMs} but the ${ctx.layout.leaderBucket} bucket's TTL is ${ttlMs}: the lease follows the bucket (a running leader's lease is never changed under it)`,
          );
        }
        return { ttlMs, renewMs: Math.min(input.leader.renewMs, Math.floor(ttlMs / 3)), retryMs: Math.min(input.leader.retryMs, Math.floor(ttlMs / 3)) };
      }),
      leader,
      dispatcher: fromCallback<{ type: string }, SchedulerInput>(({ input, sendBack }) => {
        const ctx = contextOf(input.connection);
        const dispatcher = new ScheduleDispatcher(ctx, config, log.child({ actor: 'scheduler' }));
        const groups = new GroupDispatcher(ctx, log.child({ actor: 'groups' }));
        const flows = new FlowTracker(ctx, log.child({ actor: 'flows' }));
        log.info({ candidate: input.candidateId }, 'elected scheduler leader; firing schedules');
        ctx.events.emit({ type: 'leader.elected', queue: '_system', data: { candidateId: input.candidateId } });
        dispatcher.start().catch((error: unknown) => sendBack({ type: 'DISPATCHER.FAILED', error: errorInfo(error) }));
        // Grouped jobs wait for their dispatcher; schedules must not stop firing with it.
        groups.start().catch((error: unknown) => log.error({ err: error }, 'the group dispatcher did not start: grouped jobs wait until the next leader'));
        flows.start();
        return () => {
          dispatcher.stop();
          groups.stop();
          flows.stop();
          ctx.events.emit({ type: 'leader.lost', queue: '_system', data: { candidateId: input.candidateId } });
        };
      }),
    },
  });
}
