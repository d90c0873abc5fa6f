/**
 * A local stand-in for GitHub's OAuth and REST endpoints, on 127.0.0.1, for tests of the
 * `github` identity provider. It behaves as GitHub does where the gateway depends on it:
 *
 *   GET  /login/oauth/authorize     a tiny sign-in form (or `login=<name>` in the query:
 *                                   auto-approved); PKCE S256 (`plain` refused), state echoed
 *   POST /login/oauth/access_token  code → token (client secret and PKCE verifier checked) and
 *                                   refresh_token → token (GitHub App style); every error is
 *                                   HTTP 200 with `error` in the body, as GitHub answers;
 *                                   form-encoded unless `Accept: application/json`
 *   GET  /user, /user/emails, /user/orgs, /user/teams
 *                                   the REST API, with `per_page`/`page` pagination and
 *                                   `Link` headers; 401 `Bad credentials` for unknown tokens
 *
 * The API is served at the root (github.com's api.github.com shape, with base_url = api_url =
 * the stand-in's origin) and under `/api/v3` (GitHub Enterprise Server's shape). Users and
 * memberships can be changed while it runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpSession } from './http-session.ts';

export interface GitHubEmail {
  email: string;
  primary: boolean;
  verified: boolean;
}

export interface GitHubUser {
  id: number;
  name?: string | null;
  avatar_url?: string;
  emails: GitHubEmail[];
  /** Org logins as GitHub spells them (any case). */
  orgs: string[];
  /** Teams as `org/team-slug`. */
  teams: string[];
}

export interface GitHubStandinOptions {
  /** By login. */
  users: Record<string, GitHubUser>;
  clients: Array<{ client_id: string; client_secret: string }>;
  /** `oauth-app` (default): tokens never expire, no refresh token. `github-app`: 8-hour tokens with refresh tokens. */
  tokenStyle?: 'oauth-app' | 'github-app';
  /** Largest page the API returns (GitHub: 100), to make tests paginate with few entries. */
  maxPerPage?: number;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
}

interface IssuedCode {
  clientId: string;
  redirectUri: string;
  scope: string[];
  challenge: string;
  login: string;
  expiresAt: number;
}

interface IssuedToken {
  login: string;
  scope: string[];
  clientId: string;
  /** Epoch ms; undefined = never (OAuth app tokens). */
  expiresAt: number | undefined;
}

export interface GitHubStandin {
  /** `http://127.0.0.1:PORT` (no trailing slash): base_url, and api_url for the github.com shape. */
  url: string;
  /** `http://127.0.0.1:PORT/api/v3`: api_url for the GitHub Enterprise Server shape. */
  enterpriseApiUrl: string;
  users: Map<string, GitHubUser>;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Query parameters of each authorization request. */
  authorizeRequests: URLSearchParams[];
  /** Changes a user's memberships (what GitHub answers from now on). */
  setMembership(login: string, membership: { orgs?: string[]; teams?: string[] }): void;
  /** Forgets every token issued to `login` (the user revoked the app's authorization). */
  revokeTokens(login: string): void;
  /** Makes every access token issued so far to `login` expire now (GitHub App tokens after 8 h). */
  expireAccessTokens(login: string): void;
  close(): Promise<void>;
}

const CODE_TTL_MS = 10 * 60 * 1000;
const APP_TOKEN_TTL_SECONDS = 8 * 3600;

