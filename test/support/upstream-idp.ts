/**
 * A real OpenID Connect provider (panva's oidc-provider) on 127.0.0.1, for tests that need
 * an *upstream* identity provider for the gateway to sign users in at. Nothing is mocked:
 * discovery, PKCE, ID-token signing, userinfo and refresh are oidc-provider's own.
 *
 * Its login page is deliberately tiny so that both HttpSession and a real browser can drive
 * it: GET /interaction/:uid shows a form with one text input (`#login`) and a submit button
 * (`#submit`); POSTing a known login signs that user in and grants everything the client
 * asked for in one step (no consent page); an unknown login re-renders the form with 400.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
// oidc-provider ships no type declarations; the few members used here are typed below.
// @ts-ignore -- untyped module (TS7016) unless a declaration shim exists elsewhere
import OidcProvider from 'oidc-provider';
import type { HttpSession } from './http-session.ts';

export interface UpstreamUser {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
  [claim: string]: unknown;
}

export interface UpstreamClient {
  client_id: string;
  /** Absent: a public client (`token_endpoint_auth_method: none`). */
  client_secret?: string;
  redirect_uris: string[];
  /** Default `client_secret_basic` with a secret, `none` without. Basic and post are both accepted either way. */
  token_endpoint_auth_method?: 'client_secret_basic' | 'client_secret_post' | 'none';
}

export interface UpstreamIdpOptions {
  /** Login name → claims. */
  users: Record<string, UpstreamUser>;
  clients: UpstreamClient[];
  /** e.g. '/realms/test' to imitate Keycloak-style path issuers. Default: none. */
  issuerPath?: string;
  /** Default 0 (random). */
  port?: number;
  /** Name of the claim carrying `UpstreamUser.groups` (default 'groups'); released with the `groups` scope. */
  groupsClaim?: string;
  /**
   * Lifetime of access tokens in seconds (default 3600). A few seconds lets tests see the
   * relying party refresh them; refresh tokens are issued to every client that may use them.
   */
  accessTokenTtlSeconds?: number;
  /** Scopes offered besides openid, offline_access and the claim scopes, e.g. an API's `drive.readonly`. */
  scopes?: string[];

  // Shapes of real providers (test/support/provider-standins.ts):

  /** The scope that releases the groups claim (default 'groups'; 'openid' releases it always, as a mapper does). */
  groupsScope?: string;
  /** The issuer ends with `/`, as Auth0's does: `url` + issuerPath + `/`. */
  issuerTrailingSlash?: boolean;
  /**
   * Scope claims only at userinfo, not in the ID token issued with an access token (OIDC Core
   * §5.4), like Okta's "thin" ID token; claims requested with the `claims` parameter still are.
   */
  thinIdToken?: boolean;
  /**
   * More path prefixes served by the same provider, like Entra's `/common/v2.0` beside a
   * tenant's `/{tid}/v2.0`. Discovery read through one states `discoveryIssuer(url)` as the
   * issuer (Entra's `{tenantid}` template); tokens still carry the provider's own issuer.
   */
  aliases?: Array<{ path: string; discoveryIssuer: (url: string) => string }>;
  /** `false`: no RFC 9207 `iss` in authorization responses, nor in discovery, like Entra. Default true. */
  authorizationResponseIss?: boolean;
  /** Authorization requests carrying one of these parameters are refused with 400 (Entra refuses `resource`). */
  refusedParameters?: string[];
}

export interface UpstreamIdp {
  /** `url` + issuerPath, no trailing slash. Discovery at `${issuer}/.well-known/openid-configuration`. */
  issuer: string;
  /** Origin, e.g. http://127.0.0.1:43123 */
  url: string;
  clients: UpstreamClient[];
  /**
   * Adds or replaces a user. Claims other than the standard ones are released (with the
   * `profile` scope) only if some user given to startUpstreamIdp already had them.
   */
  setUser(login: string, user: UpstreamUser): void;
  /** The query of every authorization request received, in order. */
  authorizationRequests: URLSearchParams[];
  /** The `grant_type` of every token request that succeeded, in order. */
  tokenGrants: string[];
  /** The `grant_type` and error of every token request that was refused, in order. */
  tokenErrors: Array<{ grantType: string; error: string }>;
  close(): Promise<void>;
}

