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
import { NORMALISATION_HOOK_PROPERTY, normalizeClientMetadata } from './client-metadata.ts';
import { redirectUriMatches } from './redirect-uri.ts';
import type { SigningKeys } from './signing-keys.ts';
import type { ServiceCatalog } from './service-catalog.ts';
import { loadConsentGrant } from './consents.ts';
import { rewriteAuthorizationScope } from './authorization-request.ts';
import { errorPage } from './views/index.ts';
import { isAllowedClientIdUrl } from './client-id-url.ts';

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
  /** Loads a signed-in user for tokens; `undefined` when unknown or no longer allowed. */
  findAccount: (accountId: string) => Promise<Record<string, unknown> | undefined>;
  /** Overrides the fetch oidc-provider uses for client metadata documents (tests: a CA). */
  fetch?: typeof fetch;
}

const CONSENT_GRANT_DAYS = 365;
const SESSION_TTL_SECONDS = 14 * 24 * 3600;

export function createAuthorizationServer(options: AuthorizationServerOptions): Provider {
  const { issuer, store, services, tokens } = options;

  const policy = interactionPolicy.base();
  // Consent is remembered per user, client and service (consents.ts), native clients included;
  // first-time consent for a localhost-only client carries a warning on the consent page.
  policy.get('consent')?.checks.remove('native_client_prompt');

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
    findAccount: async (_ctx, sub) => {
      const claims = await options.findAccount(sub);
      if (!claims) return undefined;
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
      revocation: { enabled: true },
      introspection: { enabled: true },
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
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };

  const provider = new Provider(issuer, configuration);
  provider.proxy = true;

  adaptClientModel(provider);
  provider.use(rewriteAuthorizationScope(services));
  provider.use(adjustMetadata(services));
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
 * Authorization-server metadata as MCP clients need it: `scopes_supported` lists the services'
 * scopes (never `offline_access`, which makes SDKs add `prompt=consent`), and the
 * openid-configuration copy carries the same fields as the RFC 8414 one.
 */
function adjustMetadata(services: ServiceCatalog) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
    await next();
    if (ctx.oidc?.route !== 'discovery' || !ctx.body || typeof ctx.body !== 'object') return;
    const body = ctx.body as Record<string, unknown>;
    body.scopes_supported = services.allScopes();
    body.response_modes_supported = ['query'];
    body.grant_types_supported = ['authorization_code', 'refresh_token'];
    delete body.claims_parameter_supported;
    delete body.request_parameter_supported;
    delete body.request_uri_parameter_supported;
    ctx.set('Cache-Control', 'public, max-age=300');
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