export async function startGitHubStandin(options: GitHubStandinOptions): Promise<GitHubStandin> {
  const users = new Map(Object.entries(options.users));
  const clients = new Map(options.clients.map((entry) => [entry.client_id, entry.client_secret]));
  const codes = new Map<string, IssuedCode>();
  const tokens = new Map<string, IssuedToken>();
  const refreshTokens = new Map<string, { login: string; scope: string[]; clientId: string }>();
  const requests: RecordedRequest[] = [];
  const authorizeRequests: URLSearchParams[] = [];
  const style = options.tokenStyle ?? 'oauth-app';
  const maxPerPage = options.maxPerPage ?? 100;

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
    });
  });

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    requests.push({ method: request.method ?? 'GET', path: url.pathname, query: url.searchParams });
    if (url.pathname === '/login/oauth/authorize' && request.method === 'GET') return authorize(url, response);
    if (url.pathname === '/login/oauth/access_token' && request.method === 'POST') return token(request, response);
    const apiPath = url.pathname.startsWith('/api/v3/') ? url.pathname.slice('/api/v3'.length) : url.pathname;
    if (request.method === 'GET' && apiPath.startsWith('/user')) return api(request, url, apiPath, response);
    return sendJson(response, 404, { message: 'Not Found' });
  };

  const authorize = (url: URL, response: ServerResponse) => {
    const params = url.searchParams;
    authorizeRequests.push(new URLSearchParams(params));
    const clientId = params.get('client_id') ?? '';
    const redirectUri = params.get('redirect_uri') ?? '';
    if (!clients.has(clientId)) return sendHtml(response, 404, '<p>The OAuth app was not found.</p>');
    if (!/^https?:\/\//.test(redirectUri)) return sendHtml(response, 400, '<p>The redirect_uri is not valid.</p>');
    const back = new URL(redirectUri);
    const state = params.get('state');
    if (state !== null) back.searchParams.set('state', state);
    const challenge = params.get('code_challenge') ?? '';
    if (params.get('code_challenge_method') !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      back.searchParams.set('error', 'invalid_request');
      back.searchParams.set('error_description', 'code_challenge_method must be S256');
      return redirect(response, back);
    }
    const login = params.get('login');
    if (login === null) return sendHtml(response, 200, signInForm(params));
    if (params.get('decision') === 'deny') {
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'The user has denied your application access.');
      back.searchParams.set('error_uri', 'https://docs.github.com/apps/troubleshooting-authorization-request-errors/#access-denied');
      return redirect(response, back);
    }
    if (!users.has(login)) return sendHtml(response, 200, signInForm(params, `No user ${login}.`));
    const code = randomBytes(10).toString('hex');
    codes.set(code, {
      clientId, redirectUri, challenge, login,
      scope: (params.get('scope') ?? '').split(/[\s,]+/).filter(Boolean),
      expiresAt: Date.now() + CODE_TTL_MS,
    });
    back.searchParams.set('code', code);
    return redirect(response, back);
  };

  const token = async (request: IncomingMessage, response: ServerResponse) => {
    const form = new URLSearchParams(await readBody(request));
    const json = String(request.headers.accept ?? '').includes('application/json');
    // GitHub: HTTP 200 whatever went wrong, the error in the body.
    const fail = (error: string, description: string) => sendToken(response, json, { error, error_description: description, error_uri: `https://docs.github.com/apps/troubleshooting#${error}` });
    let clientId = form.get('client_id') ?? '';
    let secret = form.get('client_secret') ?? '';
    const basic = /^Basic (.+)$/i.exec(String(request.headers.authorization ?? ''))?.[1];
    if (basic) {
      const [id = '', pass = ''] = Buffer.from(basic, 'base64').toString().split(':').map(decodeURIComponent);
      clientId = id;
      secret = pass;
    }
    if (clients.get(clientId) !== secret || secret === '') return fail('incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
    if (form.get('grant_type') === 'refresh_token') {
      const presented = form.get('refresh_token') ?? '';
      const entry = refreshTokens.get(presented);
      if (style !== 'github-app' || !entry || entry.clientId !== clientId) return fail('bad_refresh_token', 'The refresh token passed is incorrect or expired.');
      refreshTokens.delete(presented);
      return sendToken(response, json, issue(entry.login, entry.scope, clientId));
    }
    const code = codes.get(form.get('code') ?? '');
    if (!code || code.expiresAt < Date.now() || code.clientId !== clientId) return fail('bad_verification_code', 'The code passed is incorrect or expired.');
    codes.delete(form.get('code') ?? '');
    if (form.has('redirect_uri') && form.get('redirect_uri') !== code.redirectUri) return fail('redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
    const verifier = form.get('code_verifier') ?? '';
    if (createHash('sha256').update(verifier).digest('base64url') !== code.challenge) return fail('bad_verification_code', 'The code_verifier does not match the code_challenge.');
    return sendToken(response, json, issue(code.login, code.scope, clientId));
  };

  const issue = (login: string, scope: string[], clientId: string): Record<string, unknown> => {
    const accessToken = `${style === 'github-app' ? 'ghu' : 'gho'}_${randomBytes(18).toString('base64url')}`;
    tokens.set(accessToken, { login, scope, clientId, expiresAt: style === 'github-app' ? Date.now() + APP_TOKEN_TTL_SECONDS * 1000 : undefined });
    if (style === 'oauth-app') return { access_token: accessToken, token_type: 'bearer', scope: scope.join(',') };
    const refreshToken = `ghr_${randomBytes(30).toString('base64url')}`;
    refreshTokens.set(refreshToken, { login, scope, clientId });
    return { access_token: accessToken, expires_in: APP_TOKEN_TTL_SECONDS, refresh_token: refreshToken, refresh_token_expires_in: 15_897_600, scope: '', token_type: 'bearer' };
  };

  const api = (request: IncomingMessage, url: URL, path: string, response: ServerResponse) => {
    const presented = /^(?:token|bearer) (.+)$/i.exec(String(request.headers.authorization ?? ''))?.[1] ?? '';
    const grant = tokens.get(presented);
    if (!grant || (grant.expiresAt !== undefined && grant.expiresAt <= Date.now())) {
      return sendJson(response, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' });
    }
    const user = users.get(grant.login);
    if (!user) return sendJson(response, 401, { message: 'Bad credentials' });
    // GitHub App tokens carry no scopes (the app's permissions apply); OAuth app tokens need them.
    const has = (scope: string) => style === 'github-app' || grant.scope.includes(scope);
    switch (path) {
      case '/user':
        return sendJson(response, 200, {
          login: grant.login, id: user.id, node_id: `U_${user.id}`, type: 'User', name: user.name ?? null,
          avatar_url: user.avatar_url ?? `https://avatars.example.test/u/${user.id}`,
          email: user.emails.find((entry) => entry.primary && entry.verified)?.email ?? null,
        });
      case '/user/emails':
        if (!has('user:email') && !has('user')) return sendJson(response, 404, { message: 'Not Found' });
        return sendPage(response, url, user.emails.map((entry) => ({ ...entry, visibility: entry.primary ? 'private' : null })));
      case '/user/orgs':
        // Without read:org only public memberships show; the stand-in treats all as private.
        return sendPage(response, url, has('read:org') ? user.orgs.map((login, index) => ({ login, id: 1000 + index, url: `https://api.example.test/orgs/${login}` })) : []);
      case '/user/teams':
        if (!has('read:org')) return sendJson(response, 403, { message: 'Resource not accessible by integration' });
        return sendPage(response, url, user.teams.map((name, index) => {
          const [org = '', slug = ''] = name.split('/');
          return { id: 2000 + index, slug, name: slug.replace(/-/g, ' '), organization: { login: org } };
        }));
      default:
        return sendJson(response, 404, { message: 'Not Found' });
    }
  };

  /** One page of a list, with GitHub's `Link` header (RFC 8288) for the others. */
  const sendPage = (response: ServerResponse, url: URL, items: unknown[]) => {
    const perPage = Math.min(maxPerPage, Math.max(1, Number(url.searchParams.get('per_page') ?? 30)));
    const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (n: number) => {
      const target = new URL(`${url.pathname}?${url.searchParams}`, base);
      target.searchParams.set('page', String(n));
      target.searchParams.set('per_page', String(perPage));
      return target.href;
    };
    const links: string[] = [];
    if (page < last) links.push(`<${link(page + 1)}>; rel="next"`, `<${link(last)}>; rel="last"`);
    if (page > 1) links.push(`<${link(1)}>; rel="first"`, `<${link(page - 1)}>; rel="prev"`);
    if (links.length > 0) response.setHeader('link', links.join(', '));
    return sendJson(response, 200, items.slice((page - 1) * perPage, page * perPage));
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    enterpriseApiUrl: `${base}/api/v3`,
    users,
    requests,
    authorizeRequests,
    setMembership(login, membership) {
      const user = users.get(login);
      if (!user) throw new Error(`no user ${login}`);
      if (membership.orgs) user.orgs = membership.orgs;
      if (membership.teams) user.teams = membership.teams;
    },
    revokeTokens(login) {
      for (const [value, grant] of tokens) if (grant.login === login) tokens.delete(value);
      for (const [value, grant] of refreshTokens) if (grant.login === login) refreshTokens.delete(value);
    },
    expireAccessTokens(login) {
      for (const grant of tokens.values()) if (grant.login === login) grant.expiresAt = Date.now() - 1;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/**
 * Signs `login` in at the stand-in the way a person would: opens the authorize URL the gateway
 * redirected to, submits the form with the login, and returns the redirect back (not followed).
 */
export async function signInAtGitHub(session: HttpSession, authorizeUrl: string | URL, login: string, decision: 'approve' | 'deny' = 'approve'): Promise<URL> {
  const page = await session.fetch(authorizeUrl);
  const html = await page.text();
  if (page.status !== 200 || !html.includes('name="login"')) throw new Error(`expected the stand-in's sign-in form, got ${page.status}: ${html.slice(0, 300)}`);
  const submitted = await session.submitForm(authorizeUrl, html, {}, { login, decision });
  const location = submitted.headers.get('location');
  if (submitted.status !== 302 || location === null) throw new Error(`sign-in of ${login} at the stand-in answered ${submitted.status}: ${(await submitted.text()).slice(0, 300)}`);
  return new URL(location);
}

function signInForm(params: URLSearchParams, error?: string): string {
  const hidden = [...params].filter(([name]) => name !== 'login' && name !== 'decision')
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`).join('');
  return `<!doctype html><title>Sign in to GitHub</title>${error ? `<p>${escape(error)}</p>` : ''}
<form method="get" action="/login/oauth/authorize">${hidden}<input name="login"><button name="decision" value="approve">Authorize</button></form>`;
}

function escape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function redirect(response: ServerResponse, location: URL): void {
  response.writeHead(302, { location: location.href }).end();
}

function sendHtml(response: ServerResponse, status: number, html: string): void {
  response.writeHead(status, { 'content-type': 'text/html; charset=utf-8' }).end(html);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}

function sendToken(response: ServerResponse, json: boolean, body: Record<string, unknown>): void {
  if (json) return sendJson(response, 200, body);
  const form = new URLSearchParams(Object.entries(body).map(([key, value]): [string, string] => [key, String(value)]));
  response.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }).end(form.toString());
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}
