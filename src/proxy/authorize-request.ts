/**
 * The checks a request for a protected service passes before anything reaches its MCP server,
 * and the headers the gateway then sets for that server. Shared by the MCP endpoint
 * (mcp-endpoint.ts, which forwards the request itself) and ForwardAuth (forward-auth.ts, which
 * answers another proxy that forwards it), so both apply exactly the same rules:
 *
 *   checkOrigin         a foreign browser Origin is refused (DNS rebinding)
 *   authorizeBearer     none → 401 challenge; bad, expired, revoked or another service's
 *                       → 401 invalid_token; the gateway's and the service's `access` → 403
 *   serviceHeaders      identity headers, the signed identity assertion, and the user's
 *                       upstream token (none usable → 401 invalid_token)
 *
 * Each step answers either its result or a refusal: the status, a user-safe message and the
 * headers (the `WWW-Authenticate` challenge) the caller sends with its own body format.
 */
import type { AuditLog } from '../ops/audit.ts';
import type { Account, ProtectedService, UpstreamTokenKeeper } from '../authz/index.ts';
import { decideAccess, type AccessPolicy } from '../policy/index.ts';
import { bearerChallenge, metadataUrl, type AccessTokenClaims, type BearerVerifier } from '../resource/index.ts';
import { identityHeaders, type ForwardedIdentity, type IdentityHeaderNames } from './headers.ts';
import type { IdentityAssertionSigner } from './identity-assertion.ts';

/** What a service's configuration says about forwarding identity (`services.<name>.forward`). */
export interface ForwardDefinition {
  /** The MCP server's URL; absent for a server the gateway starts itself (`command`, stdio-bridge.ts). */
  upstream?: string | undefined;
  access?: AccessPolicy | undefined;
  forward: {
    identity_headers: IdentityHeaderNames | null;
    identity_jwt?: { header: string; ttl_seconds: number } | null | undefined;
    /** Header that carries the user's upstream access token; absent: the service never receives one. */
    upstream_token?: string | undefined;
  };
}

export interface AuthorizationContext {
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
  /** The audit trail, for denials. */
  audit?: Pick<AuditLog, 'record'> | undefined;
}

export interface RequestLog {
  warn(details: Record<string, unknown>, message: string): void;
}

export interface Refusal {
  ok: false;
  status: 401 | 403;
  kind: 'unauthorized' | 'forbidden';
  message: string;
  /** `WWW-Authenticate` for a 401 (RFC 6750 §3, RFC 9728 §5.1). */
  headers: Record<string, string>;
}

export interface Authorized {
  ok: true;
  account: Account;
  claims: AccessTokenClaims;
  identity: ForwardedIdentity;
}

/** RFC 6750 §2.1: `Bearer` (any case), one or more spaces, a b64token. */
const BEARER = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i;

function refuse(status: 401 | 403, message: string, headers: Record<string, string> = {}): Refusal {
  return { ok: false, status, kind: status === 401 ? 'unauthorized' : 'forbidden', message, headers };
}

/** Refuses a browser Origin other than the gateway's own or an allowed one (MCP transport security: DNS rebinding). */
export function checkOrigin(origin: string | undefined, context: AuthorizationContext): Refusal | undefined {
  if (!origin || originAllowed(origin, new URL(context.issuer).origin, context)) return undefined;
  return refuse(403, `requests from the browser origin ${origin} are not allowed`);
}

/**
 * Verifies the request's bearer token for `service` (signature, `iss`, `aud` = the service's
 * resource URL, expiry, revocation) and applies the gateway's and the service's access policy.
 */
