/**
 * Bearer verification on the hot path, with no network call.
 *
 * Signature against the gateway's own key set, `iss`, `exp`/`nbf` with a small clock skew,
 * `aud` equal to the service's resource URL, `typ` at+jwt, and only asymmetric algorithms.
 * A verified token is cached (keyed by a digest of the token, bounded, until it expires), so
 * the signature is checked once per token, not once per request. Revocation still wins: the
 * token's grant must exist, and that answer is cached for at most one second.
 */
import { createHash } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { Store } from '../store/index.ts';

const ALGORITHMS = ['ES256', 'RS256'];
const CLOCK_TOLERANCE_SECONDS = 30;
const MAX_CACHED_TOKENS = 10_000;
const GRANT_CHECK_TTL_MS = 1000;

export interface AccessTokenClaims extends JWTPayload {
  sub: string;
  client_id: string;
  scope?: string;
  gid?: string;
}

export type BearerResult =
  | { ok: true; claims: AccessTokenClaims }
  | { ok: false; error: 'invalid_token'; description: string };

export interface BearerVerifier {
  verify(token: string, audience: string): Promise<BearerResult>;
}

export function createBearerVerifier(options: { issuer: string; jwks: JSONWebKeySet; store: Store }): BearerVerifier {
  const keySet = createLocalJWKSet(options.jwks);
  const verified = new Map<string, AccessTokenClaims>();
  const grants = new Map<string, { exists: boolean; checkedAt: number }>();

  const grantExists = async (grantId: string): Promise<boolean> => {
    const cached = grants.get(grantId);
    if (cached && Date.now() - cached.checkedAt < GRANT_CHECK_TTL_MS) return cached.exists;
    const exists = (await options.store.get('Grant', grantId)) !== undefined;
    if (grants.size >= MAX_CACHED_TOKENS) grants.clear();
    grants.set(grantId, { exists, checkedAt: Date.now() });
    return exists;
  };

  const verifySignature = async (token: string, key: string): Promise<AccessTokenClaims> => {
    const cached = verified.get(key);
    if (cached && (cached.exp ?? 0) > Date.now() / 1000 - CLOCK_TOLERANCE_SECONDS) return cached;
    const { payload } = await jwtVerify(token, keySet, {
      issuer: options.issuer,
      algorithms: ALGORITHMS,
      typ: 'at+jwt',
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['exp', 'sub', 'client_id', 'aud'],
    });
    const claims = payload as AccessTokenClaims;
    if (verified.size >= MAX_CACHED_TOKENS) verified.delete(verified.keys().next().value as string);
    verified.set(key, claims);
    return claims;
  };

  return {
    async verify(token, audience) {
      const key = createHash('sha256').update(token).digest('base64url');
      let claims: AccessTokenClaims;
      try {
        claims = await verifySignature(token, key);
      } catch {
        return { ok: false, error: 'invalid_token', description: 'the access token is invalid or expired' };
      }
      if ((claims.exp ?? 0) + CLOCK_TOLERANCE_SECONDS < Date.now() / 1000) {
        verified.delete(key);
        return { ok: false, error: 'invalid_token', description: 'the access token expired' };
      }
      const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!audiences.includes(audience)) {
        return { ok: false, error: 'invalid_token', description: 'the access token was issued for another resource' };
      }
      if (!claims.gid || !(await grantExists(claims.gid))) {
        return { ok: false, error: 'invalid_token', description: 'the access token was revoked' };
      }
      return { ok: true, claims };
    },
  };
}
