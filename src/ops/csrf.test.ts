import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCsrfToken, verifyCsrfToken } from './csrf.ts';

const secret = randomBytes(32);

/** Replaces the character at `index` with a different base64url character. */
function flip(token: string, index: number): string {
  const ch = token[index] === 'A' ? 'B' : 'A';
  return token.slice(0, index) + ch + token.slice(index + 1);
}

describe('csrf tokens', () => {
  it('verify for the binding they were made for', () => {
    const token = createCsrfToken(secret, 'interaction-1');
    expect(token).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(verifyCsrfToken(secret, 'interaction-1', token)).toBe(true);
  });

  it('are fresh each time, and each verifies', () => {
    const a = createCsrfToken(secret, 'i');
    const b = createCsrfToken(secret, 'i');
    expect(a).not.toBe(b);
    expect(verifyCsrfToken(secret, 'i', a) && verifyCsrfToken(secret, 'i', b)).toBe(true);
  });

  it('fail when tampered with, in the nonce or the MAC', () => {
    const token = createCsrfToken(secret, 'interaction-1');
    for (const index of [0, 10, 21, 22, 40, 63]) {
      expect(verifyCsrfToken(secret, 'interaction-1', flip(token, index)), `index ${index}`).toBe(false);
    }
  });

  it('fail for another binding or another secret', () => {
    const token = createCsrfToken(secret, 'interaction-1');
    expect(verifyCsrfToken(secret, 'interaction-2', token)).toBe(false);
    expect(verifyCsrfToken(secret, 'interaction-1 ', token)).toBe(false);
    expect(verifyCsrfToken(randomBytes(32), 'interaction-1', token)).toBe(false);
  });

  it('fail, without throwing, for malformed and empty tokens', () => {
    const token = createCsrfToken(secret, 'b');
    const malformed: unknown[] = [
      '',
      undefined,
      null,
      42,
      [token],
      token.slice(0, -1),
      `${token}A`,
      `${token.slice(0, -1)}=`,
      `${token.slice(0, -1)}+`,
      token.replace(/./, '.'),
      ' '.repeat(64),
    ];
    for (const value of malformed) expect(verifyCsrfToken(secret, 'b', value), String(value)).toBe(false);
  });

  it('fail for an empty binding, and refuse to make one', () => {
    expect(() => createCsrfToken(secret, '')).toThrow(TypeError);
    expect(verifyCsrfToken(secret, '', createCsrfToken(secret, 'b'))).toBe(false);
  });

  it('refuse a secret shorter than 32 bytes', () => {
    expect(() => createCsrfToken(randomBytes(16), 'b')).toThrow(TypeError);
    expect(() => verifyCsrfToken(randomBytes(16), 'b', 'x')).toThrow(TypeError);
  });
});
