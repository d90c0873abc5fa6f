/**
 * `type: github`: GitHub (github.com, or GitHub Enterprise Server through `base_url`/`api_url`).
 *
 * GitHub is OAuth 2.0, not OpenID Connect: no discovery, no ID token, no userinfo endpoint.
 * The gateway runs its own authorization code leg with PKCE S256 and `state` (RFC 6749 §4.1,
 * RFC 7636) at `{base_url}/login/oauth/authorize` and `{base_url}/login/oauth/access_token`,
 * through openid-client with the server metadata given by hand, then asks the REST API at
 * `{api_url}` who the token belongs to:
 *
 *   GET /user          the stable numeric `id` (the subject; a login can be renamed), name, avatar
 *   GET /user/emails   the primary verified address (`user:email`)
 *   GET /user/orgs     } only when an access rule names GitHub orgs or teams (`read:org`);
 *   GET /user/teams    } paginated with `per_page=100` and the Link header (RFC 8288), bounded
 *
 * GitHub quirks handled here:
 * - The token endpoint answers errors with HTTP 200 and `error` in the body; they are turned
 *   into the 400 that RFC 6749 §5.2 specifies before openid-client reads them.
 * - `scope` in token responses is comma-separated; kept space-separated as RFC 6749 §3.3 has it.
 * - OAuth app tokens never expire and come without a refresh token; GitHub App user tokens
 *   expire after 8 hours and come with one (`refresh` exchanges it).
 */
import * as client from 'openid-client';
import { isLoopbackHost } from '../config/index.ts';
import type { Identity } from './identity.ts';
import { SignInError, type IdentityProvider, type SignInResult, type SignInStart, type UpstreamTokens } from './provider.ts';

export const GITHUB_BASE_URL = 'https://github.com';
export const GITHUB_API_URL = 'https://api.github.com';

/** Scopes always asked for: the profile and the e-mail addresses (with their verified flag). */
const BASE_SCOPES = ['read:user', 'user:email'];
/** Asked for only when rules name orgs or teams: lists them, including private memberships. */
const MEMBERSHIP_SCOPE = 'read:org';

const PER_PAGE = 100;
/** At most this many pages (of 100) of orgs or of teams; more fails closed rather than guessing. */
const MAX_PAGES = 10;
const API_VERSION = '2022-11-28';
const TIMEOUT_SECONDS = 10;

export interface GitHubProviderOptions {
  id: string;
  name?: string | undefined;
  icon?: string | undefined;
  clientId: string;
  clientSecret: string;
  /** Default https://github.com; GitHub Enterprise Server: https://ghe.example.com. */
  baseUrl?: string | undefined;
  /** Default https://api.github.com, or `<base_url>/api/v3` when only base_url is set (GHES). */
  apiUrl?: string | undefined;
  /** Scopes asked for beyond `read:user user:email` (and `read:org`). */
  scopes?: readonly string[] | undefined;
  /** Whether access rules name GitHub orgs or teams: then `read:org` is asked for and membership read. */
  readMembership: boolean;
}

export interface GitHubMembership {
  orgs: string[];
  teams: string[];
}

/** The API base for a base URL: github.com's API lives on its own host, GHES's under /api/v3. */
export function githubApiUrl(baseUrl: string | undefined, apiUrl: string | undefined): string {
  if (apiUrl !== undefined) return trimSlash(apiUrl);
  if (baseUrl === undefined || trimSlash(baseUrl) === GITHUB_BASE_URL) return GITHUB_API_URL;
  return `${trimSlash(baseUrl)}/api/v3`;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** A request to the REST API failed; `status` is the HTTP status when there was an answer. */
export class GitHubApiError extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GitHubApiError';
    this.status = status;
  }
}

