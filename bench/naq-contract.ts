/**
 * The slice of the naq job API the bench drives, written down here because the bench is
 * meant to run both before the job API lands (and then skip the naq lines) and after. The
 * real types come from src/ once they exist; the bench only relies on this shape.
 */
export interface QueueStats {
  pending: number;
  inFlight: number;
  dead: number;
  workers: number;
}

export interface EnqueueSpec {
  name: string;
  data: unknown;
  opts?: { queue?: string };
}

export interface NaqLike {
  start(options?: { timeoutMs?: number }): Promise<void>;
  stop(): Promise<unknown>;
  enqueueBulk?: (jobs: EnqueueSpec[]) => Promise<string[]>;
  enqueue?: (name: string, data: unknown, opts?: { queue?: string } & Record<string, unknown>) => Promise<string>;
  enqueueAt?: (at: number, name: string, data: unknown, opts?: { queue?: string } & Record<string, unknown>) => Promise<string>;
  queueStats?: (queue: string) => Promise<QueueStats>;
  enqueueFlow?: (flow: { name: string; data?: unknown; queue?: string; children: Array<{ name: string; data?: unknown; queue?: string }> }) => Promise<{ id: string }>;
  setQueueLimit?: (queue: string, limit: { max: number; durationMs: number } | null) => Promise<unknown>;
  listJobs?: (filter: { queue?: string; state?: string; name?: string; limit?: number; cursor?: string }) => Promise<{ jobs: Array<{ id: string }>; cursor: string | null }>;
}

export type CreateNaqLike = (
  config: Record<string, unknown>,
  options?: { handlers?: Record<string, (...args: unknown[]) => Promise<unknown>> } & Record<string, unknown>,
) => NaqLike;

/**
 * Loads `createNaq` at run time, so a half-built library (or one without the job API yet)
 * costs the naq lines only, never the raw and BullMQ ones.
 */
export async function loadCreateNaq(): Promise<CreateNaqLike> {
  const mod = (await import('../src/index.js')) as unknown as { createNaq: CreateNaqLike };
  return mod.createNaq;
}

export const NAQ_UNAVAILABLE = 'naq API not available yet';
