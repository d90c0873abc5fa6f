/**
 * A hand-driven OAuth 2.1 authorization code flow against a test gateway whose identity
 * provider is the embedded dev provider (`{ id: 'dev', type: 'dev' }`): dynamic client
 * registration, an /authorize URL built from the test's own PKCE values (so tests can leave
 * parameters out or get them wrong), the dev sign-in form and the consent page submitted with
 * HttpSession, and token requests by plain fetch.
 *
 * The gateway's public URL (its issuer) may differ from where it listens (a test that needs
 * `http://localhost` with the default port, for example): every request is sent to
 * `listenUrl`, while URLs are built and compared in the issuer's terms.
 */
import { createHash, randomBytes } from 'node:crypto';
import { HttpSession } from './http-session.ts';

export interface FlowGateway {
  /** The issuer: the public URL with a trailing slash. */
  issuer: string;
  /** Where the gateway actually listens, e.g. http://127.0.0.1:PORT. */
  listenUrl: string;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** The issuer origin as written in URLs (`http://127.0.0.1:PORT`, no trailing slash). */
export function publicOrigin(gateway: FlowGateway): string {
  return new URL(gateway.issuer).origin;
}

/** The URL a request for `url` is actually sent to. */
export function networkUrl(gateway: FlowGateway, url: string | URL): URL {
  const target = new URL(url);
  if (target.origin !== publicOrigin(gateway)) return target;
  return new URL(`${target.pathname}${target.search}`, gateway.listenUrl);
}

/** A fresh PKCE pair (RFC 7636 §4.1–4.2): a 43-character verifier and its S256 challenge. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface RegisteredClient {
  client_id: string;
  client_secret?: string;
  redirect_uris: string[];
  [key: string]: unknown;
}

/** Registers a client by DCR (RFC 7591) at /register; a public client unless `metadata` says otherwise. */
export async function registerClient(
  gateway: FlowGateway,
  redirectUris: string[],
  metadata: Record<string, unknown> = {},
): Promise<RegisteredClient> {
  const response = await fetch(networkUrl(gateway, `${publicOrigin(gateway)}/register`), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'oauth-flow test client',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...metadata,
    }),
  });
  const body = await response.json() as RegisteredClient;
  if (response.status !== 201) throw new Error(`registration answered ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

/**
 * An /authorize URL. Defaults: response_type=code, a random state, S256. A parameter given as
 * `undefined` is left out (to test what the gateway does without it).
 */
export function authorizeUrl(gateway: FlowGateway, params: Record<string, string | undefined>): URL {
  const url = new URL('/authorize', publicOrigin(gateway));
  const all: Record<string, string | undefined> = {
    response_type: 'code',
    state: randomBytes(12).toString('base64url'),
    code_challenge_method: 'S256',
    ...params,
  };
  for (const [name, value] of Object.entries(all)) {
    if (value !== undefined) url.searchParams.set(name, value);
  }
  return url;
}

export interface DevUser {
  email: string;
  name?: string;
  groups?: string;
}

export type FlowResult =
  | {
    kind: 'redirect';
    /** Status of the gateway response that sent the browser to the client (302/303 expected). */
    status: number;
    /** The redirect target, with code or error in its query. */
    url: URL;
    /** The raw Location header of that response. */
    location: string;
  }
  | { kind: 'page'; status: number; url: URL; html: string; headers: Headers };

export interface DriveOptions {
  user?: DevUser;
  decision?: 'approve' | 'deny';
  /** Reuse a browser (cookies, so a remembered session and consent). */
  session?: HttpSession;
}

/**
 * Walks `authorization` like a browser: follows the gateway's redirects, fills in the dev
 * sign-in form and the consent page, and stops at the first redirect to the client's
 * redirect URI (same origin and path as the request's `redirect_uri`, any loopback port) or at a
 * page that is neither form (an error page).
 */
export async function driveAuthorization(gateway: FlowGateway, authorization: URL, options: DriveOptions = {}): Promise<FlowResult> {
  const session = options.session ?? new HttpSession();
  const user = options.user ?? { email: 'alice@example.com', name: 'Alice', groups: '' };
  const redirectParam = authorization.searchParams.get('redirect_uri');
  const target = redirectParam ? URL.parse(redirectParam) : null;
  const isClientRedirect = (url: URL) => target !== null && url.protocol === target.protocol
    && url.hostname === target.hostname && url.pathname === target.pathname && url.origin !== publicOrigin(gateway);

  let url = authorization;
  let response = await session.fetch(networkUrl(gateway, url));
  for (let steps = 0; steps < 30; steps++) {
    const location = response.headers.get('location');
    if (REDIRECT_STATUSES.has(response.status) && location !== null) {
      await response.body?.cancel();
      const next = new URL(location, url);
      if (isClientRedirect(next)) return { kind: 'redirect', status: response.status, url: next, location };
      if (next.origin !== publicOrigin(gateway)) throw new Error(`redirected away to ${next.href}`);
      url = next;
      response = await session.fetch(networkUrl(gateway, url));
      continue;
    }
    const html = await response.text();
    const page = networkUrl(gateway, url);
    if (response.status === 200 && url.pathname.startsWith('/signin/dev/')) {
      response = await session.submitForm(page, html, {}, { email: user.email, name: user.name ?? '', groups: user.groups ?? '' });
    } else if (response.status === 200 && html.includes('name="decision"')) {
      response = await session.submitForm(page, html, {}, { decision: options.decision ?? 'approve' });
    } else {
      return { kind: 'page', status: response.status, url, html, headers: response.headers };
    }
  }
  throw new Error(`too many steps in the authorization flow, last at ${url.href}`);
}

export interface TokenResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** POSTs a form to /token (client authentication by the caller: `client_id` or `basic`). */
export async function tokenRequest(
  gateway: FlowGateway,
  params: Record<string, string | undefined>,
  basic?: { id: string; secret: string },
): Promise<TokenResponse> {
  return postForm(gateway, '/token', params, basic);
}

/** POSTs a form to an endpoint of the gateway at its origin root and parses the JSON answer. */
export async function postForm(
  gateway: FlowGateway,
  path: string,
  params: Record<string, string | undefined>,
  basic?: { id: string; secret: string },
): Promise<TokenResponse> {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) body.set(name, value);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (basic) {
    // RFC 6749 §2.3.1: form-encode each part before base64.
    const pair = `${encodeURIComponent(basic.id)}:${encodeURIComponent(basic.secret)}`;
    headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
  }
  const response = await fetch(networkUrl(gateway, `${publicOrigin(gateway)}${path}`), { method: 'POST', headers, body });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) as Record<string, unknown> : {} };
}

export interface CodeFlowOptions extends DriveOptions {
  /** Registered (and used, unless `requestRedirectUri` is given) redirect URI. */
  redirectUri?: string;
  requestRedirectUri?: string;
  client?: RegisteredClient;
  /** Extra or overriding /authorize parameters (`undefined` leaves one out). */
  params?: Record<string, string | undefined>;
}

export interface CodeFlow {
  client: RegisteredClient;
  verifier: string;
  challenge: string;
  state: string;
  redirectUri: string;
  result: FlowResult;
  /** The `code` of a successful redirect, else undefined. */
  code: string | undefined;
}

/** Registers a public client (unless given), authorizes with fresh PKCE values and signs in. */
export async function runCodeFlow(gateway: FlowGateway, options: CodeFlowOptions = {}): Promise<CodeFlow> {
  const registered = options.redirectUri ?? 'http://127.0.0.1:53100/callback';
  const client = options.client ?? await registerClient(gateway, [registered]);
  const redirectUri = options.requestRedirectUri ?? registered;
  const { verifier, challenge } = pkcePair();
  const state = randomBytes(12).toString('base64url');
  const url = authorizeUrl(gateway, {
    client_id: client.client_id,
    redirect_uri: redirectUri,
    code_challenge: challenge,
    state,
    ...options.params,
  });
  const result = await driveAuthorization(gateway, url, options);
  const code = result.kind === 'redirect' ? result.url.searchParams.get('code') ?? undefined : undefined;
  return { client, verifier, challenge, state, redirectUri, result, code };
}

/** Redeems a code flow's code at /token as its public client. */
export function redeem(gateway: FlowGateway, flow: CodeFlow, overrides: Record<string, string | undefined> = {}): Promise<TokenResponse> {
  return tokenRequest(gateway, {
    grant_type: 'authorization_code',
    code: flow.code,
    redirect_uri: flow.redirectUri,
    code_verifier: flow.verifier,
    client_id: flow.client.client_id,
    ...overrides,
  });
}

/** A refresh-token grant as a public client. */
export function refresh(gateway: FlowGateway, clientId: string, refreshToken: string, extra: Record<string, string | undefined> = {}): Promise<TokenResponse> {
  return tokenRequest(gateway, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, ...extra });
}

/** An MCP `initialize` POST with a bearer token; resolves to the HTTP response. */
export function callMcp(gateway: FlowGateway, path: string, accessToken: string): Promise<Response> {
  return fetch(networkUrl(gateway, `${publicOrigin(gateway)}${path}`), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${accessToken}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'oauth-flow', version: '0' } },
    }),
  });
}

/** Polls `check` until it holds or `timeoutMs` passes; returns whether it held. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 1500, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
