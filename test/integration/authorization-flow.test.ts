/**
 * The authorization code flow's protections, driven by hand against a real gateway with the
 * dev identity provider: every refusal has its own test, each asserting the exact error.
 *
 * References: OAuth 2.1 (draft-ietf-oauth-v2-1) §4.1, §7.5; RFC 7636 (PKCE); RFC 8707
 * (resource indicators); RFC 9068 (JWT access tokens); RFC 9207 (`iss` in authorization
 * responses); RFC 8252 §7.3 (loopback redirects); RFC 7009 (revocation); RFC 7662
 * (introspection); MCP authorization 2025-03-26 (fallback endpoints at the origin root).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { startDemoServer, type DemoServer } from '../../src/demo/index.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import {
  authorizeUrl, callMcp, driveAuthorization, eventually, pkcePair, postForm, redeem, refresh, registerClient, runCodeFlow,
  tokenRequest, type CodeFlow, type FlowGateway,
} from '../support/oauth-flow.ts';

const DEV_IDP = [{ id: 'dev', type: 'dev' }];
const ANYONE = { allow: { users: ['*'] } };

let demo: DemoServer;
/** One service `demo` offering tools.read and tools.call, default token lifetime. */
let gateway: TestGateway;
/** Two services (`a` at /a/mcp, `b` at /b/mcp), neither default, access tokens of 15 minutes. */
let twoServices: TestGateway;
/** Public URL `http://localhost` (default port 80) while listening on a free port. */
let localhostGateway: TestGateway & FlowGateway;

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  gateway = await startTestGateway({
    identity_providers: DEV_IDP,
    access: ANYONE,
    services: { demo: { upstream: demo.url, scopes: ['tools.read', 'tools.call'] } },
  });
  twoServices = await startTestGateway({
    identity_providers: DEV_IDP,
    access: ANYONE,
    tokens: { access_ttl_seconds: 900 },
    services: {
      a: { upstream: demo.url, path: '/a/mcp', scopes: ['a.read'] },
      b: { upstream: demo.url, path: '/b/mcp', scopes: ['b.read'] },
    },
  });
  const port = await freePort();
  localhostGateway = await startTestGateway({
    public_url: 'http://localhost',
    identity_providers: DEV_IDP,
    access: ANYONE,
    services: { demo: { upstream: demo.url, scopes: ['tools.read'] } },
  }, { port });
});

afterAll(async () => {
  await gateway?.close();
  await twoServices?.close();
  await localhostGateway?.close();
  await demo?.close();
});

async function jwks(gw: FlowGateway): Promise<JSONWebKeySet> {
  const response = await fetch(new URL('/jwks', gw.listenUrl));
  expect(response.status).toBe(200);
  return await response.json() as JSONWebKeySet;
}

async function codeFor(gw: FlowGateway, options: Parameters<typeof runCodeFlow>[1] = {}): Promise<CodeFlow & { code: string }> {
  const flow = await runCodeFlow(gw, options);
  if (flow.result.kind !== 'redirect') throw new Error(`expected a redirect, got ${flow.result.status}: ${flow.result.html.slice(0, 300)}`);
  if (!flow.code) throw new Error(`expected a code, got ${flow.result.url.href}`);
  return flow as CodeFlow & { code: string };
}

function statusOf(flow: CodeFlow): number {
  return flow.result.status;
}

function redirectOf(flow: CodeFlow): URL {
  if (flow.result.kind !== 'redirect') throw new Error(`expected a redirect, got a ${flow.result.status} page: ${flow.result.html.slice(0, 300)}`);
  return flow.result.url;
}