/** The parts of oidc-provider's API used here. */
type ProviderHandler = (req: IncomingMessage, res: ServerResponse) => void;
interface Provider {
  callback(): ProviderHandler;
  use(middleware: (ctx: never, next: () => Promise<void>) => Promise<void>): void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    options: { mergeWithLastSubmission: boolean },
  ): Promise<void>;
  Grant: new (init: { accountId: string; clientId: string }) => Grant;
  on(event: 'server_error', listener: (ctx: unknown, error: Error) => void): void;
  on(event: 'grant.success', listener: (ctx: unknown) => void): void;
  on(event: 'grant.error', listener: (ctx: unknown, error: Error) => void): void;
}
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => Provider;

interface InteractionDetails {
  uid: string;
  params: Record<string, unknown> & { client_id: string; scope?: string; claims?: string };
  prompt: { name: string };
}

interface Grant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  save(): Promise<string>;
}

const STANDARD_CLAIMS = new Set(['sub', 'email', 'email_verified', 'name', 'groups']);
const PROFILE_CLAIMS = ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'locale'];
const MAX_FORM_BYTES = 16 * 1024;

export async function startUpstreamIdp(options: UpstreamIdpOptions): Promise<UpstreamIdp> {
  const users = new Map(Object.entries(options.users));
  const groupsClaim = options.groupsClaim ?? 'groups';
  const issuerPath = normaliseIssuerPath(options.issuerPath ?? '');
  const aliases = (options.aliases ?? []).map((alias) => ({ ...alias, path: normaliseIssuerPath(alias.path) }));
  const mountPaths = [issuerPath, ...aliases.map((alias) => alias.path)];
  const authorizationRequests: URLSearchParams[] = [];
  const tokenGrants: string[] = [];
  const tokenErrors: Array<{ grantType: string; error: string }> = [];

  // The issuer contains the port, so the provider is made once the server listens.
  let mounted: { provider: Provider; handle: ProviderHandler } | undefined;
  const server = createServer((req, res) => {
    if (!mounted) {
      res.writeHead(503).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (mountPaths.some((mountPath) => url.pathname === `${mountPath}/auth`)) authorizationRequests.push(url.searchParams);
    handleRequest(mounted.provider, mounted.handle, mountPaths, users, req, res).catch((error: unknown) => {
      console.error('upstream-idp: request failed', error);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
    });
  });
  const url = await listen(server, options.port ?? 0);
  const issuer = `${url}${issuerPath}${options.issuerTrailingSlash ? '/' : ''}`;

  let provider: Provider;
  try {
    provider = createProvider(issuer, options, users, groupsClaim, await generateSigningKey());
  } catch (error) {
    await closeServer(server);
    throw error;
  }
  provider.on('server_error', (_ctx, error) => console.error('upstream-idp: server_error', error));
  provider.use(shapeResponses(url, aliases, options.authorizationResponseIss ?? true, options.refusedParameters ?? []));
  const grantType = (ctx: unknown) => String((ctx as { oidc?: { params?: { grant_type?: unknown } } }).oidc?.params?.grant_type);
  provider.on('grant.success', (ctx) => tokenGrants.push(grantType(ctx)));
  provider.on('grant.error', (ctx, error) => tokenErrors.push({ grantType: grantType(ctx), error: String((error as { error?: unknown }).error ?? error.message) }));
  mounted = { provider, handle: provider.callback() };

  return {
    issuer,
    url,
    clients: options.clients,
    setUser(login, user) {
      users.set(login, user);
    },
    authorizationRequests,
    tokenGrants,
    tokenErrors,
    close: () => closeServer(server),
  };
}

function createProvider(
  issuer: string,
  options: UpstreamIdpOptions,
  users: Map<string, UpstreamUser>,
  groupsClaim: string,
  signingKey: Record<string, unknown>,
): Provider {
  const Provider = OidcProvider as unknown as ProviderConstructor;
  const initialUsers = options.users;
  return new Provider(issuer, {
    clients: options.clients.map(toClientMetadata),
    scopes: ['openid', 'offline_access', ...(options.scopes ?? [])],
    jwks: { keys: [signingKey] },
    findAccount: (_ctx: unknown, sub: string) => {
      const user = [...users.values()].find((u) => u.sub === sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: () => ({ ...user, [groupsClaim]: user.groups ?? [] }),
      };
    },
    claims: scopeClaims(options, groupsClaim),
    // Like Keycloak or Entra (and unlike oidc-provider's default), put the claims of the
    // granted scopes in the ID token too, not only at userinfo; a thin ID token does not.
    conformIdTokenClaims: options.thinIdToken ?? false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    clientBasedCORS: () => true,
    issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) =>
      client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: { enabled: true },
    },
    interactions: {
      url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
    },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      // Browsers share cookies across the ports of one host: with oidc-provider's default
      // names this IdP's `_session` would overwrite the gateway's own on 127.0.0.1.
      names: { session: 'upstream_session', interaction: 'upstream_interaction', resume: 'upstream_resume' },
    },
    ttl: {
      AccessToken: options.accessTokenTtlSeconds ?? 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 24 * 3600,
      RefreshToken: 24 * 3600,
    },
  });
}

