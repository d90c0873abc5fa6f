/**
 * A protected MCP endpoint: `/<service>/mcp` (and the same with a trailing slash).
 *
 * Each request runs these steps in order; the first that answers ends it:
 *   1. CORS preflight       answered without a token
 *   2. origin               a foreign browser Origin is refused (DNS rebinding)
 *   3. body size            over the service's limit → 413
 *   4. bearer               none → 401 challenge; bad, expired, revoked or another service's → 401 invalid_token
 *   5. access policy        the gateway's and the service's `access` rules, on every request
 *   6. upstream token       for a service with `forward.upstream_token`: the user's fresh
 *                           identity-provider token, or 401 invalid_token when there is none
 *   7. forward              identity headers set, the client's Authorization never forwarded
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Account, ProtectedService, UpstreamTokenKeeper } from '../authz/index.ts';
import { decideAccess, type AccessPolicy } from '../policy/index.ts';
import { bearerChallenge, metadataUrl, type BearerVerifier } from '../resource/index.ts';
import { forwardRequest, sendJsonRpcError } from './http.ts';
import { upstreamRequestHeaders, type ForwardedIdentity, type IdentityHeaderNames } from './headers.ts';
import type { IdentityAssertionSigner } from './identity-assertion.ts';
import { scopesNeeded } from './method-scopes.ts';
import { BodyTooLargeError, readBody } from './request-body.ts';

export interface McpServiceDefinition {
  upstream: string;
  method_scopes: Readonly<Record<string, string>>;
  timeout_ms: number;
  max_body_bytes: number;
  access?: AccessPolicy | undefined;
  forward: {
    identity_headers: IdentityHeaderNames | null;
    identity_jwt?: { header: string; ttl_seconds: number } | null | undefined;
    /** Header that carries the user's upstream access token; absent: the service never receives one. */
    upstream_token?: string | undefined;
  };
}

export interface McpEndpointContext {
  issuer: string;
  verifier: BearerVerifier;
  access: AccessPolicy;
  /** Browser origins allowed besides the gateway's own. */
  allowedOrigins: ReadonlySet<string>;
  /** Whether browser pages on loopback origins may call (a gateway that listens on loopback only). */
  allowLoopbackOrigins: boolean;
  signIdentity: IdentityAssertionSigner;
  loadAccount(accountId: string): Promise<Account | undefined>;
  /** Upstream tokens for services with `forward.upstream_token`. */
  upstreamTokens?: Pick<UpstreamTokenKeeper, 'accessToken'> | undefined;
}

const CORS_BASE = {
  'access-control-expose-headers': 'WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version',
  vary: 'Origin',
};

