import { JetStreamApiError } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import { NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { OperationTimeoutError } from '../../src/core/errors.js';
import { isTransient, withRetry } from '../../src/core/retry.js';

// What the JetStream client throws when a clustered stream has no leader for a moment: the
// request found no responders, and the client reports "jetstream is not enabled".
const { JetStreamNotEnabled } = jserrors;
const leaderless = () => new JetStreamNotEnabled('jetstream is not enabled', { cause: new RequestError('no responders', { cause: new NoRespondersError('$KV.b.k') }) });

describe('transient errors', () => {
  it('are the ones a reconnect or an election cures, found anywhere in the cause chain', () => {
    expect(isTransient(new TimeoutError())).toBe(true);
    expect(isTransient(new NoRespondersError('$JS.API.INFO'))).toBe(true);
    expect(isTransient(leaderless())).toBe(true);
  });

  it('exclude semantic JetStream errors and closed connections', () => {
    expect(isTransient(new JetStreamApiError({ code: 400, err_code: 10071, description: 'wrong last sequence: 3' }))).toBe(false);
    expect(isTransient(new JetStreamNotEnabled('jetstream not enabled for account'))).toBe(false);
    expect(isTransient(new RequestError('connection closed'))).toBe(false);
    expect(isTransient(new Error('bad argument'))).toBe(false);
  });

  it('are retried until the operation succeeds; others fail at once', async () => {
    let calls = 0;
    const value = await withRetry('kv put', { timeoutMs: 5000, initialDelayMs: 1, maxDelayMs: 5 }, async () => {
      if (++calls < 3) throw leaderless();
      return 'ok';
    });
    expect(value).toBe('ok');
    expect(calls).toBe(3);

    calls = 0;
    const semantic = new JetStreamApiError({ code: 400, err_code: 10071, description: 'wrong last sequence: 3' });
    await expect(
      withRetry('kv update', { timeoutMs: 5000, initialDelayMs: 1, maxDelayMs: 5 }, async () => {
        calls++;
        throw semantic;
      }),
    ).rejects.toBe(semantic);
    expect(calls).toBe(1);
  });

  it('turn into an OperationTimeoutError naming the operation once the deadline passes', async () => {
    const failure = withRetry('kv put naq_jobs/x', { timeoutMs: 100, initialDelayMs: 5, maxDelayMs: 10 }, async () => {
      throw leaderless();
    });
    await expect(failure).rejects.toBeInstanceOf(OperationTimeoutError);
    await expect(failure).rejects.toThrow(/kv put naq_jobs\/x/);
  });
});