/**
 * Drives the upstream sign-in in `session` like a browser would: requests `authorizeUrl`,
 * follows redirects to the login form, submits `login`, and follows redirects until one
 * leaves the IdP. Returns that redirect's URL (the relying party's redirect_uri with `code`
 * and `state`, or with `error`) without requesting it.
 *
 * If `session` is already signed in at the IdP and the client's grant covers the request,
 * the IdP answers without a form and the URL returned is for that earlier user; use a fresh
 * HttpSession per user.
 */
export async function signInAtUpstream(session: HttpSession, authorizeUrl: string | URL, login: string): Promise<string> {
  const idpOrigin = new URL(authorizeUrl).origin;
  const leavesIdp = (url: URL) => url.origin !== idpOrigin;

  const page = await session.follow(authorizeUrl, {}, { stopWhen: leavesIdp });
  if (leavesIdp(page.url)) return page.url.href;
  const html = await page.response.text();
  if (page.response.status !== 200 || !page.url.pathname.startsWith('/interaction/')) {
    throw new Error(`expected the upstream login form, got ${page.response.status} at ${page.url.href}: ${html.slice(0, 500)}`);
  }

  const submitted = await session.submitForm(page.url, html, {}, { login });
  const location = submitted.headers.get('location');
  if (location === null) {
    const body = await submitted.text();
    throw new Error(`upstream login of ${JSON.stringify(login)} refused (${submitted.status}): ${body.slice(0, 500)}`);
  }
  const back = new URL(location, page.url);
  if (leavesIdp(back)) return back.href;

  const done = await session.follow(back, {}, { stopWhen: leavesIdp });
  if (leavesIdp(done.url)) return done.url.href;
  const body = await done.response.text();
  throw new Error(`upstream IdP did not redirect back (${done.response.status} at ${done.url.href}): ${body.slice(0, 500)}`);
}

async function handleRequest(
  provider: Provider,
  handle: ProviderHandler,
  mountPaths: string[],
  users: Map<string, UpstreamUser>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const interaction = /^\/interaction\/([\w-]+)$/.exec(path);
  if (interaction?.[1]) {
    await handleInteraction(provider, users, interaction[1], req, res);
    return;
  }
  if (mountPaths[0] === '') {
    handle(req, res);
    return;
  }
  const mountPath = mountPaths.find((prefix) => path === prefix || path.startsWith(`${prefix}/`));
  if (mountPath !== undefined) {
    // Mounted under the issuer path (or an alias): oidc-provider derives the mount point from
    // originalUrl minus url, as it does under express or connect.
    const mounted = req as IncomingMessage & { originalUrl?: string };
    mounted.originalUrl = req.url;
    req.url = (req.url ?? '/').slice(mountPath.length) || '/';
    handle(req, res);
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
}

async function handleInteraction(
  provider: Provider,
  users: Map<string, UpstreamUser>,
  uid: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let details: InteractionDetails;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    sendHtml(res, 400, page('Sign-in expired', '<p>This sign-in request expired or was already used.</p>'));
    return;
  }
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Sign-in mismatch', '<p>This page does not belong to the current sign-in.</p>'));
    return;
  }

  if (req.method === 'GET') {
    sendHtml(res, 200, loginPage(uid, details.params.client_id));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'GET, POST' }).end();
    return;
  }

  const form = new URLSearchParams(await readBody(req, MAX_FORM_BYTES));
  const login = form.get('login') ?? '';
  const user = users.get(login);
  if (!user) {
    sendHtml(res, 400, loginPage(uid, details.params.client_id, `Unknown user ${JSON.stringify(login)}.`));
    return;
  }

  // Sign-in and consent in one step: a grant for everything the client asked for.
  const grant = new provider.Grant({ accountId: user.sub, clientId: details.params.client_id });
  if (details.params.scope) grant.addOIDCScope(details.params.scope);
  const requestedClaims = requestedClaimNames(details.params.claims);
  if (requestedClaims.length > 0) grant.addOIDCClaims(requestedClaims);
  const grantId = await grant.save();

  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: user.sub }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

