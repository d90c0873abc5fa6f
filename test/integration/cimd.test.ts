/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP
 * authorization 2025-11-25): an https `client_id` is fetched, checked and used as the client,
 * against a real TLS server on this machine.
 *
 * Two gateways share one fetch that trusts the local server's certificate and resolves
 * `cimd.test` to 127.0.0.1:
 * - `open` has `clients.cimd.allow_loopback: true` (how dev mode fetches local documents);
 * - `guarded` has the production setting, so oidc-provider's special-use-IP check stays on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair } from 'jose';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startHttpsServer, trustingFetch, type TestHttpsServer, type TrustingFetch } from '../support/https-server.ts';
import { authorizationUrl, authorizeWithDevSignIn, exchangeCode, tokenRequest } from '../support/code-flow.ts';
import { HttpSession } from '../support/http-session.ts';

const HOST = 'cimd.test';

let server: TestHttpsServer;
let cimdFetch: TrustingFetch;
let open: TestGateway;
let guarded: TestGateway;

function gatewayConfig(allowLoopback: boolean) {
  return {
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream: 'http://127.0.0.1:9/mcp', scopes: ['tools.read', 'tools.call'] } },
    clients: { cimd: { enabled: true, allow_loopback: allowLoopback } },
  };
}

beforeAll(async () => {
  server = await startHttpsServer({ hosts: { [HOST]: '127.0.0.1' } });
  cimdFetch = await trustingFetch(server.ca, { [HOST]: '127.0.0.1' });
  open = await startTestGateway(gatewayConfig(true), { cimdFetch: cimdFetch.fetch });
  guarded = await startTestGateway(gatewayConfig(false), { cimdFetch: cimdFetch.fetch });
});

afterAll(async () => {
  await open?.close();
  await guarded?.close();
  await cimdFetch?.close();
  await server?.close();
});

const resourceOf = (gateway: TestGateway) => `${gateway.origin}/demo/mcp`;

/** Serves a metadata document for `https://cimd.test:PORT{path}` and returns that client_id. */
function publish(path: string, document: Record<string, unknown> = {}): string {
  const clientId = server.url(path, HOST);
  server.serve(path, { headers: { 'cache-control': 'max-age=0' }, body: { client_id: clientId, ...document } });
  return clientId;
}

function requestsFor(path: string): number {
  return server.requests.filter((request) => request.path === path).length;
}

/** /authorize as a browser would open it; the first answer, redirects not followed. */
async function openAuthorize(gateway: TestGateway, clientId: string, redirectUri: string) {
  const response = await new HttpSession().fetch(authorizationUrl({ origin: gateway.origin, clientId, redirectUri, resource: resourceOf(gateway) }));
  return { status: response.status, location: response.headers.get('location'), type: response.headers.get('content-type'), html: await response.text() };
}

function expectErrorPage(answer: Awaited<ReturnType<typeof openAuthorize>>) {
  expect(answer.status).toBe(400);
  expect(answer.location).toBeNull();
  expect(answer.type).toMatch(/^text\/html/);
  expect(answer.html).toContain('This sign-in link cannot be used');
}