describe('happy path', () => {
  it('redirects once with one code, the state and the issuer, and the code redeems for an audience-bound JWT', async () => {
    const flow = await codeFor(gateway);
    const back = redirectOf(flow);
    // A 307 would make the browser re-send the sign-in POST body to the client (RFC 9700 §4.12): 302 or 303 only.
    expect([302, 303]).toContain(statusOf(flow));
    expect(back.searchParams.getAll('code')).toHaveLength(1);
    expect(back.searchParams.get('state')).toBe(flow.state);
    expect(back.searchParams.getAll('iss')).toEqual([gateway.issuer]);
    expect(back.searchParams.has('error')).toBe(false);

    const before = Math.floor(Date.now() / 1000);
    const tokens = await redeem(gateway, flow);
    expect(tokens.status).toBe(200);
    expect(tokens.headers.get('cache-control')).toContain('no-store');
    expect(tokens.body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'tools.read tools.call' });
    expect(typeof tokens.body.refresh_token).toBe('string');

    const accessToken = String(tokens.body.access_token);
    expect(decodeProtectedHeader(accessToken).typ).toBe('at+jwt');
    const { payload } = await jwtVerify(accessToken, createLocalJWKSet(await jwks(gateway)), {
      issuer: gateway.issuer,
      audience: `${gateway.origin}/demo/mcp`,
      typ: 'at+jwt',
    });
    expect(gateway.issuer).toBe(`${gateway.origin}/`);
    expect(payload.aud).toBe(`${gateway.origin}/demo/mcp`);
    expect(payload.iss).toBe(`${gateway.origin}/`);
    expect(payload.sub).toBe('dev:alice@example.com');
    expect(payload.client_id).toBe(flow.client.client_id);
    expect(payload.scope).toBe('tools.read tools.call');
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(payload.exp).toBeGreaterThanOrEqual(before + 3600);

    // Accepted by the service it was issued for.
    expect((await callMcp(gateway, '/demo/mcp', accessToken)).status).toBe(200);
  });

  it('uses tokens.access_ttl_seconds for the access token lifetime', async () => {
    const flow = await codeFor(twoServices, { params: { resource: `${twoServices.origin}/a/mcp` } });
    const tokens = await redeem(twoServices, flow, { resource: `${twoServices.origin}/a/mcp` });
    expect(tokens.status).toBe(200);
    expect(tokens.body.expires_in).toBe(900);
    const claims = decodeJwt(String(tokens.body.access_token));
    expect(claims.exp! - claims.iat!).toBe(900);
  });
});

/** Asserts an error redirect to the client: the error, the state echoed, `iss` (RFC 9207), no code. */
function expectErrorRedirect(flow: CodeFlow, gw: FlowGateway, error: string): URL {
  const back = redirectOf(flow);
  expect([302, 303]).toContain(statusOf(flow));
  expect(back.searchParams.get('error')).toBe(error);
  expect(back.searchParams.get('iss')).toBe(gw.issuer);
  expect(back.searchParams.get('state')).toBe(flow.state);
  expect(back.searchParams.has('code')).toBe(false);
  return back;
}

