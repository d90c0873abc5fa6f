/**
 * The signed identity assertion (`forward.identity_jwt`): for MCP servers that must not trust
 * plain headers, a short-lived JWT signed with the gateway's key (verifiable at /jwks) whose
 * audience is that server's upstream URL, so it cannot be replayed to another server.
 */
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import type { ForwardedIdentity } from './headers.ts';

export type IdentityAssertionSigner = (identity: ForwardedIdentity, audience: string, ttlSeconds: number) => Promise<string>;

/**
 * `keys.privateJwks` is read at every call: after a rotation (authz/signing-keys.ts) assertions
 * are signed with the new current key. Retired keys (`key_ops: ["verify"]`) never sign.
 */
export async function createIdentityAssertionSigner(issuer: string, keys: { readonly privateJwks: { keys: JWK[] } }): Promise<IdentityAssertionSigner> {
  const imported = new Map<string, Awaited<ReturnType<typeof importJWK>>>();
  const currentKey = async () => {
    const jwk = keys.privateJwks.keys.find((key) => key.alg === 'ES256' && (key.key_ops === undefined || key.key_ops.includes('sign')));
    if (!jwk?.kid) throw new Error('no ES256 signing key for identity assertions');
    let key = imported.get(jwk.kid);
    if (!key) {
      key = await importJWK(jwk, 'ES256');
      imported.clear();
      imported.set(jwk.kid, key);
    }
    return { jwk, key };
  };
  await currentKey();
  return async (identity, audience, ttlSeconds) => {
    const { jwk, key } = await currentKey();
    const claims: Record<string, unknown> = {
      client_id: identity.clientId,
      provider: identity.provider,
      groups: [...identity.groups],
    };
    if (identity.email) claims.email = identity.email;
    if (identity.name) claims.name = identity.name;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'gatehouse-identity+jwt' })
      .setIssuer(issuer)
      .setSubject(identity.accountId)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime(`${ttlSeconds}s`)
      .setJti(randomUUID())
      .sign(key);
  };
}
