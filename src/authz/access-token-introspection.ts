/**
 * Introspection (RFC 7662) of the gateway's JWT access tokens.
 *
 * oidc-provider does not store JWT access tokens, so its introspection endpoint answers
 * `unsupported_token_type` for them. MCP servers that prefer asking the gateway to verifying
 * the JWT themselves get an answer here instead: after oidc-provider has authenticated the
 * calling client, a JWT access token is verified like at the MCP endpoints (signature, issuer,
 * expiry, its grant not revoked) and described only to the client it was issued to, as for
 * every other token type (RFC 7662 §4: no token information to other clients).
 */
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Store } from '../store/index.ts';

const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]+$/;

export function introspectAccessTokens(options: { issuer: string; keys: { readonly publicJwks: JSONWebKeySet }; store: Store }) {
  // Rebuilt when a rotation replaced the published set (signing-keys.ts).
  let jwks = options.keys.publicJwks;
  let keySet = createLocalJWKSet(jwks);
  const currentKeySet = () => {
    if (options.keys.publicJwks !== jwks) keySet = createLocalJWKSet((jwks = options.keys.publicJwks));
    return keySet;
  };

  const describe = async (token: string, clientId: string): Promise<Record<string, unknown>> => {
    try {
      const { payload } = await jwtVerify(token, currentKeySet(), { issuer: options.issuer, typ: 'at+jwt', algorithms: ['ES256', 'RS256'] });
      if (payload.client_id !== clientId) return { active: false };
      if (typeof payload.gid !== 'string' || !(await options.store.get('Grant', payload.gid))) return { active: false };
      const { gid: _grant, ...claims } = payload;
      return { ...claims, active: true, token_type: 'Bearer' };
    } catch {
      return { active: false };
    }
  };

  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    await next();
    if (ctx.oidc?.route !== 'introspection' || ctx.status !== 400) return;
    const body = ctx.body as { error?: string } | undefined;
    const token = ctx.oidc.params?.token;
    const client = ctx.oidc.client;
    if (body?.error !== 'unsupported_token_type' || typeof token !== 'string' || !JWT_SHAPE.test(token) || !client) return;
    ctx.status = 200;
    ctx.body = await describe(token, client.clientId);
  };
}