export function createGitHubProvider(options: GitHubProviderOptions): IdentityProvider {
  const baseUrl = trimSlash(options.baseUrl ?? GITHUB_BASE_URL);
  const apiUrl = githubApiUrl(options.baseUrl, options.apiUrl);
  const tokenEndpoint = `${baseUrl}/login/oauth/access_token`;
  const scope = [...new Set([...BASE_SCOPES, ...(options.readMembership ? [MEMBERSHIP_SCOPE] : []), ...(options.scopes ?? [])])];

  // Plain OAuth 2.0 with the endpoints given by hand (RFC 8414 metadata GitHub does not publish).
  // GitHub takes the client secret in the body (client_secret_post).
  const config = new client.Configuration(
    { issuer: baseUrl, authorization_endpoint: `${baseUrl}/login/oauth/authorize`, token_endpoint: tokenEndpoint },
    options.clientId,
    undefined,
    client.ClientSecretPost(options.clientSecret),
  );
  config.timeout = TIMEOUT_SECONDS;
  config[client.customFetch] = tokenErrorsAsRfc6749(tokenEndpoint);
  // Plain http only for a local stand-in on a loopback address (the schema refuses others).
  const plain = [baseUrl, apiUrl].map((url) => new URL(url)).filter((url) => url.protocol === 'http:');
  if (plain.length > 0 && plain.every((url) => isLoopbackHost(url.hostname))) {
    client.allowInsecureRequests(config);
  }

  const api = (accessToken: string) => createApiReader(config, apiUrl, accessToken);

  /** Everything the gateway knows about a person, read with their access token. */
  const readIdentity = async (accessToken: string): Promise<Identity> => {
    const read = api(accessToken);
    const [user, emails, membership] = await Promise.all([
      read.one('/user'),
      read.one('/user/emails').catch((error: unknown) => {
        // A GitHub App without the "Email addresses" permission gets 403/404: no e-mail, not no sign-in.
        if (error instanceof GitHubApiError && (error.status === 403 || error.status === 404)) return [];
        throw error;
      }),
      options.readMembership ? readMembership(read) : Promise.resolve(undefined),
    ]);
    return identityFromGitHub(options.id, user, emails, membership);
  };

  const refresh = async (refreshToken: string): Promise<UpstreamTokens> => {
    try {
      return tokensFromResponse(await client.refreshTokenGrant(config, refreshToken), refreshToken);
    } catch (cause) {
      // Only an error GitHub answered (bad_refresh_token: expired, revoked, already used) is a
      // refusal; a network failure is not, and the caller may try again.
      if (!(cause instanceof client.ResponseBodyError)) throw cause;
      throw new SignInError(`${options.id} refused a token refresh: ${describe(cause)}`, 'Sign in again.', { cause });
    }
  };

  const provider: IdentityProvider = {
    id: options.id,
    type: 'github',
    name: options.name ?? 'GitHub',
    icon: options.icon,

    async begin({ state, callbackUrl, extraScopes }): Promise<SignInStart> {
      const verifier = client.randomPKCECodeVerifier();
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: callbackUrl,
        scope: [...new Set([...scope, ...(extraScopes ?? [])])].join(' '),
        state,
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      // The token request's redirect_uri is the callback URL without its query (openid-client).
      return { url: url.href, secrets: { verifier } };
    },

    async complete({ currentUrl, state, secrets }): Promise<SignInResult> {
      const upstreamError = currentUrl.searchParams.get('error');
      if (upstreamError) {
        throw new SignInError(
          `${options.id} returned ${upstreamError}: ${currentUrl.searchParams.get('error_description') ?? ''}`,
          upstreamError === 'access_denied' ? 'Sign-in was cancelled at GitHub.' : 'GitHub could not sign you in.',
        );
      }
      let tokens: UpstreamTokens;
      try {
        // No ID token: GitHub is not an OpenID provider. State and PKCE are checked here.
        const response = await client.authorizationCodeGrant(config, currentUrl, {
          pkceCodeVerifier: secrets.verifier,
          expectedState: state,
          idTokenExpected: false,
        });
        tokens = tokensFromResponse(response);
      } catch (cause) {
        throw new SignInError(`${options.id} sign-in failed: ${describe(cause)}`, 'GitHub could not sign you in.', { cause });
      }
      try {
        return { identity: await readIdentity(tokens.accessToken), tokens };
      } catch (cause) {
        if (cause instanceof SignInError) throw cause;
        throw new SignInError(`${options.id}: reading the user from the GitHub API failed: ${describe(cause)}`, 'GitHub could not tell the gateway who you are. Try again in a minute.', { cause });
      }
    },

    refresh,

    readiness: () => ({ ready: true }),
    close() {},
  };

  if (options.readMembership) {
    /**
     * Re-reads the person (membership above all) with their stored token; the caller refreshes
     * an expiring GitHub App token first (upstream-tokens.ts does, one refresh at a time).
     * Rejects with `SignInError` when GitHub no longer accepts the token (authorization
     * revoked, token expired) or it now belongs to someone else; with another error when GitHub
     * could not be asked (outage, rate limit).
     */
    provider.reload = async (previous: Identity, tokens: UpstreamTokens): Promise<SignInResult> => {
      let identity: Identity;
      try {
        identity = await readIdentity(tokens.accessToken);
      } catch (cause) {
        if (cause instanceof GitHubApiError && cause.status === 401) {
          throw new SignInError(`${options.id}: GitHub no longer accepts the stored token (${cause.message})`, 'Sign in again.', { cause });
        }
        throw cause;
      }
      if (identity.subject !== previous.subject) {
        throw new SignInError(`${options.id}: the stored token belongs to GitHub user ${identity.subject}, not ${previous.subject}`, 'Sign in again.');
      }
      return { identity, tokens };
    };
  }

  return provider;
}