/** Names in an OIDC `claims` request parameter (OIDC Core §5.5), for the grant. */
function requestedClaimNames(claimsParameter: string | undefined): string[] {
  if (!claimsParameter) return [];
  try {
    const parsed = JSON.parse(claimsParameter) as { id_token?: object; userinfo?: object };
    return [...new Set([...Object.keys(parsed.id_token ?? {}), ...Object.keys(parsed.userinfo ?? {})])];
  } catch {
    return [];
  }
}

/** Which claims each scope releases; the groups claim goes with `groupsScope`. */
function scopeClaims(options: UpstreamIdpOptions, groupsClaim: string): Record<string, string[]> {
  const claims: Record<string, string[]> = {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: [...new Set([...PROFILE_CLAIMS, ...extraClaimNames(options.users, groupsClaim)])],
    groups: [],
  };
  const groupsScope = options.groupsScope ?? 'groups';
  claims[groupsScope] = [...(claims[groupsScope] ?? []), groupsClaim];
  return claims;
}

/** The parts of a Koa context the response shaping reads and writes. */
interface ShapedContext {
  path: string;
  query: Record<string, unknown>;
  status: number;
  body: unknown;
  req: IncomingMessage & { originalUrl?: string };
  response: { get(name: string): string; set(name: string, value: string): void };
}

/**
 * oidc-provider middleware (around its routes) giving responses a real provider's shape: the
 * discovery issuer of an alias, no RFC 9207 `iss`, refused parameters.
 */
function shapeResponses(
  url: string,
  aliases: Array<{ path: string; discoveryIssuer: (url: string) => string }>,
  authorizationResponseIss: boolean,
  refusedParameters: string[],
) {
  return async (ctx: ShapedContext, next: () => Promise<void>): Promise<void> => {
    const refused = refusedParameters.find((name) => ctx.query[name] !== undefined);
    if (refused !== undefined) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: `The '${refused}' request parameter is not supported.` };
      return;
    }
    await next();
    if (ctx.path === '/.well-known/openid-configuration' && typeof ctx.body === 'object' && ctx.body !== null) {
      const body = { ...(ctx.body as Record<string, unknown>) };
      const originalUrl = ctx.req.originalUrl ?? '';
      const alias = aliases.find((candidate) => originalUrl.startsWith(`${candidate.path}/.well-known/`));
      if (alias) body.issuer = alias.discoveryIssuer(url);
      if (!authorizationResponseIss) delete body.authorization_response_iss_parameter_supported;
      ctx.body = body;
    }
    const location = ctx.response.get('location');
    if (!authorizationResponseIss && location && /[?&]iss=/.test(location)) {
      const target = new URL(location);
      target.searchParams.delete('iss');
      ctx.response.set('location', target.href);
    }
  };
}

function toClientMetadata(client: UpstreamClient): Record<string, unknown> {
  const method = client.token_endpoint_auth_method ?? (client.client_secret ? 'client_secret_basic' : 'none');
  return {
    client_id: client.client_id,
    ...(client.client_secret && method !== 'none' ? { client_secret: client.client_secret } : {}),
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: method,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  };
}

function extraClaimNames(users: Record<string, UpstreamUser>, groupsClaim: string): string[] {
  const names = new Set<string>();
  for (const user of Object.values(users)) {
    for (const key of Object.keys(user)) {
      if (!STANDARD_CLAIMS.has(key) && key !== groupsClaim) names.add(key);
    }
  }
  return [...names];
}

async function generateSigningKey(): Promise<Record<string, unknown>> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg: 'RS256', use: 'sig', kid: randomBytes(8).toString('hex') };
}

function normaliseIssuerPath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') return '';
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

function loginPage(uid: string, clientId: string, error?: string): string {
  const alert = error ? `<p id="error" role="alert">${escapeHtml(error)}</p>` : '';
  return page(
    'Sign in',
    `<p>Signing in to <code>${escapeHtml(clientId)}</code></p>
${alert}
<form method="post" action="/interaction/${escapeHtml(uid)}">
  <label for="login">Login</label>
  <input id="login" name="login" type="text" autocomplete="username" autofocus required>
  <button id="submit" type="submit">Sign in</button>
</form>`,
  );
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · upstream IdP</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>`;
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function listen(server: Server, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