export async function authorizeBearer(
  authorization: string | undefined,
  service: ProtectedService<ForwardDefinition & { path: string }>,
  context: AuthorizationContext,
  log: RequestLog,
): Promise<Authorized | Refusal> {
  // Only refusals name the metadata URL: building it (a URL parse) is not paid per allowed request.
  const match = BEARER.exec(authorization ?? '');
  if (!match?.[1]) {
    // RFC 6750 §3.1: a request without credentials gets a challenge with no error code.
    return refuse(401, 'authorization required', { 'www-authenticate': bearerChallenge({ resourceMetadata: metadataUrl(service, context.issuer), scope: service.scopes }) });
  }
  const result = await context.verifier.verify(match[1], service.resourceUrl);
  if (!result.ok) {
    return refuse(401, result.description, {
      'www-authenticate': bearerChallenge({ resourceMetadata: metadataUrl(service, context.issuer), scope: service.scopes, error: 'invalid_token', description: result.description }),
    });
  }
  const account = await context.loadAccount(result.claims.sub);
  if (!account) {
    // The account is gone, or its identity provider no longer configured: the token is invalid
    // (RFC 6750 §3.1), and a new sign-in (with a provider in force) is the way forward.
    const description = 'the account of this token is no longer known; sign in again';
    log.warn({ event: 'access.denied', account: result.claims.sub, service: service.id, reason: 'unknown account' }, 'request denied: unknown account');
    context.audit?.record('access.denied', { account: result.claims.sub, client: result.claims.client_id, service: service.id, reason: 'unknown account' });
    return refuse(401, description, {
      'www-authenticate': bearerChallenge({ resourceMetadata: metadataUrl(service, context.issuer), scope: service.scopes, error: 'invalid_token', description }),
    });
  }
  const policy = service.definition.access;
  const globalDecision = decideAccess(context.access, account);
  const serviceDecision = policy ? decideAccess(policy, account, service.displayName) : undefined;
  const denial = !globalDecision.allowed ? `gateway policy: ${globalDecision.reason}`
    : serviceDecision && !serviceDecision.allowed ? `service policy: ${serviceDecision.reason}` : undefined;
  if (denial !== undefined) {
    log.warn({ event: 'access.denied', account: result.claims.sub, service: service.id, reason: denial }, 'request denied by policy');
    context.audit?.record('access.denied', { account: result.claims.sub, client: result.claims.client_id, service: service.id, reason: denial });
    return refuse(403, `you do not have access to ${service.displayName}`);
  }
  const identity: ForwardedIdentity = {
    accountId: account.accountId,
    email: account.email,
    name: account.name,
    groups: account.groups,
    provider: account.provider,
    clientId: result.claims.client_id,
  };
  return { ok: true, account, claims: result.claims, identity };
}

/**
 * The headers the gateway sets for the service's server, by its `forward` rules: identity
 * headers, the signed identity assertion (audience = the service's upstream), and the user's
 * upstream token. Lower-case names.
 */
export async function serviceHeaders(
  service: ProtectedService<ForwardDefinition & { path: string }>,
  authorized: Authorized,
  context: AuthorizationContext,
  log: RequestLog,
): Promise<{ ok: true; headers: Record<string, string> } | Refusal> {
  const { forward, upstream } = service.definition;
  const headers = forward.identity_headers ? identityHeaders(authorized.identity, forward.identity_headers) : {};
  // The schema allows the assertion only for services with an upstream URL, its audience.
  if (forward.identity_jwt && upstream !== undefined) {
    headers[forward.identity_jwt.header.toLowerCase()] = await context.signIdentity(authorized.identity, upstream, forward.identity_jwt.ttl_seconds);
  }
  if (forward.upstream_token) {
    // No usable upstream token: the gateway's token is of no use to this service either.
    // invalid_token makes the client refresh, which fails for want of the upstream token
    // (provider.ts, findAccount), so it authorizes again and the user signs in upstream
    // (RFC 6750 §3.1). The token goes only towards the server (through ForwardAuth: to the
    // proxy, which copies it onto the upstream request), never to the client.
    const token = context.upstreamTokens
      ? await context.upstreamTokens.accessToken(authorized.account.accountId)
      : { ok: false as const, reason: 'none', description: 'upstream tokens are not available' };
    if (!token.ok) {
      log.warn({ event: 'upstream_token.unavailable', account: authorized.account.accountId, service: service.id, reason: token.reason }, 'no upstream token for a service that needs one');
      return refuse(401, token.description, {
        'www-authenticate': bearerChallenge({
          resourceMetadata: metadataUrl(service, context.issuer), scope: service.scopes, error: 'invalid_token', description: token.description,
        }),
      });
    }
    headers[forward.upstream_token.toLowerCase()] = token.accessToken;
  }
  return { ok: true, headers };
}

function originAllowed(origin: string, ownOrigin: string, context: AuthorizationContext): boolean {
  if (origin === ownOrigin || context.allowedOrigins.has(origin)) return true;
  if (!context.allowLoopbackOrigins) return false;
  const url = URL.parse(origin);
  return url !== null && (url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]');
}
