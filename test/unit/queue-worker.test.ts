import type { JsMsg } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { deliveryCount } from '../../src/actors/worker/queue-worker.js';

/** A delivered message as far as deliveryCount looks: its ack subject, and the client's parse. */
function delivered(reply: string, clientCount = -1): JsMsg {
  return { reply, info: { deliveryCount: clientCount } } as unknown as JsMsg;
}

describe('the attempt number of a delivery', () => {
  it('is read from the ack subject in the form without a domain', () => {
    expect(deliveryCount(delivered('$JS.ACK.NAQ_JOBS.naq-q.1.42.42.1795700261448000000.7'))).toBe(1);
    expect(deliveryCount(delivered('$JS.ACK.NAQ_JOBS.naq-q.3.42.44.1795700261448000000.0'))).toBe(3);
  });

  it('is read from the ack subject in the forms with a domain and an account hash', () => {
    expect(deliveryCount(delivered('$JS.ACK.hub.ACCHASH.NAQ_JOBS.naq-q.2.42.43.1795700261448000000.0'))).toBe(2);
    expect(deliveryCount(delivered('$JS.ACK._.ACCHASH.NAQ_JOBS.naq-q.5.42.43.1795700261448000000.0.r4nd0m'))).toBe(5);
  });

  it('falls back to the client for a subject it does not know', () => {
    expect(deliveryCount(delivered('$JS.ACK.NAQ_JOBS.naq-q.x.42.42.1.0', 4))).toBe(4);
    expect(deliveryCount(delivered('some.other.subject', 6))).toBe(6);
  });
});
