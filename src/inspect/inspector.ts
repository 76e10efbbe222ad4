import { createWriteStream, type WriteStream } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Inspect from '@statelyai/inspect';
import type * as InspectServer from '@statelyai/inspect/server';
import type { InspectionEvent, Observer } from 'xstate';
import { createScrubber } from '../core/redact.js';
import { stateName } from '../core/state-name.js';

export interface InspectorOptions {
  /** Serve the Stately inspector bridge on this port (0: no server, e.g. record only). */
  port?: number;
  /** Write every inspection event as a JSON line. */
  recordFile?: string;
  secrets: string[];
  /** Let job / KV payloads through (off by default). */
  payloads?: boolean;
}

export interface RunningInspector {
  /** Pass as `inspect` when creating the root actor. */
  observer: Observer<InspectionEvent>;
  url: string | null;
  stop(): Promise<void>;
}

/** One inspection event in a recording: the actor it concerns and what changed, scrubbed. */
export interface RecordedInspectionEvent {
  type: InspectionEvent['type'];
  actorId: string;
  /** The actor's system id ('supervisor', 'connection', 'kv', ...) when it has one. */
  systemId?: string;
  sessionId: string;
  sourceId?: string;
  event?: unknown;
  snapshot?: { status: string; value?: unknown; context?: unknown };
}

export function recordEvent(e: InspectionEvent, scrub: <T>(v: T) => T): RecordedInspectionEvent {
  const actorRef = e.actorRef as unknown as { id: string; sessionId: string; systemId?: string };
  const out: RecordedInspectionEvent = { type: e.type, actorId: actorRef.id, sessionId: actorRef.sessionId };
  if (actorRef.systemId) out.systemId = actorRef.systemId;
  if ('sourceRef' in e && e.sourceRef) out.sourceId = (e.sourceRef as unknown as { id: string }).id;
  if ('event' in e) out.event = scrub(e.event);
  if ('snapshot' in e) {
    const s = e.snapshot as { status: string; value?: unknown; context?: unknown };
    out.snapshot = { status: s.status, value: s.value, context: scrub(s.context) };
  }
  return out;
}

/**
 * Starts the local inspector bridge from @statelyai/inspect and/or a recording, and returns
 * the observer the actor system reports to. Every event is scrubbed of secrets (and of
 * payloads unless asked) before it leaves the process.
 */
const require = createRequire(import.meta.url);

/** Loaded only when the inspector is asked for: ~8 MB of memory every other process is spared. */
function inspectModules(): { ws: typeof Inspect; server: typeof InspectServer } {
  return { ws: require('@statelyai/inspect') as typeof Inspect, server: require('@statelyai/inspect/server') as typeof InspectServer };
}

export function startInspector(options: InspectorOptions): RunningInspector {
  const scrub = createScrubber({ secrets: options.secrets, payloads: options.payloads ?? false });
  let server: { stop(): void } | null = null;
  let ws: ReturnType<typeof Inspect.createWebSocketInspector> | null = null;
  let url: string | null = null;
  if (options.port) {
    const { ws: inspect, server: inspectServer } = inspectModules();
    server = inspectServer.createInspectorServer({ port: options.port, autoOpen: false });
    url = `http://localhost:${options.port}`;
    ws = inspect.createWebSocketInspector({
      url: `ws://localhost:${options.port}`,
      sanitizeEvent: (event) => scrub(event),
      sanitizeContext: (context) => scrub(context),
    });
  }
  let file: WriteStream | null = null;
  if (options.recordFile) file = createWriteStream(options.recordFile, { flags: 'w' });
  const observer: Observer<InspectionEvent> = {
    next: (e) => {
      ws?.inspect.next?.(e);
      if (file) file.write(`${JSON.stringify(recordEvent(e, scrub))}\n`);
    },
  };
  return {
    observer,
    url,
    async stop() {
      ws?.stop();
      server?.stop();
      if (file) await new Promise<void>((resolve) => file!.end(resolve));
    },
  };
}

/**
 * Replays a recording (`--inspect-record`): for each actor (by id: 'supervisor',
 * 'connection', 'worker:emails', 'leader', ...), the sequence of states it went through,
 * repeats collapsed — what the inspector showed live, examined offline.
 */
export function replayRecording(recording: string | RecordedInspectionEvent[]): Map<string, string[]> {
  const events =
    typeof recording === 'string'
      ? recording
          .split('\n')
          .filter((l) => l.trim().length > 0)
          .map((l) => JSON.parse(l) as RecordedInspectionEvent)
      : recording;
  const states = new Map<string, string[]>();
  for (const e of events) {
    if (e.type !== '@xstate.snapshot' || e.snapshot?.value === undefined) continue;
    const seq = states.get(e.actorId) ?? [];
    const name = stateName(e.snapshot.value);
    if (seq.at(-1) !== name) seq.push(name);
    states.set(e.actorId, seq);
  }
  return states;
}
