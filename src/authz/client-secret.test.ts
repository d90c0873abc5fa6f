import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clientSecretMatches, generateClientSecret, hashClientSecret, isHashedClientSecret } from './client-secret.ts';

describe('client secrets', () => {
  it('are 32 random bytes in base64url (URL-safe for Basic auth, checklist §4b)', () => {
    const a = generateClientSecret();
    const b = generateClientSecret();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, 'base64url')).toHaveLength(32);
    expect(a).not.toBe(b);
  });

  it('are stored as a SHA-256 digest, never as given', () => {
    const secret = 'correct horse battery staple';
    const stored = hashClientSecret(secret);
    expect(stored).toBe(`sha256:${createHash('sha256').update(secret).digest('base64url')}`);
    expect(stored).not.toContain(secret);
    expect(isHashedClientSecret(stored)).toBe(true);
    expect(isHashedClientSecret(secret)).toBe(false);
  });

  it('hash idempotently: a stored value passes through unchanged', () => {
    const stored = hashClientSecret(generateClientSecret());
    expect(hashClientSecret(stored)).toBe(stored);
  });

  it('match the secret they were made from, against its digest or (static clients) the plain value', () => {
    const secret = generateClientSecret();
    expect(clientSecretMatches(hashClientSecret(secret), secret)).toBe(true);
    expect(clientSecretMatches(secret, secret)).toBe(true);
  });

  it('do not match another secret, a prefix, or the empty string', () => {
    const secret = generateClientSecret();
    const stored = hashClientSecret(secret);
    expect(clientSecretMatches(stored, generateClientSecret())).toBe(false);
    expect(clientSecretMatches(stored, secret.slice(0, -1))).toBe(false);
    expect(clientSecretMatches(stored, `${secret} `)).toBe(false);
    expect(clientSecretMatches(stored, '')).toBe(false);
  });

  it('do not accept a stolen digest presented as the secret', () => {
    const secret = generateClientSecret();
    const stored = hashClientSecret(secret);
    expect(clientSecretMatches(stored, stored)).toBe(false);
    expect(clientSecretMatches(stored, stored.slice('sha256:'.length))).toBe(false);
  });
});
