/**
 * Upstream tokens end to end: a real local OpenID provider issuing short-lived access tokens
 * (6 s) with refresh tokens, a gateway in front of a tiny echo MCP server that records the
 * headers it receives, and OAuth flows driven like a browser.
 *
 * The tests run in order and share one browser session and one client, as one person would:
 * sign-in and injection, refresh, extra scopes, revocation.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServiceCatalog, createUpstreamTokens, UPSTREAM_TOKEN_KIND, type StoredUpstreamTokens } from '../../src/authz/index.ts';
import { createSealer } from '../../src/store/index.ts';
import { HttpSession } from '../support/http-session.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { signInAtUpstream, startUpstreamIdp, type UpstreamIdp } from '../support/upstream-idp.ts';
import { submitConsent } from '../support/mcp-oauth-client.ts';
import { authorizeUrl, callMcp, pkcePair, refresh, registerClient, tokenRequest, type RegisteredClient, type TokenResponse } from '../support/oauth-flow.ts';

const ACCESS_TTL_SECONDS = 6;
const REDIRECT = 'http://127.0.0.1:53190/callback';
const HEADER = 'x-upstream-token';
const ACCOUNT = 'corp:alice-1';

interface Recorded { path: string; headers: IncomingHttpHeaders }

let idp: UpstreamIdp;
let gateway: TestGateway;
let echo: Server;
let echoUrl: string;
const received: Recorded[] = [];

/** An MCP server stand-in: records each request's headers and answers a JSON-RPC result. */
function startEcho(): Promise<string> {
  echo = createServer((req, res) => {
    received.push({ path: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      // A careless server repeating the token in a response header: the gateway must not pass it on.
      const repeated = req.headers[HEADER];
      res.writeHead(200, { 'content-type': 'application/json', ...(typeof repeated === 'string' ? { 'x-echo-token': repeated } : {}) });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2025-06-18', capabilities: {}, serverInfo: { name: 'echo', version: '0' } } }));
    });
  });
  return new Promise((resolve) => echo.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(echo.address() as AddressInfo).port}`)));
}

beforeAll(async () => {
  const port = await freePort();
  idp = await startUpstreamIdp({
    users: { alice: { sub: 'alice-1', email: 'alice@example.com', email_verified: true, name: 'Alice' } },
    clients: [{ client_id: 'gatehouse', client_secret: 'upstream-secret', redirect_uris: [`http://127.0.0.1:${port}/callback/corp`] }],
    accessTokenTtlSeconds: ACCESS_TTL_SECONDS,
    scopes: ['drive.readonly'],
  });
  echoUrl = await startEcho();
  gateway = await startTestGateway({
    identity_providers: [{ id: 'corp', type: 'oidc', issuer: idp.issuer, client_id: 'gatehouse', client_secret: 'upstream-secret', scopes: ['openid', 'email', 'profile'] }],
    access: { allow: { domains: ['example.com'] } },
    services: {
      mail: { upstream: `${echoUrl}/mail`, forward: { upstream_token: 'X-Upstream-Token' } },
      drive: { upstream: `${echoUrl}/drive`, forward: { upstream_token: 'X-Upstream-Token' }, upstream_scopes: ['drive.readonly'] },
      plain: { upstream: `${echoUrl}/plain` },
    },
  }, { port });
  for (let i = 0; i < 50 && (await fetch(`${gateway.origin}/ready`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
});

afterAll(async () => {
  await gateway?.close();
  await idp?.close();
  if (echo) await new Promise<void>((resolve) => { echo.close(() => resolve()); echo.closeAllConnections(); });
});

/** Reads the account's upstream tokens as the gateway stored them, with the gateway's key. */
async function stored(): Promise<StoredUpstreamTokens | undefined> {
  const keeper = createUpstreamTokens({
    store: gateway.store,
    sealer: createSealer(gateway.config.secrets.encryption_key),
    services: createServiceCatalog(gateway.issuer, gateway.config.services),
    identityProviders: new Map(),
  });
  return keeper.load(ACCOUNT);
}

/** Waits until the stored token is due for refresh: half its 6 s lifetime before expiry. */
async function untilRefreshDue(): Promise<void> {
  const tokens = (await stored())?.tokens;
  if (tokens?.expiresAt === undefined) throw new Error('no stored token with an expiry');
  const dueAt = (tokens.expiresAt - ACCESS_TTL_SECONDS / 2) * 1000 + 300;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, dueAt - Date.now())));
}

const session = new HttpSession();
let client: RegisteredClient;
const issued: Partial<Record<string, TokenResponse>> = {};

/**
 * Authorizes `client` for a service like a browser in `session`: signs in upstream when the
 * gateway sends the browser there, approves consent when asked, and redeems the code.
 */
