/**
 * `type: oidc`: any OpenID Connect issuer, found by discovery, through openid-client.
 *
 * The gateway runs its own leg: its own state, nonce and PKCE S256 toward the provider; none
 * of the MCP client's parameters (`resource`, `scope`, `state`, `code_challenge`) is passed on.
 * Discovery that fails at start is retried with backoff; until it succeeds the provider reports
 * not-ready and sign-ins through it fail with a clear message.
 */
import * as client from 'openid-client';
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

/** Loads the provider's discovery document once; throws on failure. */
export async function discoverOidcIssuer(options: Pick<OidcProviderOptions, 'issuer' | 'clientId' | 'clientSecret'>): Promise<client.Configuration> {
  const issuer = new URL(options.issuer);
  const auth = options.clientSecret ? client.ClientSecretBasic(options.clientSecret) : client.None();
  return client.discovery(issuer, options.clientId, undefined, auth, {
    execute: isLoopbackHttp(issuer) ? [client.allowInsecureRequests] : [],
    timeout: 10,
  });
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

  return {
    id: options.id,
    type: 'oidc',
    name: options.name ?? options.id,
    icon: options.icon,

    async begin({ state, callbackUrl, extraScopes }): Promise<SignInStart> {
      const config = ready();
      const verifier = client.randomPKCECodeVerifier();
      const nonce = client.randomNonce();
      const url = client.buildAuthorizationUrl(config, {
        ...options.extraAuthorizeParams,
        redirect_uri: callbackUrl,
        scope: [...new Set([...options.scopes, ...(extraScopes ?? [])])].join(' '),
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
        tokens = await client.authorizationCodeGrant(config, currentUrl, {
          pkceCodeVerifier: secrets.verifier,
          expectedState: state,
          expectedNonce: secrets.nonce,
          idTokenExpected: true,
        }, { redirect_uri: secrets.callbackUrl ?? '' });
        claims = { ...tokens.claims() };
      } catch (cause) {
        throw new SignInError(`${options.id} sign-in failed: ${cause instanceof Error ? cause.message : String(cause)}`, 'The identity provider could not sign you in.', { cause });
      }
      return { identity: identityFromClaims(options.id, claims, options.groupsClaim), tokens: upstreamTokens(tokens) };
    },

    async refresh(refreshToken) {
      try {
        return upstreamTokens(await client.refreshTokenGrant(ready(), refreshToken), refreshToken);
      } catch (cause) {
        throw new SignInError(`${options.id} refused a token refresh: ${cause instanceof Error ? cause.message : String(cause)}`, 'Sign in again.', { cause });
      }
    },

    readiness: () => (configuration ? { ready: true } : { ready: false, detail: lastError }),

    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
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
