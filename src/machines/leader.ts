import { assign, enqueueActions, fromPromise, setup } from 'xstate';
import { notProvided as provideLater, type ConnectionHandle } from './shared.js';
import { errorInfo, type ErrorInfo } from '../core/errors.js';

/**
 * Leader election on one KV key with a TTL (the `naq_leader` bucket):
 *
 *   candidate (create the key) → leader → renewing (update with the held revision) → leader
 *       ↑            ↓ taken                      ↓ mismatch, error or lease about to run out
 *       └─ follower ←┴───────────────────────────┘
 *   STOP: a leader steps down (delete with its revision) → stopped
 *
 * The renew interval sits well inside the TTL, so a live leader never loses its key; a dead
 * one's key expires after the TTL and a follower's next attempt takes it. Revision checks
 * mean two processes can never both believe they renewed the same lease.
 */
export interface LeaderSettings {
  ttlMs: number;
  renewMs: number;
  retryMs: number;
}

export interface LeaderInput {
  settings: LeaderSettings;
  /** Who this candidate is (written into the key). */
  candidateId: string;
  /** The connection the lease is held on, passed to the provided actors (opaque here). */
  connection?: ConnectionHandle;
}

/** What the provided lease actors are given. */
export interface LeaseInput {
  candidateId: string;
  connection?: ConnectionHandle | undefined;
}

export interface LeaderContext extends LeaderInput {
  revision: number | null;
  lastError: ErrorInfo | null;
  terms: number;
}

export type LeaderEvent = { type: 'STOP' };

/** Sent to the parent and emitted, so hosts can follow leadership. */
export type LeaderNotification = { type: 'LEADER_ELECTED'; candidateId: string; revision: number } | { type: 'LEADER_LOST'; candidateId: string; reason: string };

const notProvided = (name: string) => provideLater('leader machine', name);

export const leaderMachine = setup({
  types: {
    context: {} as LeaderContext,
    events: {} as LeaderEvent,
    input: {} as LeaderInput,
    emitted: {} as LeaderNotification,
  },
  actors: {
    /** Creates the key if absent; resolves with its revision, rejects if someone holds it. */
    acquire: fromPromise<number, LeaseInput>(notProvided('acquire')),
    /** Updates the key at `revision`; resolves with the new revision. */
    renew: fromPromise<number, LeaseInput & { revision: number }>(notProvided('renew')),
    /** Deletes the key at `revision` (stepping down). */
    release: fromPromise<void, { revision: number; connection?: ConnectionHandle | undefined }>(notProvided('release')),
  },
  actions: {
    /** Tells the parent (when there is one: hosts may run this machine alone) and emits. */
    notify: enqueueActions(({ enqueue, self }, notification: LeaderNotification) => {
      if ((self as { _parent?: unknown })._parent) enqueue.sendParent(notification);
      enqueue.emit(notification);
    }),
  },
  delays: {
    retry: ({ context }) => context.settings.retryMs,
    renew: ({ context }) => context.settings.renewMs,
    // The lease taken at the last renew runs out TTL after it; stop leading before then.
    leaseLeft: ({ context }) => Math.max(1, context.settings.ttlMs - context.settings.renewMs - Math.min(context.settings.renewMs, 1000)),
  },
}).createMachine({
  id: 'leader',
  context: ({ input }) => ({ ...input, revision: null, lastError: null, terms: 0 }),
  initial: 'candidate',
  states: {
    candidate: {
      invoke: {
        src: 'acquire',
        input: ({ context }) => ({ candidateId: context.candidateId, connection: context.connection }),
        onDone: {
          target: 'leader',
          actions: [
            assign({ revision: ({ event }) => event.output, terms: ({ context }) => context.terms + 1, lastError: null }),
            { type: 'notify', params: ({ context, event }) => ({ type: 'LEADER_ELECTED', candidateId: context.candidateId, revision: event.output }) },
          ],
        },
        onError: { target: 'follower', actions: assign({ lastError: ({ event }) => errorInfo(event.error) }) },
      },
      on: { STOP: 'stopped' },
    },
    follower: {
      after: { retry: 'candidate' },
      on: { STOP: 'stopped' },
    },
    leader: {
      after: { renew: 'renewing' },
      on: { STOP: 'steppingDown' },
    },
    renewing: {
      invoke: {
        src: 'renew',
        input: ({ context }) => ({ candidateId: context.candidateId, connection: context.connection, revision: context.revision! }),
        onDone: { target: 'leader', actions: assign({ revision: ({ event }) => event.output }) },
        onError: {
          target: 'follower',
          actions: [
            assign({ revision: null, lastError: ({ event }) => errorInfo(event.error) }),
            { type: 'notify', params: ({ context, event }) => ({ type: 'LEADER_LOST', candidateId: context.candidateId, reason: errorInfo(event.error).message }) },
          ],
        },
      },
      after: {
        leaseLeft: {
          target: 'follower',
          actions: [
            assign({ revision: null, lastError: { name: 'Error', message: 'renew did not complete before the lease ran out' } }),
            { type: 'notify', params: ({ context }) => ({ type: 'LEADER_LOST', candidateId: context.candidateId, reason: 'renew too slow' }) },
          ],
        },
      },
      on: { STOP: 'steppingDown' },
    },
    steppingDown: {
      entry: { type: 'notify', params: ({ context }) => ({ type: 'LEADER_LOST', candidateId: context.candidateId, reason: 'stepped down' }) },
      invoke: {
        src: 'release',
        input: ({ context }) => ({ connection: context.connection, revision: context.revision! }),
        onDone: 'stopped',
        onError: 'stopped',
      },
    },
    stopped: { type: 'final', entry: assign({ revision: null }) },
  },
});

export type LeaderMachine = typeof leaderMachine;