async function authorize(service: string): Promise<{ token: TokenResponse; upstreamSignIns: number; upstreamRequests: URLSearchParams[] }> {
  const { verifier, challenge } = pkcePair();
  const url = authorizeUrl(gateway, { client_id: client.client_id, redirect_uri: REDIRECT, code_challenge: challenge, resource: `${gateway.origin}/${service}/mcp` });
  const before = idp.authorizationRequests.length;
  const isClientRedirect = (next: URL) => next.href.startsWith(REDIRECT);
  let upstreamSignIns = 0;
  let page = await session.follow(url, {}, { stopWhen: (next) => next.origin === idp.url || isClientRedirect(next) });
  let back: URL | undefined;
  for (let step = 0; step < 4 && !back; step++) {
    if (isClientRedirect(page.url)) {
      back = page.url;
    } else if (page.url.origin === idp.url) {
      upstreamSignIns++;
      page = await session.follow(await signInAtUpstream(session, page.url, 'alice'), {}, { stopWhen: isClientRedirect });
    } else {
      back = await submitConsent(session, page.url, await page.response.text(), isClientRedirect, 'approve');
    }
  }
  const code = back?.searchParams.get('code');
  if (!code) throw new Error(`no code: ${back?.href ?? page.url.href}`);
  const token = await tokenRequest(gateway, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier, client_id: client.client_id });
  expect(token.status).toBe(200);
  issued[service] = token;
  return { token, upstreamSignIns, upstreamRequests: idp.authorizationRequests.slice(before) };
}

/** Calls a service's MCP endpoint; returns the response, its body and the headers the server got. */
async function call(service: string, accessToken: string) {
  const count = received.length;
  const response = await callMcp(gateway, `/${service}/mcp`, accessToken);
  const body = await response.text();
  return { response, body, upstream: received.slice(count).at(-1)?.headers };
}

function accessTokenOf(service: string): string {
  return issued[service]?.body.access_token as string;
}

async function userinfo(accessToken: string): Promise<{ status: number; sub?: string }> {
  const discovery = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json() as { userinfo_endpoint: string };
  const response = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  return { status: response.status, ...(response.status === 200 ? { sub: ((await response.json()) as { sub: string }).sub } : {}) };
}

/** Everything the MCP client saw in one response, for "never contains". */
function visible(response: Response, body: string): string {
  return `${[...response.headers].map(([name, value]) => `${name}: ${value}`).join('\n')}\n${body}`;
}

const seen: string[] = [];

