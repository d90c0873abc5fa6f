import { errors as undiciErrors } from 'undici';
import { describe, expect, it } from 'vitest';
import { BodyTooLargeError } from './request-body.ts';
import { isUpstreamFailure, mayRetry } from './upstream-failures.ts';

const withCode = (code: string) => Object.assign(new Error(code), { code });

describe('mayRetry', () => {
  it('retries any method whose connection was never made, when the body can be sent again', () => {
    for (const code of ['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH']) {
      expect(mayRetry(withCode(code), 'POST', true, false)).toBe(true);
      expect(mayRetry(withCode(code), 'GET', true, false)).toBe(true);
    }
  });

  it('retries a GET or DELETE whose connection broke before the answer, never a POST', () => {
    const broke = new undiciErrors.SocketError('other side closed');
    expect(mayRetry(broke, 'GET', true, false)).toBe(true);
    expect(mayRetry(withCode('ECONNRESET'), 'DELETE', true, false)).toBe(true);
    expect(mayRetry(broke, 'POST', true, false)).toBe(false);
  });

  it('never retries a streamed body, a client that left, a timeout or an unknown error', () => {
    expect(mayRetry(withCode('ECONNREFUSED'), 'POST', false, false)).toBe(false);
    expect(mayRetry(withCode('ECONNREFUSED'), 'GET', true, true)).toBe(false);
    expect(mayRetry(new undiciErrors.HeadersTimeoutError(), 'GET', true, false)).toBe(false);
    expect(mayRetry(new Error('something'), 'GET', true, false)).toBe(false);
  });
});

describe('isUpstreamFailure', () => {
  it('counts unreachable, broken and silent servers, not clients that left or sent too much', () => {
    expect(isUpstreamFailure(withCode('ECONNREFUSED'), false)).toBe(true);
    expect(isUpstreamFailure(new undiciErrors.SocketError('other side closed'), false)).toBe(true);
    expect(isUpstreamFailure(new undiciErrors.HeadersTimeoutError(), false)).toBe(true);
    expect(isUpstreamFailure(withCode('ECONNREFUSED'), true)).toBe(false);
    expect(isUpstreamFailure(new BodyTooLargeError(10), false)).toBe(false);
    expect(isUpstreamFailure(new Error('unknown'), false)).toBe(false);
  });
});
