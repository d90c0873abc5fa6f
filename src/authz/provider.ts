/**
 * The authorization server: oidc-provider, configured for MCP clients.
 *
 * oidc-provider does the protocol (RFC 6749/7636/7591/7592/7009/7662/8707/9207, CIMD); this
 * module only says how the gateway wants it: one issuer at the origin root, PKCE S256 always,
 * JWT access tokens audience-bound to one service, refresh tokens without `offline_access`,
 * rotation with a grace window (adapter.ts), consent remembered per user, client and service
 * (consents.ts), and the gateway's own sign-in and consent pages (interactions).
 */
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Store } from '../store/index.ts';
import { createAdapterClass } from './adapter.ts';
import { clientSecretMatches, generateClientSecret } from './client-secret.ts';
import { registrationManagement } from './registration-management.ts';
import { answerStoreOutages } from './store-outage.ts';
import { adjustMetadata } from './metadata.ts';
import { introspectAccessTokens } from './access-token-introspection.ts';
import { NORMALISATION_HOOK_PROPERTY, normalizeClientMetadata } from './client-metadata.ts';
import { redirectUriMatches } from './redirect-uri.ts';
import type { SigningKeys } from './signing-keys.ts';
import { useSigningKeys } from './provider-keys.ts';
import type { ServiceCatalog } from './service-catalog.ts';
import { loadConsentGrant } from './consents.ts';
import { rewriteAuthorizationScope } from './authorization-request.ts';
import { errorPage } from './views/index.ts';
import { isAllowedClientIdUrl } from './client-id-url.ts';
import { canonicalResource } from './resource-uri.ts';
import type { UpstreamTokenKeeper } from './upstream-tokens.ts';

export interface AuthorizationServerOptions {
  issuer: string;
  store: Store;
  keys: SigningKeys;
  services: ServiceCatalog;
  cookieKeys: string[];
  tokens: { accessTtlSeconds: number; refreshTtlDays: number; refreshGraceSeconds: number; codeTtlSeconds: number };
  registration: { enabled: boolean };
  cimd: { enabled: boolean; allowLoopback: boolean };
  staticClients: Array<Record<string, unknown>>;
  /** Whether the issuer is https (cookies then carry `Secure`). */
  secure: boolean;
  /**
   * Loads a signed-in user for tokens; `undefined` when unknown or no longer allowed.
   * `refresh` is true when a refresh token is being used: the moment to re-read what may have
   * changed at the identity provider (GitHub membership, account-refresh.ts).
   */
  findAccount: (accountId: string, use?: { refresh: boolean }) => Promise<Record<string, unknown> | undefined>;
  /**
   * The fetch oidc-provider uses for client metadata documents and the `jwks_uri` they name
   * (tests: one that trusts a local CA). It must honour the `dispatcher` it is given: that is
   * oidc-provider's SSRF protection (see `outgoingFetch`).
   */
  fetch?: typeof fetch;
  /** Upstream tokens kept for services that forward them (upstream-tokens.ts). */
  upstreamTokens?: Pick<UpstreamTokenKeeper, 'signInNeeded'> | undefined;
}

const CONSENT_GRANT_DAYS = 365;
const SESSION_TTL_SECONDS = 14 * 24 * 3600;

