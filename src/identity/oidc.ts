/**
 * `type: oidc`: any OpenID Connect issuer, found by discovery, through openid-client.
 *
 * The gateway runs its own leg: its own state, nonce and PKCE S256 toward the provider; none
 * of the MCP client's parameters (`resource`, `scope`, `state`, `code_challenge`) is passed on.
 * Discovery that fails at start is retried with backoff; until it succeeds the provider reports
 * not-ready and sign-ins through it fail with a clear message.
 */
import * as client from 'openid-client';
import { grantWithIssuerRule, type IdTokenIssuerRule } from './id-token-issuer.ts';
import type { Identity } from './identity.ts';
import { SignInError, type IdentityProvider, type SignInResult, type SignInStart, type UpstreamTokens } from './provider.ts';

export interface OidcProviderOptions {
  id: string;
  name?: string | undefined;
  icon?: string | undefined;
  issuer: string;
  clientId: string;
  clientSecret?: string | undefined;
  scopes: readonly string[];
  groupsClaim: string;
  extraAuthorizeParams?: Readonly<Record<string, string>> | undefined;
  /** Called with each discovery failure, for the log. */
  onDiscoveryError?: (error: unknown, attempt: number) => void;

  // Provider quirks: the presets (google.ts, microsoft.ts, …) are this module plus some of these.

  /** Reported as the provider's `type` (default `oidc`). */
  type?: string | undefined;
  /**
   * Where the discovery document is read from when the issuer it states is not the URL it is
   * read at (Entra's multi-tenant `{tenantid}` template), and the check that issuer must pass
   * instead of OIDC Discovery §4.3's equality: undefined accepts it, a string says why not.
   */
  discovery?: { url: string; checkIssuer(issuer: string): string | undefined } | undefined;
  /** Authorization-request parameters the provider needs for this sign-in (Google's offline access). */
  authorizeParams?: ((input: { extraScopes: readonly string[] }) => Record<string, string>) | undefined;
  /** For ID tokens that do not carry the discovered issuer verbatim (id-token-issuer.ts). */
  idTokenIssuer?: IdTokenIssuerRule | undefined;
  /** Also reads the UserInfo endpoint (OIDC Core §5.3), whose claims complete the ID token's. */
  userinfo?: boolean | undefined;
  /** Normalises the claims; default `identityFromClaims` with `groupsClaim`. */
  toIdentity?: ((claims: Record<string, unknown>) => Identity) | undefined;
}

const MAX_BACKOFF_MS = 60_000;

function isLoopbackHttp(issuer: URL): boolean {
  return issuer.protocol === 'http:' && /^(localhost|127(\.\d+){3}|\[::1\])$/.test(issuer.host.replace(/:\d+$/, ''));
}

/**
 * A discovery failure in one line, with its causes: fetch reports only "fetch failed", and the
 * reason an operator needs (ECONNREFUSED, a DNS failure, a certificate problem) is in `cause`.
 */
export function describeDiscoveryError(error: unknown): string {
  const parts: string[] = [];
  for (let current: unknown = error, depth = 0; current !== undefined && current !== null && depth < 4; depth++) {
    const message = current instanceof Error ? current.message : String(current);
    if (message && !parts.some((part) => part.includes(message))) parts.push(message);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(': ') || 'unknown error';
}

/**
 * A failed sign-in in one line: openid-client's message and its cause's, and for a claim that
 * failed a comparison (`iss`, `aud`, `nonce`) which value was expected and which came. None of
 * these is a secret; the token itself is never included.
 */
export function describeSignInError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth++) {
    if (current.message && !parts.includes(current.message)) parts.push(current.message);
    current = current.cause;
  }
  if (typeof current === 'object' && current !== null && 'claim' in current && 'expected' in current) {
    const { claim, expected, claims } = current as { claim: unknown; expected: unknown; claims?: Record<string, unknown> };
    parts.push(`${String(claim)} expected ${JSON.stringify(expected)}, got ${JSON.stringify(claims?.[String(claim)])}`);
  }
  return parts.join(': ') || String(error);
}

type ConfigurationOptions = Pick<OidcProviderOptions, 'issuer' | 'clientId' | 'clientSecret' | 'discovery'>;

function clientAuthentication(options: ConfigurationOptions): client.ClientAuth {
  return options.clientSecret ? client.ClientSecretBasic(options.clientSecret) : client.None();
}

/** Plain http only to a loopback host: the config schema allows nothing else. */
function allowsHttp(options: ConfigurationOptions): boolean {
  return isLoopbackHttp(new URL(options.discovery?.url ?? options.issuer));
}

