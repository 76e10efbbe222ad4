/**
 * What every machine shares: the notifications the connection sends its subscribers, and the
 * placeholder for an actor a machine names but leaves to `machine.provide(...)` (rule 1: the
 * machines do no I/O; src/actors/ supplies it).
 */

/** What the provided `connect` actor resolves to: an opaque handle to the live connection. */
export interface ConnectionHandle {
  readonly server: string;
}

/** Sent by the connection machine to every subscriber as the link comes, goes and returns. */
export type ConnectionChange =
  | { type: 'CONNECTED'; connection: ConnectionHandle; server: string }
  | { type: 'DISCONNECTED'; server: string | null }
  | { type: 'RECONNECTED'; connection: ConnectionHandle; server: string };

/** The logic of an actor `machine` names and does not implement: it fails, saying which. */
export function notProvided(machine: string, actor: string): () => never {
  return () => {
    throw new Error(`${machine}: actor "${actor}" was not provided`);
  };
}