/**
 * GitHub's token endpoint answers every error with 200 and `{ error, error_description }`
 * (`bad_verification_code`, `incorrect_client_credentials`, `redirect_uri_mismatch`,
 * `bad_refresh_token` …). RFC 6749 §5.2 wants 400; answering openid-client with that status
 * makes it raise the OAuth error by name instead of "access_token missing".
 */
function tokenErrorsAsRfc6749(tokenEndpoint: string): client.CustomFetch {
  const tokenHref = new URL(tokenEndpoint).href;
  return async (url, init) => {
    const response = await fetch(url, init as RequestInit);
    if (new URL(url).href !== tokenHref || response.status !== 200) return response;
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const isError = typeof body === 'object' && body !== null && typeof (body as Record<string, unknown>).error === 'string'
      && (body as Record<string, unknown>).access_token === undefined;
    return new Response(text, { status: isError ? 400 : 200, headers: response.headers });
  };
}

interface ApiReader {
  /** One JSON document. */
  one(path: string): Promise<unknown>;
  /** Every item of a paginated list, following `Link: <…>; rel="next"` within the API origin. */
  all(path: string): Promise<unknown[]>;
}

function createApiReader(config: client.Configuration, apiUrl: string, accessToken: string): ApiReader {
  const get = async (url: URL): Promise<Response> => {
    const headers = new Headers({ accept: 'application/vnd.github+json', 'x-github-api-version': API_VERSION, 'user-agent': 'Gatehouse' });
    let response: Response;
    try {
      response = await client.fetchProtectedResource(config, accessToken, url, 'GET', undefined, headers);
    } catch (cause) {
      // A 401 with a WWW-Authenticate challenge arrives as an error rather than a response.
      const status = cause instanceof client.WWWAuthenticateChallengeError ? cause.status : undefined;
      throw new GitHubApiError(`GET ${url.pathname}: ${describe(cause)}`, status, { cause });
    }
    if (!response.ok) {
      const detail = await response.text().then((text) => text.slice(0, 200), () => '');
      throw new GitHubApiError(`GET ${url.pathname} answered ${response.status}: ${detail}`, response.status);
    }
    return response;
  };
  const json = async (response: Response, url: URL): Promise<unknown> => {
    try {
      return await response.json();
    } catch (cause) {
      throw new GitHubApiError(`GET ${url.pathname} did not answer JSON`, response.status, { cause });
    }
  };
  const apiOrigin = new URL(apiUrl).origin;
  return {
    async one(path) {
      const url = new URL(`${apiUrl}${path}`);
      return json(await get(url), url);
    },
    async all(path) {
      let url: URL | undefined = new URL(`${apiUrl}${path}?per_page=${PER_PAGE}`);
      const items: unknown[] = [];
      for (let page = 0; url !== undefined; page++) {
        // Partial membership could miss a deny rule: fail rather than decide on part of the list.
        if (page === MAX_PAGES) throw new GitHubApiError(`GET ${path} has more than ${MAX_PAGES * PER_PAGE} entries`, undefined);
        const response = await get(url);
        const body = await json(response, url);
        if (!Array.isArray(body)) throw new GitHubApiError(`GET ${url.pathname} did not answer a list`, response.status);
        items.push(...body);
        const next = nextPageUrl(response.headers.get('link'), url);
        // The token goes only to the API it was given for.
        if (next !== undefined && next.origin !== apiOrigin) throw new GitHubApiError(`GET ${path}: the next page is on another origin (${next.origin})`, undefined);
        url = next;
      }
      return items;
    },
  };
}

