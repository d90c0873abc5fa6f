/**
 * Bearer verification on the hot path, with no network call.
 *
 * Signature against the gateway's own key set, `iss`, `exp`/`nbf` with a small clock skew,
 * `aud` equal to the service's resource URL, `typ` at+jwt, and only asymmetric algorithms.
 * A verified token is cached (keyed by the token itself, which is in memory anyway: a digest
 * of it cost more per request than the rest of this check; bounded, until it expires), so the
 * signature is checked once per token, not once per request. Revocation still wins: the
 * token's grant must exist, and that answer is cached for at most one second.
 *
 * Several replicas: a grant revoked on any of them is announced on the store's `revocations`
 * channel, and every replica drops what it cached for that grant at once, so the revocation is
 * honoured everywhere within the event's delivery time. Events are at most once, so the
 * one-second expiry stays as the safety net, and everything cached about grants is dropped
 * when the event connection comes back after an outage. After a signing key rotation the key
 * set is the one in force now (`keys.publicJwks`, read per verification); a token naming a key
 * this replica does not know yet makes it re-read the stored set once (`keys.refresh`).
 */
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { REVOCATIONS_CHANNEL, type Store } from '../store/index.ts';

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
  /** Drops what is cached about a grant (also done by the revocation events). */
  forgetGrant(grantId: string): void;
  /** Stops listening to revocation events. */
  close(): Promise<void>;
}

/** The gateway's published keys (authz/signing-keys.ts), read at every verification. */
export interface BearerKeys {
  readonly publicJwks: JSONWebKeySet;
  /** Re-reads the stored keys; resolves whether they changed. */
  refresh?(): Promise<boolean>;
}

export async function createBearerVerifier(options: { issuer: string; keys: BearerKeys; store: Store }): Promise<BearerVerifier> {
  const { keys, store } = options;
  let jwks = keys.publicJwks;
  let keySet = createLocalJWKSet(jwks);
  const verified = new Map<string, AccessTokenClaims>();
  const grants = new Map<string, { exists: boolean; checkedAt: number }>();
  /** Bumped by every event: a store read that overlapped one may have seen the grant alive. */
  let generation = 0;

  const currentKeySet = () => {
    if (keys.publicJwks !== jwks) keySet = createLocalJWKSet((jwks = keys.publicJwks));
    return keySet;
  };

  const remember = (grantId: string, exists: boolean): void => {
    if (grants.size >= MAX_CACHED_TOKENS) grants.clear();
    grants.set(grantId, { exists, checkedAt: Date.now() });
  };

  const forgetGrant = (grantId: string): void => {
    generation++;
    // A grant never comes back: known gone for the cache's lifetime, without a store read.
    remember(grantId, false);
    for (const [key, claims] of verified) if (claims.gid === grantId) verified.delete(key);
  };

  const forgetAllGrants = (): void => {
    generation++;
    grants.clear();
  };

  const unsubscribe = await store.subscribe?.(REVOCATIONS_CHANNEL, (grantId) => forgetGrant(grantId), { onReconnect: forgetAllGrants });

  /** What is known of a grant from the last second, without a store read; undefined: ask the store. */
  const knownGrant = (grantId: string): boolean | undefined => {
    const cached = grants.get(grantId);
    return cached && Date.now() - cached.checkedAt < GRANT_CHECK_TTL_MS ? cached.exists : undefined;
  };

  const grantExists = async (grantId: string): Promise<boolean> => {
    const known = knownGrant(grantId);
    if (known !== undefined) return known;
    const before = generation;
    const exists = (await store.get('Grant', grantId)) !== undefined;
    // An event during the read may be about this grant; the next request asks again.
    if (generation === before) remember(grantId, exists);
    return exists;
  };

  /** Claims of a token whose signature was checked before and has not expired. */
  const cachedClaims = (token: string): AccessTokenClaims | undefined => {
    const cached = verified.get(token);
    return cached && (cached.exp ?? 0) > Date.now() / 1000 - CLOCK_TOLERANCE_SECONDS ? cached : undefined;
  };

  const verifySignature = async (token: string): Promise<AccessTokenClaims> => {
    const check = () => jwtVerify(token, currentKeySet(), {
      issuer: options.issuer,
      algorithms: ALGORITHMS,
      typ: 'at+jwt',
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['exp', 'sub', 'client_id', 'aud'],
    });
    let payload: JWTPayload;
    try {
      ({ payload } = await check());
    } catch (error) {
      // Signed with a key another replica rotated in before this one heard of it.
      if (!(error instanceof errors.JWKSNoMatchingKey) || !(await keys.refresh?.().catch(() => false))) throw error;
      ({ payload } = await check());
    }
    const claims = payload as AccessTokenClaims;
    if (verified.size >= MAX_CACHED_TOKENS) verified.delete(verified.keys().next().value as string);
    verified.set(token, claims);
    return claims;
  };

  return {
    forgetGrant,
    async close() {
      await unsubscribe?.().catch(() => undefined);
    },
    async verify(token, audience) {
      // The usual request (a known token, its grant checked within the second) takes no await here.
      let claims = cachedClaims(token);
      if (claims === undefined) {
        try {
          claims = await verifySignature(token);
        } catch {
          return { ok: false, error: 'invalid_token', description: 'the access token is invalid or expired' };
        }
      }
      if ((claims.exp ?? 0) + CLOCK_TOLERANCE_SECONDS < Date.now() / 1000) {
        verified.delete(token);
        return { ok: false, error: 'invalid_token', description: 'the access token expired' };
      }
      const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!audiences.includes(audience)) {
        return { ok: false, error: 'invalid_token', description: 'the access token was issued for another resource' };
      }
      if (!claims.gid || !(knownGrant(claims.gid) ?? (await grantExists(claims.gid)))) {
        return { ok: false, error: 'invalid_token', description: 'the access token was revoked' };
      }
      return { ok: true, claims };
    },
  };
}
