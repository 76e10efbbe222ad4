import { describe, expect, it } from 'vitest';
import type { JobContext } from '../../src/actors/worker/queue-worker.js';
import { createNaq, type JobData, type JobResult } from '../../src/naq.js';

// Checked by `tsc` (npm test builds first): enqueue is typed against the handler map.
const handlers = {
  resize: async (data: { url: string; width: number }, _ctx: JobContext) => ({ ok: true, width: data.width }),
  ping: async () => 'pong' as const,
};

type Data = JobData<typeof handlers, 'resize'>;
type Result = JobResult<typeof handlers, 'resize'>;

function compileOnly() {
  const naq = createNaq({}, { handlers });
  void naq.enqueue('resize', { url: 'a', width: 3 });
  // @ts-expect-error an unknown job name is a type error
  void naq.enqueue('rezise', { url: 'a', width: 3 });
  // @ts-expect-error data of the wrong shape is a type error
  void naq.enqueue('resize', { url: 'a' });
  void naq.enqueueBulk([{ name: 'ping', data: undefined }]);
  // The actors naq names come typed: snapshots, events they accept, events they emit.
  const server: string | null | undefined = naq.get('connection')?.getSnapshot().context.server;
  naq.get('leader')?.on('LEADER_ELECTED', (e) => void e.revision);
  naq.get('worker:default')?.send({ type: 'STOP' });
  // @ts-expect-error the connection accepts no such event
  naq.get('connection')?.send({ type: 'NOPE' });
  void server;
}

describe('typed API', () => {
  it('derives job data and result types from the handler map', () => {
    const data: Data = { url: 'x', width: 1 };
    const result: Result = { ok: true, width: 1 };
    expect(typeof compileOnly).toBe('function');
    expect(data.width + result.width).toBe(2);
  });
});