export function createAuthorizationServer(options: AuthorizationServerOptions): Provider {
  const { issuer, store, services, tokens } = options;

  const policy = interactionPolicy.base();
  // Consent is remembered per user, client and service (consents.ts), native clients included;
  // first-time consent for a localhost-only client carries a warning on the consent page.
  policy.get('consent')?.checks.remove('native_client_prompt');
  const upstreamTokens = options.upstreamTokens;
  if (upstreamTokens) {
    // A service that receives the user's upstream token needs one with its upstream scopes: a
    // signed-in user without one signs in at the identity provider again. Not twice in one
    // interaction, though: a provider that granted less than asked would otherwise loop.
    policy.get('login')?.checks.add(new interactionPolicy.Check(
      'upstream_scopes_missing',
      'the service needs a sign-in at the identity provider with more scopes',
      'login_required',
      async (ctx) => {
        const accountId = ctx.oidc.session?.accountId;
        if (!accountId || ctx.oidc.result?.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
        return upstreamTokens.signInNeeded(accountId, ctx.oidc.params?.resource);
      },
    ));
  }

  const configuration: Configuration = {
    adapter: createAdapterClass({ store, refreshGraceSeconds: tokens.refreshGraceSeconds }) as unknown as Configuration['adapter'],
    clients: options.staticClients as unknown as Configuration['clients'],
    jwks: options.keys.privateJwks as Configuration['jwks'],
    cookies: {
      keys: options.cookieKeys,
      names: { session: 'gh_session', interaction: 'gh_interaction', resume: 'gh_resume' },
      long: { signed: true, httpOnly: true, sameSite: 'lax', secure: options.secure },
      short: { signed: true, httpOnly: true, sameSite: 'lax', secure: options.secure },
    },
    findAccount: async (_ctx, sub, token) => {
      const claims = await options.findAccount(sub, { refresh: token?.kind === 'RefreshToken' });
      if (!claims) return undefined;
      // A refresh for a service whose upstream token is gone (refresh refused, revoked) fails
      // with invalid_grant, so the client authorizes again and the user signs in upstream: a
      // new access token alone would meet the same 401 at the MCP endpoint.
      if (upstreamTokens && token?.kind === 'RefreshToken' && await upstreamTokens.signInNeeded(sub, (token as { resource?: unknown }).resource)) {
        return undefined;
      }
      return { accountId: sub, claims: async () => ({ ...claims, sub }) };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'picture'] },
    scopes: ['openid'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    clientDefaults: { id_token_signed_response_alg: 'ES256', grant_types: ['authorization_code', 'refresh_token'] },
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
      idTokenSigningAlgValues: ['ES256', 'RS256'],
    },
    routes: {
      authorization: '/authorize',
      token: '/token',
      registration: '/register',
      revocation: '/revoke',
      introspection: '/introspect',
      jwks: '/jwks',
    },
    features: {
      devInteractions: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      registration: {
        enabled: options.registration.enabled,
        idFactory: () => `gh_${generateClientSecret().slice(0, 22)}`,
        secretFactory: () => generateClientSecret(),
      },
      registrationManagement: { enabled: options.registration.enabled, rotateRegistrationAccessToken: false },
      // Only the client a token was issued to may introspect or revoke it (RFC 7662 §4, RFC 7009
      // §2.1): registration is open, so "any confidential client" means anyone. A stranger's
      // request answers as for an unknown token (active: false; 200 without revoking).
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => {
          if (oneOf) return oneOf;
          const fallback = services.defaultService();
          if (!fallback) {
            throw new errors.InvalidTarget('the resource parameter is required: name the MCP service URL (RFC 8707)');
          }
          return fallback.resourceUrl;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const service = services.byResource(resourceIndicator);
          if (!service) throw new errors.InvalidTarget(`${resourceIndicator} is not a service of this gateway`);
          return {
            scope: service.scopes.join(' '),
            audience: service.resourceUrl,
            accessTokenTTL: tokens.accessTtlSeconds,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
      clientIdMetadataDocument: {
        enabled: options.cimd.enabled,
        ack: 'draft-02',
        allowFetch: async (_ctx, clientId) => isAllowedClientIdUrl(clientId, { allowLoopback: options.cimd.allowLoopback }),
        cacheDuration: { min: 60, max: 86400 },
      },
    } as Configuration['features'],
    extraClientMetadata: {
      properties: [NORMALISATION_HOOK_PROPERTY],
      validator: (_ctx, key, _value, metadata) => {
        if (key === NORMALISATION_HOOK_PROPERTY) normalizeClientMetadata(metadata as Record<string, unknown>);
      },
    },
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
      policy,
    },
    loadExistingGrant: async (ctx) => loadConsentGrant(ctx, store, services),
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    extraTokenClaims: async (_ctx, token) => ('grantId' in token && token.grantId ? { gid: token.grantId } : undefined),
    ttl: {
      AccessToken: tokens.accessTtlSeconds,
      AuthorizationCode: tokens.codeTtlSeconds,
      RefreshToken: tokens.refreshTtlDays * 86400,
      Grant: CONSENT_GRANT_DAYS * 86400,
      IdToken: 3600,
      Interaction: 3600,
      Session: SESSION_TTL_SECONDS,
    },
    clientBasedCORS: () => true,
    allowOmittingSingleRegisteredRedirectUri: true,
    acceptQueryParamAccessTokens: false,
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = errorPage({
        title: 'This sign-in link cannot be used',
        message: authorizationErrorMessage(out.error, out.error_description),
        status: ctx.status,
      });
    },
    fetch: outgoingFetch(options),
    // CIMD §"Max size": documents are small; a JWKS has no reason to be large either.
    fetchResponseBodyLimits: { 'client_id metadata document': 5 * 1024, jwks_uri: 64 * 1024, sector_identifier_uri: 64 * 1024 },
  };

  const provider = new Provider(issuer, configuration);
  provider.proxy = true;
  // A rotation on any replica reaches this one through the key set (signing-keys.ts).
  options.keys.onChange(() => useSigningKeys(provider, options.keys.privateJwks));

  adaptClientModel(provider);
  adaptGrantModel(provider);
  // Outermost, so it sees store outages in every endpoint and in the middleware below.
  provider.use(answerStoreOutages(provider));
  provider.use(registrationManagement(provider));
  provider.use(rewriteAuthorizationScope(services));
  provider.use(adjustMetadata(services));
  provider.use(introspectAccessTokens({ issuer, keys: options.keys, store }));
  return provider;
}