/**
 * Loads the provider's discovery document once; throws on failure. Without `discovery`, reads
 * `<issuer>/.well-known/openid-configuration` and openid-client requires the `issuer` it states
 * to be the configured one; with it, reads `discovery.url` and `discovery.checkIssuer` decides.
 */
export async function discoverOidcIssuer(options: ConfigurationOptions): Promise<client.Configuration> {
  const url = new URL(options.discovery?.url ?? options.issuer);
  const configuration = await client.discovery(url, options.clientId, undefined, clientAuthentication(options), {
    execute: allowsHttp(options) ? [client.allowInsecureRequests] : [],
    timeout: 10,
  });
  const problem = options.discovery?.checkIssuer(configuration.serverMetadata().issuer);
  if (problem !== undefined) throw new Error(`the discovery document at ${url.href} states an unexpected issuer: ${problem}`);
  return configuration;
}

/** A configuration like a discovered one (client, authentication, transport) over the given server metadata. */
function configurationFor(options: ConfigurationOptions, metadata: client.ServerMetadata): client.Configuration {
  const configuration = new client.Configuration(metadata, options.clientId, undefined, clientAuthentication(options));
  if (allowsHttp(options)) client.allowInsecureRequests(configuration);
  configuration.timeout = 10;
  return configuration;
}

