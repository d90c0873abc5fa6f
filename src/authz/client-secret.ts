/**
 * Client secrets are stored as digests, never as given.
 *
 * The gateway generates every secret itself (32 random bytes), so a fast digest is enough: no
 * one can brute-force 256 bits, and a slow hash would only make every token request slower.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = 'sha256:';

export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function isHashedClientSecret(value: string): boolean {
  return value.startsWith(PREFIX);
}

/** The stored form of a secret; idempotent, so a stored value passes through unchanged. */
export function hashClientSecret(secret: string): string {
  if (isHashedClientSecret(secret)) return secret;
  return digest(secret);
}

function digest(secret: string): string {
  return PREFIX + createHash('sha256').update(secret).digest('base64url');
}

/**
 * Whether `presented` is the secret whose stored form is `stored`, in constant time. The
 * presented value is always digested, so a stolen digest is not itself a working secret.
 */
export function clientSecretMatches(stored: string, presented: string): boolean {
  const expected = Buffer.from(hashClientSecret(stored));
  const actual = Buffer.from(digest(presented));
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