describe('client ID metadata documents', () => {
  it('fetches an https client_id, shows its host on the consent page and completes the code flow', async () => {
    const redirectUri = 'http://127.0.0.1:7101/callback';
    const clientId = publish('/clients/basic.json', { client_name: 'Local Test Client', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' });

    const flow = await authorizeWithDevSignIn({ origin: open.origin, clientId, redirectUri, resource: resourceOf(open) });
    expect(requestsFor('/clients/basic.json')).toBe(1);
    expect(flow.consentHtml).toContain('Local Test Client');
    expect(flow.consentHtml).toContain(`Published by <strong>${HOST}:${server.port}</strong>`);
    expect(flow.redirect.searchParams.get('iss')).toBe(open.issuer);

    const tokens = await exchangeCode(open.origin, flow, redirectUri, { method: 'none', clientId });
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
    expect(typeof tokens.body.access_token).toBe('string');
    expect(typeof tokens.body.refresh_token).toBe('string');
  });

  it('a ChatGPT-style document (private_key_jwt, jwks_uri) works through the whole code flow with a client assertion', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    server.serve('/oauth/jwks.json', { body: { keys: [{ ...(await exportJWK(publicKey)), kid: 'chatgpt-1', use: 'sig', alg: 'RS256' }] } });
    const redirectUri = 'https://chatgpt.com/connector/oauth/abc123';
    const clientId = publish('/oauth/abc123/client.json', {
      client_name: 'ChatGPT',
      redirect_uris: [redirectUri, 'https://chatgpt.com/connector_platform_oauth_redirect'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks_uri: server.url('/oauth/jwks.json', HOST),
    });

    const flow = await authorizeWithDevSignIn({ origin: open.origin, clientId, redirectUri, resource: resourceOf(open) });
    expect(flow.consentHtml).toContain('ChatGPT');

    // The declared method binds the client (CIMD §"Client Authentication"): no assertion, no token.
    const unauthenticated = await exchangeCode(open.origin, flow, redirectUri, { method: 'none', clientId });
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.body.error).toBe('invalid_client');

    const tokens = await exchangeCode(open.origin, flow, redirectUri, { method: 'private_key_jwt', clientId, key: privateKey, alg: 'RS256', kid: 'chatgpt-1' });
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
    expect(requestsFor('/oauth/jwks.json')).toBeGreaterThanOrEqual(1);

    const refreshed = await tokenRequest(open.origin, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token as string }, { method: 'private_key_jwt', clientId, key: privateKey, alg: 'RS256', kid: 'chatgpt-1' });
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
  });

  it("applies the loopback port exemption to Claude Code's portless redirect URIs", async () => {
    const clientId = publish('/oauth/claude-code-client-metadata', {
      client_name: 'Claude Code',
      redirect_uris: ['http://localhost/callback', 'http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    const redirectUri = 'http://localhost:51234/callback';
    const flow = await authorizeWithDevSignIn({ origin: open.origin, clientId, redirectUri, resource: resourceOf(open) });
    expect(flow.redirect.origin).toBe('http://localhost:51234');
    expect(flow.consentHtml).toContain('This application runs on your computer');
    const tokens = await exchangeCode(open.origin, flow, redirectUri, { method: 'none', clientId });
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);

    // Only the port is free: another path is refused with an error page, not a redirect.
    expectErrorPage(await openAuthorize(open, clientId, 'http://localhost:51234/elsewhere'));
  });
});

describe('refused metadata documents', () => {
  it('does not follow a redirect', async () => {
    const target = publish('/clients/moved-target.json', { client_name: 'Moved', redirect_uris: ['http://127.0.0.1:7102/callback'], token_endpoint_auth_method: 'none' });
    const clientId = server.url('/clients/moved.json', HOST);
    server.serve('/clients/moved.json', { status: 302, headers: { location: target } });

    expectErrorPage(await openAuthorize(open, clientId, 'http://127.0.0.1:7102/callback'));
    expect(requestsFor('/clients/moved.json')).toBeGreaterThan(0);
    expect(requestsFor('/clients/moved-target.json')).toBe(0);
  });

  it.each([404, 500, 204])('refuses a %i answer', async (status) => {
    const clientId = server.url(`/clients/status-${status}.json`, HOST);
    server.serve(`/clients/status-${status}.json`, { status, ...(status === 204 ? {} : { body: { client_id: clientId, redirect_uris: ['http://127.0.0.1:7103/callback'] } }) });
    expectErrorPage(await openAuthorize(open, clientId, 'http://127.0.0.1:7103/callback'));
    expect(requestsFor(`/clients/status-${status}.json`)).toBeGreaterThan(0);
  });

  it('refuses a document whose client_id is not its URL', async () => {
    const path = '/clients/impostor.json';
    server.serve(path, { body: { client_id: server.url('/clients/someone-else.json', HOST), client_name: 'Impostor', redirect_uris: ['http://127.0.0.1:7104/callback'], token_endpoint_auth_method: 'none' } });
    expectErrorPage(await openAuthorize(open, server.url(path, HOST), 'http://127.0.0.1:7104/callback'));
    expect(requestsFor(path)).toBeGreaterThan(0);
  });

  it('refuses a document that declares a shared secret', async () => {
    const clientId = publish('/clients/secretive.json', { client_name: 'Secretive', redirect_uris: ['http://127.0.0.1:7105/callback'], token_endpoint_auth_method: 'client_secret_post' });
    expectErrorPage(await openAuthorize(open, clientId, 'http://127.0.0.1:7105/callback'));
  });
});

describe('SSRF: client_id URLs that point into private address space (production setting)', () => {
  it('refuses literal loopback hosts up front and never fetches them', async () => {
    const path = '/clients/literal.json';
    for (const host of ['127.0.0.1', 'localhost', '[::ffff:127.0.0.1]']) {
      server.serve(path, { body: { client_id: server.url(path, host), client_name: 'Literal', redirect_uris: ['http://127.0.0.1:7106/callback'], token_endpoint_auth_method: 'none' } });
      const connectionsBefore = server.connections();
      expectErrorPage(await openAuthorize(guarded, server.url(path, host), 'http://127.0.0.1:7106/callback'));
      expect(server.connections()).toBe(connectionsBefore);
    }
    expect(requestsFor(path)).toBe(0);
  });

  it('refuses a public-looking name that resolves to 127.0.0.1 at connection time, without sending the request', async () => {
    const path = '/clients/rebound.json';
    const redirectUri = 'http://127.0.0.1:7107/callback';
    const clientId = publish(path, { client_name: 'Rebound', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' });

    const guardedBefore = cimdFetch.guardedRequests();
    expectErrorPage(await openAuthorize(guarded, clientId, redirectUri));
    // The gateway handed the fetch oidc-provider's special-use-IP dispatcher, and that is what
    // stopped it: the URL passed the up-front check, the HTTP request was never sent.
    expect(cimdFetch.guardedRequests()).toBeGreaterThan(guardedBefore);
    expect(requestsFor(path)).toBe(0);

    // Control: the very same document is served and accepted where loopback is allowed.
    const answer = await openAuthorize(open, clientId, redirectUri);
    expect(answer.status).toBe(303);
    expect(answer.location).toMatch(/^\/interaction\//);
    expect(requestsFor(path)).toBe(1);
  });

  it('dev mode (allow_loopback) still refuses private non-loopback hosts', async () => {
    const connectionsBefore = server.connections();
    for (const host of ['10.1.2.3', '192.168.0.10', '169.254.169.254', '[fd00::1]']) {
      expectErrorPage(await openAuthorize(open, `https://${host}/client.json`, 'http://127.0.0.1:7108/callback'));
    }
    expect(server.connections()).toBe(connectionsBefore);
  });
});
