/** Reading JetStream's answer to a publish: what the publisher resolves or rejects each write with. */
import { describe, expect, it } from 'vitest';
import { commonPubAck, readPubAck } from '../../src/actors/nats/pub-ack.js';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('readPubAck', () => {
  // Answers as nats-server writes them, and shapes it could: each must read as JSON.parse reads it.
  const answers = [
    // nats-server 2.9's own (server/stream.go): a space before "seq", and in "duplicate": true.
    '{"stream":"KV_naq_jobs", "seq":100001}',
    '{"stream":"NAQ_EVENTS", "seq":42,"duplicate": true}',
    '{"stream":"KV_naq_jobs", "domain":"hub", "seq":7}',
    '{"stream":"KV_naq_jobs","seq":1}',
    '{"stream":"KV_naq_jobs" ,\t"seq" :\n12 }',
    '{"stream":"KV_naq_jobs", "seq":12 , "duplicate" : true }  ',
    '{"stream":"KV_naq_jobs", "seq":12, "duplicate": false}',
    '{"stream":"KV_naq_jobs","seq":123456789012345}',
    '{"stream":"NAQ_JOBS","seq":42,"duplicate":true}',
    '{"stream":"NAQ_JOBS","seq":42,"duplicate":false}',
    '{"stream":"NAQ_JOBS","domain":"hub","seq":7}',
    '{"stream":"NAQ_JOBS","seq":7,"domain":"hub"}',
    '{"stream":"ÉVÉNEMENTS","seq":3}',
    '{"stream":"a\\"b","seq":3}',
    '{"stream":"NAQ_JOBS","seq":9007199254740993}',
    '{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 4"},"stream":"KV_naq_jobs","seq":0}',
    '{"error":{"code":503,"err_code":10077,"description":"maximum messages per subject exceeded"}}',
    '{"seq":5,"stream":"NAQ_JOBS"}',
  ];

  it.each(answers)('reads %s as JSON.parse does', (text) => {
    expect(readPubAck(bytes(text))).toEqual(JSON.parse(text));
  });

  it('the answers nats-server writes are read in place, not by JSON.parse', () => {
    for (const text of ['{"stream":"KV_naq_jobs", "seq":100001}', '{"stream":"NAQ_EVENTS", "seq":42,"duplicate": true}', '{"stream":"KV_naq_jobs","seq":1}']) {
      expect(commonPubAck(bytes(text)), text).toEqual(JSON.parse(text));
    }
    // What it leaves to JSON.parse.
    for (const text of ['{"stream":"KV_naq_jobs", "domain":"hub", "seq":7}', '{"stream":"KV_naq_jobs", "seq":12, "duplicate": false}', '{"stream":"KV_naq_jobs", "seq":12}x']) {
      expect(commonPubAck(bytes(text)), text).toBeUndefined();
    }
  });

  it('answers naming other streams in turn each get their own name', () => {
    // The name of the last answer is reused when the bytes match: a different one must not be.
    expect(readPubAck(bytes('{"stream":"A_STREAM","seq":1}')).stream).toBe('A_STREAM');
    expect(readPubAck(bytes('{"stream":"B_STREAM","seq":2}')).stream).toBe('B_STREAM');
    expect(readPubAck(bytes('{"stream":"B_STREAX","seq":3}')).stream).toBe('B_STREAX');
    expect(readPubAck(bytes('{"stream":"B_STREAX","seq":4}'))).toEqual({ stream: 'B_STREAX', seq: 4 });
  });

  it('an answer cut short, or not JSON, is an error, not a half-read answer', () => {
    for (const text of ['{"stream":"NAQ_JOBS","seq":', '{"stream":"NAQ_JOBS","seq":12', '{"stream":"NAQ_JOBS","seq":01}', '{"stream":"NAQ_JOBS", "seq":1', '{"stream":"NAQ_JOBS", "seq":1,"duplicate": true', '{"stream":"NAQ_JOBS"', 'nope', '']) {
      expect(() => readPubAck(bytes(text)), text).toThrow(SyntaxError);
    }
  });
});