export function registerMcpEndpoint(app: FastifyInstance, service: ProtectedService<McpServiceDefinition & { path: string }>, context: McpEndpointContext): void {
  const definition = service.definition;
  const challengeUrl = metadataUrl(service, context.issuer);
  const ownOrigin = new URL(context.issuer).origin;

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    const origin = request.headers.origin;
    const corsHeaders: Record<string, string> = { ...CORS_BASE, 'access-control-allow-origin': origin ?? '*' };

    if (request.method === 'OPTIONS') {
      return reply.code(204).headers({
        ...corsHeaders,
        'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
        'access-control-allow-headers': String(request.headers['access-control-request-headers'] ?? 'Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID'),
        'access-control-max-age': '600',
      }).send();
    }

    const deny = (status: number, kind: 'forbidden' | 'unauthorized' | 'payload_too_large' | 'parse_error', message: string, extra: Record<string, string> = {}) => {
      reply.hijack();
      // The body was not read: drain it so the connection can be reused (and closed cleanly at
      // shutdown), except when it is too large to be worth reading.
      if (status === 413) extra.connection = 'close';
      else request.raw.resume();
      sendJsonRpcError(reply.raw, status, kind, message, null, { ...corsHeaders, ...extra });
      return reply;
    };

    if (origin && !originAllowed(origin, ownOrigin, context)) {
      return deny(403, 'forbidden', `requests from the browser origin ${origin} are not allowed`);
    }
    const length = Number(request.headers['content-length'] ?? 0);
    if (length > definition.max_body_bytes) return deny(413, 'payload_too_large', 'the request body is too large');

    const authorization = request.headers.authorization ?? '';
    const match = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization);
    if (!match?.[1]) {
      return deny(401, 'unauthorized', 'authorization required', {
        'www-authenticate': bearerChallenge({ resourceMetadata: challengeUrl, scope: service.scopes }),
      });
    }
    const result = await context.verifier.verify(match[1], service.resourceUrl);
    if (!result.ok) {
      return deny(401, 'unauthorized', result.description, {
        'www-authenticate': bearerChallenge({ resourceMetadata: challengeUrl, scope: service.scopes, error: 'invalid_token', description: result.description }),
      });
    }
    const account = await context.loadAccount(result.claims.sub);
    const allowed = account && decideAccess(context.access, account).allowed
      && (!definition.access || decideAccess(definition.access, account, service.displayName).allowed);
    if (!account || !allowed) {
      request.log.warn({ event: 'access.denied', account: result.claims.sub, service: service.id }, 'request denied by policy');
      return deny(403, 'forbidden', `you do not have access to ${service.displayName}`);
    }

    // Scopes by method need the parsed body: read it (bounded), decide, then forward it.
    let body: Buffer | undefined;
    if (request.method === 'POST' && Object.keys(definition.method_scopes).length > 0) {
      try {
        body = await readBody(request.raw, definition.max_body_bytes);
      } catch (error) {
        if (error instanceof BodyTooLargeError) return deny(413, 'payload_too_large', 'the request body is too large');
        throw error;
      }
      const needs = scopesNeeded(body, definition.method_scopes);
      if (!needs.ok) return deny(400, 'parse_error', needs.reason);
      const granted = new Set((result.claims.scope ?? '').split(' ').filter(Boolean));
      const missing = needs.needed.filter((scope) => !granted.has(scope));
      if (missing.length > 0) {
        // The challenge names everything this call needs together with what the token has, so
        // clients that re-authorize with exactly the challenge's scope keep their other rights.
        return deny(403, 'forbidden', `this request needs the scope ${missing.join(' ')}`, {
          'www-authenticate': bearerChallenge({
            resourceMetadata: challengeUrl,
            error: 'insufficient_scope',
            scope: [...new Set([...granted, ...needs.needed])],
            description: 'the access token lacks a scope this request needs',
          }),
        });
      }
    }

    const identity: ForwardedIdentity = {
      accountId: account.accountId,
      email: account.email,
      name: account.name,
      groups: account.groups,
      provider: account.provider,
      clientId: result.claims.client_id,
    };
    const headers = upstreamRequestHeaders(request.headers, { requestId: request.id, names: definition.forward.identity_headers, identity });
    const assertion = definition.forward.identity_jwt;
    if (assertion) {
      headers[assertion.header.toLowerCase()] = await context.signIdentity(identity, definition.upstream, assertion.ttl_seconds);
    }
    const upstreamTokenHeader = definition.forward.upstream_token;
    if (upstreamTokenHeader) {
      // No usable upstream token: the gateway's token is of no use to this service either.
      // invalid_token makes the client refresh, which fails for want of the upstream token
      // (provider.ts, findAccount), so it authorizes again and the user signs in upstream
      // (RFC 6750 §3.1). The token itself goes only to the server, never into a response.
      const upstream = context.upstreamTokens
        ? await context.upstreamTokens.accessToken(account.accountId)
        : { ok: false as const, reason: 'none', description: 'upstream tokens are not available' };
      if (!upstream.ok) {
        request.log.warn({ event: 'upstream_token.unavailable', account: account.accountId, service: service.id, reason: upstream.reason }, 'no upstream token for a service that needs one');
        return deny(401, 'unauthorized', upstream.description, {
          'www-authenticate': bearerChallenge({ resourceMetadata: challengeUrl, scope: service.scopes, error: 'invalid_token', description: upstream.description }),
        });
      }
      headers[upstreamTokenHeader.toLowerCase()] = upstream.accessToken;
    }
    reply.hijack();
    await forwardRequest(request.raw, reply.raw, {
      upstream: definition.upstream,
      method: request.method,
      timeoutMs: definition.timeout_ms,
      maxBodyBytes: definition.max_body_bytes,
      responseHeaders: corsHeaders,
      body,
      headers,
    });
    return reply;
  };

  for (const url of [service.path, `${service.path}/`]) {
    app.route({ method: ['GET', 'POST', 'DELETE', 'OPTIONS'], url, onRequest: handle, handler: async () => undefined });
  }
}

function originAllowed(origin: string, ownOrigin: string, context: McpEndpointContext): boolean {
  if (origin === ownOrigin || context.allowedOrigins.has(origin)) return true;
  if (!context.allowLoopbackOrigins) return false;
  const url = URL.parse(origin);
  return url !== null && (url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]');
}
