/**
 * The live actor tree for the system page, from XState's inspection stream: the observer keeps
 * one entry per actor that has a system id (supervisor, connection, the services, workers,
 * scheduler, leader) — the short-lived promise and callback actors they invoke are left out,
 * they would bury the tree. Snapshots are read when the page asks, never copied per event.
 */
import type { AnyActorRef, InspectionEvent, Observer } from 'xstate';
import { stateName } from '../core/state-name.js';

export interface ActorNode {
  id: string;
  /** 'active', 'done', 'error' or 'stopped'. */
  status: string;
  state: string;
  /** How many times an actor of this id was started again under the same parent. */
  restarts: number;
  startedAt: number;
  /** A few facts worth a glance (the server of the connection, a worker's queue...), scrubbed. */
  facts: Record<string, string | number | boolean>;
  children: ActorNode[];
}

interface Tracked {
  ref: AnyActorRef;
  id: string;
  parentSessionId: string | null;
  startedAt: number;
  restarts: number;
}

type Ref = AnyActorRef & { _parent?: AnyActorRef; systemId?: string };

/** The context fields shown beside an actor's state, when it has them. */
const FACT_KEYS = ['server', 'online', 'queue', 'concurrency', 'candidateId', 'attempt', 'failures', 'totalFailures', 'paused'] as const;

function factsOf(context: unknown, scrub: (s: string) => string): Record<string, string | number | boolean> {
  const facts: Record<string, string | number | boolean> = {};
  if (typeof context !== 'object' || context === null) return facts;
  for (const key of FACT_KEYS) {
    const value = (context as Record<string, unknown>)[key];
    if (typeof value === 'string') facts[key] = scrub(value);
    else if (typeof value === 'number' || typeof value === 'boolean') facts[key] = value;
  }
  return facts;
}

export class ActorTree {
  readonly #actors = new Map<string, Tracked>();
  readonly #scrub: (s: string) => string;

  constructor(secrets: readonly string[] = []) {
    const hidden = secrets.filter((s) => s.length > 0);
    this.#scrub = (s) => hidden.reduce((t, secret) => t.split(secret).join('[redacted]'), s);
  }

  /** Pass as `inspect` to createNaq (or call from an observer that already is). */
  readonly observer: Observer<InspectionEvent> = {
    next: (event) => {
      // XState reports a new actor before it sets its system id: look once the constructor is done.
      if (event.type === '@xstate.actor') {
        const ref = event.actorRef as Ref;
        queueMicrotask(() => this.#add(ref));
      }
    },
  };

  #add(ref: Ref): void {
    if (!ref.systemId) return;
    let parent = ref._parent as Ref | undefined;
    while (parent && !parent.systemId) parent = parent._parent as Ref | undefined;
    const parentSessionId = parent?.sessionId ?? null;
    let restarts = 0;
    // A restarted child is a new actor with the same id: keep the newest, count the others.
    for (const [sessionId, other] of this.#actors) {
      if (other.id === ref.id && other.parentSessionId === parentSessionId) {
        restarts = other.restarts + 1;
        this.#actors.delete(sessionId);
      }
    }
    this.#actors.set(ref.sessionId, { ref, id: ref.id, parentSessionId, startedAt: Date.now(), restarts });
  }

  /** The roots (normally one supervisor) with their children, as they are now. */
  snapshot(): ActorNode[] {
    const nodes = new Map<string, ActorNode>();
    for (const [sessionId, tracked] of this.#actors) {
      const s = tracked.ref.getSnapshot() as { status?: string; value?: unknown; context?: unknown } | undefined;
      nodes.set(sessionId, {
        id: tracked.id,
        status: s?.status ?? 'unknown',
        state: s?.value === undefined ? '' : stateName(s.value),
        restarts: tracked.restarts,
        startedAt: tracked.startedAt,
        facts: factsOf(s?.context, this.#scrub),
        children: [],
      });
    }
    const roots: ActorNode[] = [];
    for (const [sessionId, tracked] of this.#actors) {
      const node = nodes.get(sessionId)!;
      const parent = tracked.parentSessionId ? nodes.get(tracked.parentSessionId) : undefined;
      // A child whose parent is gone (stopped and replaced) hangs from nothing: not shown.
      if (parent) parent.children.push(node);
      else if (!tracked.parentSessionId) roots.push(node);
    }
    return roots;
  }
}