describe('PKCE (RFC 7636, OAuth 2.1 §4.1.1: S256 required)', () => {
  it('refuses an authorization request without code_challenge', async () => {
    const flow = await runCodeFlow(gateway, { params: { code_challenge: undefined, code_challenge_method: undefined } });
    const back = expectErrorRedirect(flow, gateway, 'invalid_request');
    expect(back.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it('refuses code_challenge_method=plain', async () => {
    const flow = await runCodeFlow(gateway, { params: { code_challenge_method: 'plain' } });
    const back = expectErrorRedirect(flow, gateway, 'invalid_request');
    expect(back.searchParams.get('error_description')).toMatch(/code_challenge_method/);
  });

  it('refuses a code_challenge without code_challenge_method (which means plain, RFC 7636 §4.3)', async () => {
    const flow = await runCodeFlow(gateway, { params: { code_challenge_method: undefined } });
    const back = expectErrorRedirect(flow, gateway, 'invalid_request');
    expect(back.searchParams.get('error_description')).toMatch(/code_challenge_method/);
  });

  it('refuses a wrong code_verifier and a missing one with invalid_grant', async () => {
    const flow = await codeFor(gateway);
    const wrong = await redeem(gateway, flow, { code_verifier: pkcePair().verifier });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    expect(wrong.body.access_token).toBeUndefined();
    const missing = await redeem(gateway, flow, { code_verifier: undefined });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe('invalid_grant');
    expect(missing.body.access_token).toBeUndefined();
  });
});

describe('authorization codes are single-use (RFC 6749 §4.1.2)', () => {
  it('refuses a second redemption and revokes what the first one issued', async () => {
    const flow = await codeFor(gateway);
    const first = await redeem(gateway, flow);
    expect(first.status).toBe(200);
    const accessToken = String(first.body.access_token);
    expect((await callMcp(gateway, '/demo/mcp', accessToken)).status).toBe(200);

    const second = await redeem(gateway, flow);
    expect(second.status).toBe(400);
    expect(second.body.error).toBe('invalid_grant');

    const refreshed = await refresh(gateway, flow.client.client_id, String(first.body.refresh_token));
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');
    // The bearer check caches a grant's existence for at most one second.
    expect(await eventually(async () => (await callMcp(gateway, '/demo/mcp', accessToken)).status === 401, 1500)).toBe(true);
  });

  it('gives exactly one token response to 20 simultaneous redemptions of one code', async () => {
    const flow = await codeFor(gateway);
    const answers = await Promise.all(Array.from({ length: 20 }, () => redeem(gateway, flow)));
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(1);
    expect(statuses.filter((status) => status === 400)).toHaveLength(19);
    expect(answers.filter((answer) => answer.status === 400).every((answer) => answer.body.error === 'invalid_grant')).toBe(true);

    // The other 19 were reuses of a code already redeemed: what it issued is revoked, whichever
    // request won the race (RFC 6749 §4.1.2).
    const winner = answers.find((answer) => answer.status === 200)!;
    const refreshed = await refresh(gateway, flow.client.client_id, String(winner.body.refresh_token));
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');
    expect(await eventually(async () => (await callMcp(gateway, '/demo/mcp', String(winner.body.access_token))).status === 401, 1500)).toBe(true);
  });
});

describe('redirect URIs match exactly, loopback on any port (RFC 8252 §7.3)', () => {
  const registered = 'http://127.0.0.1/callback';

  async function attempt(requested: string, registeredUris: string[] = [registered]) {
    const client = await registerClient(gateway, registeredUris);
    return runCodeFlow(gateway, { client, requestRedirectUri: requested });
  }

  function expectRefusedPage(flow: CodeFlow) {
    expect(flow.result.kind).toBe('page');
    if (flow.result.kind !== 'page') return;
    expect(flow.result.status).toBe(400);
    expect(flow.result.headers.get('content-type')).toMatch(/^text\/html/);
    expect(flow.result.headers.get('location')).toBeNull();
    expect(flow.result.html).toContain('did not register');
  }

  it('shows an error page, and never redirects, for an unregistered redirect_uri', async () => {
    const flow = await attempt('https://attacker.example/callback');
    expectRefusedPage(flow);
    if (flow.result.kind === 'page') expect(flow.result.html).not.toContain('attacker.example');
  });

  it('accepts a registered portless loopback URI on port 49152', async () => {
    const flow = await attempt('http://127.0.0.1:49152/callback');
    const back = redirectOf(flow);
    expect(back.origin).toBe('http://127.0.0.1:49152');
    expect(back.pathname).toBe('/callback');
    expect(flow.code).toBeTruthy();
    // The token request repeats the redirect_uri of the authorization request.
    expect((await redeem(gateway, flow)).status).toBe(200);
  });

  it('never matches localhost against 127.0.0.1, either way', async () => {
    expectRefusedPage(await attempt('http://localhost:49152/callback'));
    expectRefusedPage(await attempt('http://127.0.0.1:49152/callback', ['http://localhost/callback']));
  });

  it('refuses a changed path', async () => {
    expectRefusedPage(await attempt('http://127.0.0.1:49152/callback/other'));
    expectRefusedPage(await attempt('http://127.0.0.1:49152/'));
  });
});

describe('resource indicators (RFC 8707)', () => {
  it('refuses an unknown resource with invalid_target', async () => {
    const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/other/mcp` } });
    expectErrorRedirect(flow, gateway, 'invalid_target');
  });

  it('refuses a token request for a resource other than the one authorized', async () => {
    const flow = await codeFor(twoServices, { params: { resource: `${twoServices.origin}/a/mcp` } });
    const tokens = await redeem(twoServices, flow, { resource: `${twoServices.origin}/b/mcp` });
    expect(tokens.status).toBe(400);
    expect(tokens.body.error).toBe('invalid_target');
  });

  it('accepts a non-canonical resource (case, default port, trailing slash) and issues the canonical audience', async () => {
    const resource = 'HTTP://LOCALHOST:80/demo/mcp/';
    const flow = await codeFor(localhostGateway, { params: { resource } });
    expect(redirectOf(flow).searchParams.get('iss')).toBe('http://localhost/');
    const tokens = await redeem(localhostGateway, flow, { resource });
    expect(tokens.status).toBe(200);
    const { payload } = await jwtVerify(String(tokens.body.access_token), createLocalJWKSet(await jwks(localhostGateway)), { issuer: 'http://localhost/' });
    expect(payload.aud).toBe('http://localhost/demo/mcp');
    expect((await callMcp(localhostGateway, '/demo/mcp', String(tokens.body.access_token))).status).toBe(200);
  });

  it('accepts the service URL with a trailing slash and upper-case scheme on the usual gateway', async () => {
    const resource = `HTTP://127.0.0.1:${new URL(gateway.origin).port}/demo/mcp/`;
    const flow = await codeFor(gateway, { params: { resource } });
    const tokens = await redeem(gateway, flow, { resource });
    expect(tokens.status).toBe(200);
    expect(decodeJwt(String(tokens.body.access_token)).aud).toBe(`${gateway.origin}/demo/mcp`);
  });

  it('uses the only service when the request names no resource', async () => {
    const flow = await codeFor(gateway, { params: { resource: undefined } });
    const tokens = await redeem(gateway, flow);
    expect(tokens.status).toBe(200);
    expect(decodeJwt(String(tokens.body.access_token)).aud).toBe(`${gateway.origin}/demo/mcp`);
  });

  it('refuses a request without resource when several services exist and none is the default', async () => {
    const flow = await runCodeFlow(twoServices, { params: { resource: undefined } });
    expectErrorRedirect(flow, twoServices, 'invalid_target');
  });

  it("refuses service A's token at service B with 401 invalid_token and a challenge", async () => {
    const flow = await codeFor(twoServices, { params: { resource: `${twoServices.origin}/a/mcp` } });
    const tokens = await redeem(twoServices, flow);
    expect(tokens.status).toBe(200);
    const accessToken = String(tokens.body.access_token);
    expect(decodeJwt(accessToken).aud).toBe(`${twoServices.origin}/a/mcp`);
    expect((await callMcp(twoServices, '/a/mcp', accessToken)).status).toBe(200);

    const atB = await callMcp(twoServices, '/b/mcp', accessToken);
    expect(atB.status).toBe(401);
    const challenge = atB.headers.get('www-authenticate') ?? '';
    expect(challenge).toMatch(/^Bearer /);
    expect(challenge).toContain('error="invalid_token"');
    expect(challenge).toContain(`resource_metadata="${twoServices.origin}/.well-known/oauth-protected-resource/b/mcp"`);
  });
});

describe('scopes: the intersection of what was asked and what the service offers', () => {
  it('grants tools.read only for "claudeai openid offline_access tools.read", with a refresh token', async () => {
    const flow = await codeFor(gateway, { params: { scope: 'claudeai openid offline_access tools.read' } });
    const tokens = await redeem(gateway, flow);
    expect(tokens.status).toBe(200);
    expect(tokens.body.scope).toBe('tools.read');
    expect(decodeJwt(String(tokens.body.access_token)).scope).toBe('tools.read');
    expect(typeof tokens.body.refresh_token).toBe('string');
    expect(tokens.body.id_token).toBeUndefined();
  });

  it('grants every scope of the service when only unknown scopes are asked for', async () => {
    const flow = await codeFor(gateway, { params: { scope: 'claudeai profile email' } });
    const tokens = await redeem(gateway, flow);
    expect(tokens.status).toBe(200);
    expect(tokens.body.scope).toBe('tools.read tools.call');
  });

  it('grants every scope of the service when no scope is asked for, and issues a refresh token without offline_access', async () => {
    const flow = await codeFor(gateway, { params: { scope: undefined } });
    const tokens = await redeem(gateway, flow);
    expect(tokens.status).toBe(200);
    expect(tokens.body.scope).toBe('tools.read tools.call');
    expect(typeof tokens.body.refresh_token).toBe('string');
    const refreshed = await refresh(gateway, flow.client.client_id, String(tokens.body.refresh_token));
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.scope).toBe('tools.read tools.call');
  });
});

describe('revocation (RFC 7009) and introspection (RFC 7662)', () => {
  it('revokes a refresh token and its grant; a confidential client introspects active and revoked tokens', async () => {
    const redirectUri = 'https://app.example/callback';
    const client = await registerClient(gateway, [redirectUri], { token_endpoint_auth_method: 'client_secret_basic' });
    expect(typeof client.client_secret).toBe('string');
    const basic = { id: client.client_id, secret: String(client.client_secret) };
    const flow = await codeFor(gateway, { client, redirectUri });
    const tokens = await tokenRequest(gateway, {
      grant_type: 'authorization_code', code: flow.code, redirect_uri: redirectUri, code_verifier: flow.verifier,
    }, basic);
    expect(tokens.status).toBe(200);
    const accessToken = String(tokens.body.access_token);
    const refreshToken = String(tokens.body.refresh_token);

    // Access tokens are JWTs (RFC 9068): the gateway introspects them by verifying them, for
    // the client they were issued to only; revoking one is refused (RFC 7009 §2.2.1
    // unsupported_token_type) since revoking its refresh token revokes the grant.
    const jwtIntrospection = await postForm(gateway, '/introspect', { token: accessToken }, basic);
    expect(jwtIntrospection.status).toBe(200);
    expect(jwtIntrospection.body).toMatchObject({
      active: true, token_type: 'Bearer', client_id: client.client_id, sub: 'dev:alice@example.com', aud: `${gateway.origin}/demo/mcp`,
    });
    expect(jwtIntrospection.body.gid).toBeUndefined();
    const activeRt = await postForm(gateway, '/introspect', { token: refreshToken, token_type_hint: 'refresh_token' }, basic);
    expect(activeRt.status).toBe(200);
    expect(activeRt.body).toMatchObject({
      active: true, client_id: client.client_id, sub: 'dev:alice@example.com', scope: 'tools.read tools.call', iss: gateway.issuer,
    });

    const wrongSecret = await postForm(gateway, '/introspect', { token: refreshToken }, { id: client.client_id, secret: 'not-the-secret' });
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.body.error).toBe('invalid_client');

    // Another confidential client learns nothing about, and cannot revoke, this client's
    // tokens (RFC 7662 §4: the server determines whether the caller may introspect the token;
    // RFC 7009 §2.1: the token must have been issued to the client revoking it).
    const other = await registerClient(gateway, ['https://other.example/callback'], { token_endpoint_auth_method: 'client_secret_basic' });
    const otherBasic = { id: other.client_id, secret: String(other.client_secret) };
    const snooped = await postForm(gateway, '/introspect', { token: refreshToken }, otherBasic);
    expect(snooped.status).toBe(200);
    expect(snooped.body).toEqual({ active: false });
    expect((await postForm(gateway, '/introspect', { token: accessToken }, otherBasic)).body).toEqual({ active: false });
    expect((await postForm(gateway, '/revoke', { token: refreshToken }, otherBasic)).status).toBe(200);
    expect((await postForm(gateway, '/introspect', { token: refreshToken }, basic)).body.active).toBe(true);

    const revoked = await postForm(gateway, '/revoke', { token: refreshToken, token_type_hint: 'refresh_token' }, basic);
    expect(revoked.status).toBe(200);

    const inactive = await postForm(gateway, '/introspect', { token: refreshToken, token_type_hint: 'refresh_token' }, basic);
    expect(inactive.status).toBe(200);
    expect(inactive.body).toEqual({ active: false });
    expect((await postForm(gateway, '/introspect', { token: accessToken }, basic)).body).toEqual({ active: false });
    const again = await tokenRequest(gateway, { grant_type: 'refresh_token', refresh_token: refreshToken }, basic);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
    expect(await eventually(async () => (await callMcp(gateway, '/demo/mcp', accessToken)).status === 401, 1500)).toBe(true);
  });
});

describe('MCP 2025-03-26 fallbacks: authorization server endpoints at the origin root', () => {
  it('serves root AS metadata whose endpoints are at the root, and a flow through them works', async () => {
    const response = await fetch(`${gateway.origin}/.well-known/oauth-authorization-server`);
    expect(response.status).toBe(200);
    const metadata = await response.json() as Record<string, unknown>;
    expect(metadata).toMatchObject({
      issuer: gateway.issuer,
      authorization_endpoint: `${gateway.origin}/authorize`,
      token_endpoint: `${gateway.origin}/token`,
      registration_endpoint: `${gateway.origin}/register`,
      revocation_endpoint: `${gateway.origin}/revoke`,
      introspection_endpoint: `${gateway.origin}/introspect`,
      jwks_uri: `${gateway.origin}/jwks`,
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
    });

    // A client that skipped protected-resource metadata: no resource parameter anywhere.
    const client = await registerClient(gateway, ['http://127.0.0.1/cb']);
    const { verifier, challenge } = pkcePair();
    const url = authorizeUrl(gateway, { client_id: client.client_id, redirect_uri: 'http://127.0.0.1:40000/cb', code_challenge: challenge });
    expect(url.href.startsWith(String(metadata.authorization_endpoint))).toBe(true);
    const result = await driveAuthorization(gateway, url);
    expect(result.kind).toBe('redirect');
    const code = result.kind === 'redirect' ? result.url.searchParams.get('code') : null;
    expect(code).toBeTruthy();
    const tokens = await tokenRequest(gateway, {
      grant_type: 'authorization_code', code: code ?? '', redirect_uri: 'http://127.0.0.1:40000/cb', code_verifier: verifier, client_id: client.client_id,
    });
    expect(tokens.status).toBe(200);
    expect(decodeJwt(String(tokens.body.access_token)).aud).toBe(`${gateway.origin}/demo/mcp`);
  });
});