describe('upstream tokens', () => {
  it('injects the upstream access token into a service that asks, never into the client\'s view', async () => {
    client = await registerClient(gateway, [REDIRECT]);
    const { token, upstreamSignIns } = await authorize('mail');
    expect(upstreamSignIns).toBe(1);

    const { response, body, upstream } = await call('mail', accessTokenOf('mail'));
    expect(response.status).toBe(200);
    const injected = upstream?.[HEADER];
    expect(typeof injected).toBe('string');
    const first = injected as string;
    seen.push(first);

    // It is the provider's own token for this user: its userinfo endpoint accepts it.
    expect(await userinfo(first)).toEqual({ status: 200, sub: 'alice-1' });
    const record = await stored();
    expect(record?.tokens.accessToken).toBe(first);
    expect(record?.tokens.refreshToken).toEqual(expect.any(String));
    expect(record?.providerId).toBe('corp');

    // Not in the token response, not in the gateway's JWT, not in the MCP response (the
    // server's echo header is dropped), not in the stored record in plain text.
    expect(JSON.stringify(token.body)).not.toContain(first);
    expect(JSON.stringify(decodeJwt(accessTokenOf('mail')))).not.toContain(first);
    expect(response.headers.get('x-echo-token')).toBeNull();
    expect(visible(response, body)).not.toContain(first);
    const raw = JSON.stringify((await gateway.store.get(UPSTREAM_TOKEN_KIND, ACCOUNT))?.value);
    expect(raw).toMatch(/"sealed":"v1\./);
    expect(raw).not.toContain(first);
    expect(raw).not.toContain(record?.tokens.refreshToken);
    // The client's own bearer token is not what the server receives.
    expect(upstream?.authorization).toBeUndefined();
  });

  it('sends nothing to a service that did not ask', async () => {
    await authorize('plain');
    const { response, upstream } = await call('plain', accessTokenOf('plain'));
    expect(response.status).toBe(200);
    expect(upstream).toBeDefined();
    expect(upstream?.[HEADER]).toBeUndefined();
    const values = Object.values(upstream ?? {}).flat().join('\n');
    for (const token of seen) expect(values).not.toContain(token);
  });

  it('refreshes an expiring token once through the provider and injects the new one', async () => {
    await untilRefreshDue();
    const grantsBefore = idp.tokenGrants.filter((grant) => grant === 'refresh_token').length;
    // Concurrent requests share one refresh.
    const calls = await Promise.all([1, 2, 3, 4].map(() => call('mail', accessTokenOf('mail'))));
    const injected = new Set(calls.map(({ upstream }) => upstream?.[HEADER]));
    expect(calls.map(({ response }) => response.status)).toEqual([200, 200, 200, 200]);
    expect(injected.size).toBe(1);
    const second = [...injected][0] as string;
    expect(second).not.toBe(seen[0]);
    expect(idp.tokenGrants.filter((grant) => grant === 'refresh_token').length).toBe(grantsBefore + 1);
    expect(await userinfo(second)).toEqual({ status: 200, sub: 'alice-1' });
    expect((await stored())?.tokens.accessToken).toBe(second);
    for (const { response, body } of calls) expect(visible(response, body)).not.toContain(second);
    seen.push(second);
  });

  it('sends a signed-in user through the upstream sign-in again for a service with extra scopes', async () => {
    expect((await stored())?.tokens.scope?.split(' ')).not.toContain('drive.readonly');
    const first = await authorize('drive');
    // The gateway session alone was not enough: the provider was asked again, with the scope.
    expect(first.upstreamSignIns).toBe(1);
    expect(first.upstreamRequests).toHaveLength(1);
    const scopes = first.upstreamRequests[0]?.get('scope')?.split(' ');
    expect(scopes).toEqual(expect.arrayContaining(['openid', 'email', 'profile', 'drive.readonly', 'offline_access']));
    const record = await stored();
    expect(record?.tokens.scope?.split(' ')).toContain('drive.readonly');

    const { response, upstream } = await call('drive', accessTokenOf('drive'));
    expect(response.status).toBe(200);
    expect(upstream?.[HEADER]).toBe(record?.tokens.accessToken);
    seen.push(record?.tokens.accessToken as string);

    // Now the stored token has the scope: neither service sends the user upstream again.
    expect((await authorize('drive')).upstreamSignIns).toBe(0);
    expect((await authorize('mail')).upstreamSignIns).toBe(0);
  });

  it('answers 401 invalid_token when the provider refuses the refresh, and the client then authorizes again', async () => {
    const record = await stored();
    const revoked = await fetch(`${idp.issuer}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('gatehouse:upstream-secret').toString('base64')}` },
      body: new URLSearchParams({ token: record?.tokens.refreshToken ?? '', token_type_hint: 'refresh_token' }),
    });
    expect(revoked.status).toBe(200);
    await untilRefreshDue();

    const grantsBefore = idp.tokenGrants.length;
    const errorsBefore = idp.tokenErrors.length;
    const { response, upstream } = await call('mail', accessTokenOf('mail'));
    expect(response.status).toBe(401);
    expect(upstream).toBeUndefined();
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token", error_description="[^"]+", scope="mcp", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mail\/mcp"$/);
    // The gateway tried to refresh, and the provider refused.
    expect(idp.tokenGrants.length).toBe(grantsBefore);
    expect(idp.tokenErrors.slice(errorsBefore)).toEqual([{ grantType: 'refresh_token', error: 'invalid_grant' }]);
    expect(await gateway.store.get(UPSTREAM_TOKEN_KIND, ACCOUNT)).toBeUndefined();
    expect(gateway.logs.some((line) => line.event === 'upstream_token.refresh_refused' && line.account === ACCOUNT)).toBe(true);

    // The client's refresh fails too (a new gateway token would meet the same 401), so it
    // authorizes again, which signs the user in upstream and stores a new token.
    const refreshed = await refresh(gateway, client.client_id, issued.mail?.body.refresh_token as string);
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');
    const again = await authorize('mail');
    expect(again.upstreamSignIns).toBe(1);
    const after = await call('mail', accessTokenOf('mail'));
    expect(after.response.status).toBe(200);
    expect(after.upstream?.[HEADER]).toBe((await stored())?.tokens.accessToken);
    expect(await userinfo(after.upstream?.[HEADER] as string)).toEqual({ status: 200, sub: 'alice-1' });
    seen.push(after.upstream?.[HEADER] as string);
  });

  it('never logs an upstream token or its sealed form', async () => {
    const text = gateway.logText();
    expect(seen.length).toBeGreaterThanOrEqual(4);
    for (const token of seen) expect(text).not.toContain(token);
    const raw = (await gateway.store.get(UPSTREAM_TOKEN_KIND, ACCOUNT))?.value.sealed as string;
    expect(text).not.toContain(raw);
    expect(text).not.toContain((await stored())?.tokens.refreshToken);
  });
});