/** The `rel="next"` target of a Link header (RFC 8288 §3), resolved against the request URL. */
export function nextPageUrl(link: string | null, base: URL): URL | undefined {
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const entry = /^\s*<([^>]*)>(.*)$/s.exec(part);
    const rel = entry?.[2] !== undefined ? /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(entry[2]) : null;
    const relations = (rel?.[1] ?? rel?.[2] ?? '').toLowerCase().split(/\s+/);
    if (entry?.[1] !== undefined && relations.includes('next') && URL.canParse(entry[1], base.href)) return new URL(entry[1], base);
  }
  return undefined;
}

async function readMembership(read: ApiReader): Promise<GitHubMembership> {
  const [orgs, teams] = await Promise.all([read.all('/user/orgs'), read.all('/user/teams')]);
  return membershipFromGitHub(orgs, teams);
}

/** Org logins and `org/team-slug` names, lower-cased (GitHub compares both without case). */
export function membershipFromGitHub(orgs: readonly unknown[], teams: readonly unknown[]): GitHubMembership {
  const text = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value.toLowerCase() : undefined);
  const orgLogins = orgs.map((org) => text(isRecord(org) ? org.login : undefined)).filter((login) => login !== undefined);
  const teamNames = teams.map((team) => {
    if (!isRecord(team)) return undefined;
    const org = text(isRecord(team.organization) ? team.organization.login : undefined);
    const slug = text(team.slug);
    return org !== undefined && slug !== undefined ? `${org}/${slug}` : undefined;
  }).filter((name) => name !== undefined);
  return { orgs: [...new Set(orgLogins)], teams: [...new Set(teamNames)] };
}

/**
 * The normalised identity from `GET /user` and `GET /user/emails` (and membership, when read).
 * The subject is the numeric user id as text: a login can be renamed and then taken by someone
 * else. The e-mail is the primary address if verified, else the first verified one; an
 * unverified address is never reported (GitHub lets anyone add any address unverified).
 */
export function identityFromGitHub(provider: string, user: unknown, emails: unknown, membership?: GitHubMembership): Identity {
  const record = isRecord(user) ? user : {};
  if (typeof record.id !== 'number' || !Number.isSafeInteger(record.id) || record.id <= 0) {
    throw new SignInError(`${provider}: GET /user returned no numeric id`, 'GitHub did not say who you are.');
  }
  const text = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value : undefined);
  const identity: Identity = { provider, subject: String(record.id), emailVerified: false, groups: [] };
  const addresses = (Array.isArray(emails) ? emails : []).filter(isRecord)
    .filter((entry) => entry.verified === true && text(entry.email) !== undefined);
  const chosen = addresses.find((entry) => entry.primary === true) ?? addresses[0];
  if (chosen) {
    identity.email = String(chosen.email).toLowerCase();
    identity.emailVerified = true;
  }
  // Many accounts have no display name; the login is what people know them by then.
  const name = text(record.name) ?? text(record.login);
  if (name) identity.name = name;
  const picture = text(record.avatar_url);
  if (picture) identity.picture = picture;
  if (membership) {
    identity.githubOrgs = membership.orgs;
    identity.githubTeams = membership.teams;
  }
  return identity;
}

/** The token response as the gateway keeps it; a refresh without a new refresh token keeps the old one. */
function tokensFromResponse(response: client.TokenEndpointResponse, previousRefreshToken?: string): UpstreamTokens {
  const tokens: UpstreamTokens = { accessToken: response.access_token };
  const refreshToken = response.refresh_token ?? previousRefreshToken;
  if (refreshToken) tokens.refreshToken = refreshToken;
  if (typeof response.expires_in === 'number' && response.expires_in > 0) tokens.expiresAt = Math.floor(Date.now() / 1000) + response.expires_in;
  // GitHub App tokens answer `scope: ""`: their rights are the app's permissions, not scopes.
  if (typeof response.scope === 'string' && response.scope !== '') tokens.scope = response.scope.split(/[\s,]+/).filter(Boolean).join(' ');
  return tokens;
}

/** An error in one line for the log: GitHub's OAuth error by name, or the messages of the cause chain. */
function describe(error: unknown): string {
  if (error instanceof client.ResponseBodyError) return `${error.error}${error.error_description ? `: ${error.error_description}` : ''}`;
  const parts: string[] = [];
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 4; current = current.cause, depth++) {
    if (current.message && !parts.includes(current.message)) parts.push(current.message);
  }
  return parts.join(': ') || String(error);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
