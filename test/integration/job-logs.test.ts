/**
 * Job logs (issue 11): what a handler logs through ctx.log is kept with its job, across its
 * retries, and shown by getJob and `naq job ID --logs`; listing and bulk actions through the CLI.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startServer, stopAllServers } from '../support/harness.js';
import { stopNaqs, worker } from '../support/naqs.js';
import { runCli } from '../support/processes.js';

afterEach(stopNaqs);
afterAll(stopAllServers);

describe('job logs', () => {
  it('a failed job keeps what each attempt logged; naq job ID --logs prints it; the CLI lists and retries it', async () => {
    const server = await startServer();
    const w = await worker(
      server,
      {
        charge: async (data: { card: string }, ctx) => {
          ctx.log(`charging card ${data.card}`);
          ctx.log.warn({ attempt: ctx.attempt }, 'gateway slow');
          throw new Error(`gateway refused card ${data.card}`);
        },
      },
      {},
    );
    const id = await w.enqueue('charge', { card: '4242' }, { attempts: 2, backoff: { type: 'fixed', delay: 10 } });
    await expect(w.waitFor(id, { timeoutMs: 5000 })).rejects.toThrow('gateway refused card 4242');
    const record = await w.getJob(id);
    expect(record!.logs!.map((l) => [l.attempt, l.level, l.msg])).toEqual([
      [1, 'info', 'charging card 4242'],
      [1, 'warn', 'gateway slow {"attempt":1}'],
      [2, 'info', 'charging card 4242'],
      [2, 'warn', 'gateway slow {"attempt":2}'],
    ]);

    const env = { NAQ_NATS_URL: server.url };
    const logs = await runCli(['job', id, '--logs'], env);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^\S+Z INFO {2}#1 charging card 4242$/),
      expect.stringMatching(/^\S+Z WARN {2}#1 gateway slow \{"attempt":1\}$/),
      expect.stringMatching(/#2 charging card 4242$/),
      expect.stringMatching(/#2 gateway slow/),
    ]);
    const shown = await runCli(['job', id], env);
    expect(shown.stdout).toContain(`logs 4 lines: naq job ${id} --logs`);
    const bad = await runCli(['job', 'cancel', id, '--logs'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--logs goes with naq job ID');

    const listed = await runCli(['jobs', 'ls', '--state', 'failed', '--json'], env);
    expect(JSON.parse(listed.stdout)).toMatchObject({ jobs: [{ id, state: 'failed', name: 'charge', error: 'gateway refused card 4242' }], cursor: null });
    const text = await runCli(['jobs', 'ls', '--state', 'dead'], env);
    expect(text.stdout).toContain(`${id}\tdead\tcharge\tdefault\t`);
    const retried = await runCli(['jobs', 'retry', '--queue', 'default', '--state', 'failed'], env);
    expect(retried.stdout).toContain('retried 1 jobs of default');
    await expect(w.waitFor(id, { timeoutMs: 5000 })).rejects.toThrow('gateway refused');
  });
});