/**
 * Two rules oidc-provider does not let us configure:
 * - loopback redirect URIs match on any port for every client, not only `native` ones
 *   (RFC 8252 §7.3 and OAuth 2.1 §2.3.1 use MUST; Claude Code's metadata document lists
 *   portless loopback URIs without an application type);
 * - client secrets are compared with their stored digests (client-secret.ts).
 */
function adaptClientModel(provider: Provider): void {
  const prototype = provider.Client.prototype as unknown as {
    redirectUris: string[];
    clientSecret?: string;
    redirectUriAllowed(value: string): boolean;
    compareClientSecret(actual: string): Promise<boolean>;
  };
  prototype.redirectUriAllowed = function redirectUriAllowed(value: string) {
    return redirectUriMatches(value, this.redirectUris);
  };
  prototype.compareClientSecret = async function compareClientSecret(actual: string) {
    return typeof this.clientSecret === 'string' && clientSecretMatches(this.clientSecret, actual);
  };
}

/**
 * Grants keep their scopes per resource under the canonical resource URI. oidc-provider looks
 * a grant's resource scopes up by the literal `resource` parameter, so without this a request
 * naming `https://GW.example.com/svc/mcp/` never finds the scopes consented to for
 * `https://gw.example.com/svc/mcp` (consents.ts stores the canonical form): the consent prompt
 * comes back forever and tokens get no scope (RFC 8707 §2; MCP authorization, "Canonical
 * Server URI").
 */
function adaptGrantModel(provider: Provider): void {
  const prototype = provider.Grant.prototype as unknown as {
    getResourceScope(resource: string): string;
    addResourceScope(resource: string, scope: unknown): void;
  };
  const { getResourceScope, addResourceScope } = prototype;
  const canonical = (resource: string) => (typeof resource === 'string' ? canonicalResource(resource) ?? resource : resource);
  prototype.getResourceScope = function (this: unknown, resource: string) {
    return getResourceScope.call(this, canonical(resource));
  };
  prototype.addResourceScope = function (this: unknown, resource: string, scope: unknown) {
    addResourceScope.call(this, canonical(resource), scope);
  };
}

/**
 * Where oidc-provider's outgoing requests (client ID metadata documents, their `jwks_uri`) go.
 *
 * oidc-provider gives every such request a `dispatcher` of its own that destroys the connection
 * when the connected peer is a special-use IP address (RFC 6890): private, loopback,
 * link-local … It checks the socket's actual remote address, so the address it checked is the
 * one the request is sent to, whatever DNS answers next (CIMD §"Server-Side Request Forgery";
 * OAuth security BCP on SSRF). Production keeps it as given.
 *
 * Only `clients.cimd.allow_loopback` removes it: a metadata document served from this machine
 * is exactly what that check refuses. The configuration accepts that flag only while the
 * gateway listens on loopback (dev mode, tests); the URL rule (client-id-url.ts) still refuses
 * private non-loopback hosts then.
 */
function outgoingFetch(options: Pick<AuthorizationServerOptions, 'fetch' | 'cimd'>): typeof fetch {
  const transport: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  if (!options.cimd.allowLoopback) return transport;
  return (input, init) => {
    const { dispatcher: _specialUseIpCheck, ...rest } = (init ?? {}) as RequestInit & { dispatcher?: unknown };
    return transport(input, rest);
  };
}

function authorizationErrorMessage(error: string, description?: string): string {
  switch (error) {
    case 'invalid_client':
      return 'The application that sent you here is not registered with this gateway (or its registration was removed). Go back to the application and connect again.';
    case 'invalid_redirect_uri':
      return 'The application asked to return to an address it did not register. For your safety you were not sent there.';
    default:
      return description ? `The request could not be completed: ${description}.` : 'The request could not be completed.';
  }
}
