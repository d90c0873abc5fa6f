/**
 * CSRF tokens for the gateway's form posts (sign-in, consent, withdraw), stateless and bound to
 * what the form acts on: the interaction id or the session id. A token is a random nonce plus
 * HMAC-SHA256(secret, binding ‖ nonce); a page embeds it in a hidden field, and the handler
 * recomputes the MAC for the binding it is about to act on. A token from another interaction,
 * another session or another gateway secret fails, and a forged page cannot read one.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const NONCE_BYTES = 16;
const MAC_BYTES = 32;
/** base64url of nonce ‖ mac: 48 bytes, exactly 64 characters with no padding. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{64}$/;
/** Separates these MACs from any other HMAC made with the same secret. */
const DOMAIN = 'gatehouse/csrf/v1\0';
const MIN_SECRET_BYTES = 32;

function mac(secret: Uint8Array, binding: string, nonce: Uint8Array): Buffer {
  // The nonce has a fixed length and comes last, so binding ‖ nonce is unambiguous.
  return createHmac('sha256', secret).update(DOMAIN).update(binding, 'utf8').update(nonce).digest();
}

function checkSecret(secret: Uint8Array): void {
  if (secret.byteLength < MIN_SECRET_BYTES) {
    throw new TypeError(`CSRF secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
}

/**
 * A fresh token for forms that act on `binding` (an interaction or session id). Each call
 * returns a different token; all of them verify. Throws `TypeError` for a secret shorter than
 * 32 bytes or an empty binding (programming errors).
 */
export function createCsrfToken(secret: Uint8Array, binding: string): string {
  checkSecret(secret);
  if (binding.length === 0) throw new TypeError('CSRF binding must not be empty');
  const nonce = randomBytes(NONCE_BYTES);
  return Buffer.concat([nonce, mac(secret, binding, nonce)]).toString('base64url');
}

/**
 * Whether `token` was made by `createCsrfToken(secret, binding)`. False, never a throw, for
 * anything a request can carry: a missing, empty, malformed or tampered token, or one made for
 * another binding. The MAC comparison is constant-time. Throws `TypeError` for a short secret.
 */
export function verifyCsrfToken(secret: Uint8Array, binding: string, token: unknown): boolean {
  checkSecret(secret);
  if (binding.length === 0 || typeof token !== 'string' || !TOKEN_PATTERN.test(token)) return false;
  const bytes = Buffer.from(token, 'base64url');
  if (bytes.length !== NONCE_BYTES + MAC_BYTES) return false;
  const expected = mac(secret, binding, bytes.subarray(0, NONCE_BYTES));
  return timingSafeEqual(bytes.subarray(NONCE_BYTES), expected);
}