export function createOidcProvider(options: OidcProviderOptions): IdentityProvider {
  let configuration: client.Configuration | undefined;
  let lastError: string | undefined = 'discovery not attempted yet';
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const discover = async (attempt: number): Promise<void> => {
    try {
      configuration = await discoverOidcIssuer(options);
      lastError = undefined;
    } catch (error) {
      lastError = `discovery of ${options.issuer} failed: ${describeDiscoveryError(error)}`;
      options.onDiscoveryError?.(error, attempt);
      if (closed) return;
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(attempt, 6));
      timer = setTimeout(() => void discover(attempt + 1), delay);
      timer.unref();
    }
  };
  void discover(0);

  const ready = (): client.Configuration => {
    if (!configuration) throw new Error(`identity provider ${options.id} is not ready: ${lastError}`);
    return configuration;
  };

  const jwks: { cache?: client.ExportedJWKSCache } = {};
  /** Runs a token grant; through the provider's ID-token issuer rule when it has one. */
  const runGrant = <T>(config: client.Configuration, grant: (config: client.Configuration, replay: boolean) => Promise<T>): Promise<T> => (
    options.idTokenIssuer
      ? grantWithIssuerRule({ rule: options.idTokenIssuer, base: config, configure: (metadata) => configurationFor(options, metadata), jwks }, grant)
      : grant(config, false)
  );

  return {
    id: options.id,
    type: options.type ?? 'oidc',
    name: options.name ?? options.id,
    icon: options.icon,

    async begin({ state, callbackUrl, extraScopes }): Promise<SignInStart> {
      const config = ready();
      const verifier = client.randomPKCECodeVerifier();
      const nonce = client.randomNonce();
      const url = client.buildAuthorizationUrl(config, {
        ...options.extraAuthorizeParams,
        ...options.authorizeParams?.({ extraScopes: extraScopes ?? [] }),
        redirect_uri: callbackUrl,
        scope: signInScopes(config, options.scopes, extraScopes).join(' '),
        state,
        nonce,
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      return { url: url.href, secrets: { verifier, nonce, callbackUrl } };
    },

    async complete({ currentUrl, state, secrets }): Promise<SignInResult> {
      const config = ready();
      const upstreamError = currentUrl.searchParams.get('error');
      if (upstreamError) {
        throw new SignInError(
          `${options.id} returned ${upstreamError}: ${currentUrl.searchParams.get('error_description') ?? ''}`,
          upstreamError === 'access_denied' ? 'Sign-in was cancelled at the identity provider.' : 'The identity provider could not sign you in.',
        );
      }
      let claims: Record<string, unknown>;
      let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
      try {
        // openid-client compares the callback URL without its query to the redirect_uri.
        tokens = await runGrant(config, (grantConfig, replay) => client.authorizationCodeGrant(grantConfig, replay ? withoutIssParameter(currentUrl) : currentUrl, {
          pkceCodeVerifier: secrets.verifier,
          expectedState: state,
          expectedNonce: secrets.nonce,
          idTokenExpected: true,
        }, { redirect_uri: secrets.callbackUrl ?? '' }));
        claims = { ...tokens.claims() };
        if (options.userinfo) claims = await withUserinfo(config, tokens.access_token, claims);
      } catch (cause) {
        throw new SignInError(`${options.id} sign-in failed: ${describeSignInError(cause)}`, 'The identity provider could not sign you in.', { cause });
      }
      const identity = options.toIdentity ? options.toIdentity(claims) : identityFromClaims(options.id, claims, options.groupsClaim);
      return { identity, tokens: upstreamTokens(tokens) };
    },

    async refresh(refreshToken) {
      try {
        return upstreamTokens(await runGrant(ready(), (grantConfig) => client.refreshTokenGrant(grantConfig, refreshToken)), refreshToken);
      } catch (cause) {
        // Only an OAuth error the provider answered (RFC 6749 §5.2: invalid_grant when revoked or
        // expired) is a refusal; a network failure, a 5xx (temporarily_unavailable) or an
        // unready provider is not, and the caller may try again.
        if (!(cause instanceof client.ResponseBodyError) || cause.status >= 500) throw cause;
        throw new SignInError(`${options.id} refused a token refresh: ${cause.message} (${cause.error})`, 'Sign in again.', { cause });
      }
    },

    readiness: () => (configuration ? { ready: true } : { ready: false, detail: lastError }),

    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/** The callback URL without its RFC 9207 `iss` parameter (see grantWithIssuerRule). */
function withoutIssParameter(url: URL): URL {
  const copy = new URL(url);
  copy.searchParams.delete('iss');
  return copy;
}

/**
 * The ID token's claims completed by the UserInfo response, for providers that put only some
 * claims in the ID token. openid-client requires the response's `sub` to be the ID token's
 * (OIDC Core §5.3.2); the ID token's own `sub` is kept either way.
 */
async function withUserinfo(config: client.Configuration, accessToken: string, claims: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (typeof claims.sub !== 'string') return claims;
  const userinfo = await client.fetchUserInfo(config, accessToken, claims.sub);
  return { ...claims, ...userinfo, sub: claims.sub };
}

/**
 * The scopes of a sign-in: the provider's own, the services' extra ones and, when there are
 * extra ones (a service will receive the upstream token, so the gateway must be able to
 * refresh it), `offline_access` if the provider offers it (OIDC Core §11). Providers that
 * grant refresh tokens otherwise (Google's `access_type=offline`) leave it out of discovery.
 */
export function signInScopes(config: client.Configuration, own: readonly string[], extra: readonly string[] | undefined): string[] {
  const scopes = new Set([...own, ...(extra ?? [])]);
  const supported = config.serverMetadata().scopes_supported;
  if (extra !== undefined && extra.length > 0 && Array.isArray(supported) && supported.includes('offline_access')) scopes.add('offline_access');
  return [...scopes];
}

/**
 * Normalises ID-token claims; exported for provider presets with other claim shapes. Throws
 * `SignInError` without a usable `sub`: every such person would otherwise share one account
 * (`provider:undefined`). Numeric subjects (GitHub's user ids) are taken as their text.
 */
export function identityFromClaims(provider: string, claims: Record<string, unknown>, groupsClaim: string): Identity {
  const text = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value : undefined);
  const subject = typeof claims.sub === 'number' && Number.isSafeInteger(claims.sub) ? String(claims.sub) : text(claims.sub);
  if (subject === undefined) {
    throw new SignInError(`${provider} returned no subject (sub) for the signed-in user`, 'The identity provider did not say who you are.');
  }
  const rawGroups = claims[groupsClaim];
  const groups = Array.isArray(rawGroups)
    ? rawGroups.filter((group): group is string => typeof group === 'string')
    : typeof rawGroups === 'string' ? rawGroups.split(/[ ,]+/).filter(Boolean) : [];
  const email = text(claims.email)?.toLowerCase();
  const identity: Identity = {
    provider,
    subject,
    emailVerified: email !== undefined && (claims.email_verified === true || claims.email_verified === 'true'),
    groups,
  };
  if (email) identity.email = email;
  const name = text(claims.name);
  if (name) identity.name = name;
  const picture = text(claims.picture);
  if (picture) identity.picture = picture;
  return identity;
}

/** The token response as the gateway keeps it; a refresh that returns no new refresh token keeps the old one. */
function upstreamTokens(response: client.TokenEndpointResponse, previousRefreshToken?: string): UpstreamTokens {
  const tokens: UpstreamTokens = { accessToken: response.access_token };
  const refreshToken = response.refresh_token ?? previousRefreshToken;
  if (refreshToken) tokens.refreshToken = refreshToken;
  if (typeof response.expires_in === 'number') tokens.expiresAt = Math.floor(Date.now() / 1000) + response.expires_in;
  if (typeof response.scope === 'string') tokens.scope = response.scope;
  return tokens;
}
