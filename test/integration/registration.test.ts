/**
 * Dynamic client registration (RFC 7591), its management (RFC 7592) and the authorization-server
 * metadata that leads clients there (RFC 8414), against a running gateway, with the exact
 * registration bodies real MCP clients send (checklist §4b, §14).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { exportJWK, generateKeyPair } from 'jose';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { authorizationUrl, authorizeWithDevSignIn, exchangeCode, type ClientAuthentication } from '../support/code-flow.ts';
import { HttpSession } from '../support/http-session.ts';

let gateway: TestGateway;
let resource: string;

beforeAll(async () => {
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    // Never called: these tests stop at the token endpoint.
    services: { demo: { upstream: 'http://127.0.0.1:9/mcp', scopes: ['tools.read', 'tools.call'] } },
  });
  resource = `${gateway.origin}/demo/mcp`;
});

afterAll(async () => {
  await gateway?.close();
});

interface Registered {
  status: number;
  headers: Headers;
  text: string;
  body: Record<string, unknown>;
}

async function register(body: unknown, init: { contentType?: string; raw?: string } = {}): Promise<Registered> {
  const response = await fetch(`${gateway.origin}/register`, {
    method: 'POST',
    headers: { 'content-type': init.contentType ?? 'application/json', origin: 'https://claude.ai' },
    body: init.raw ?? JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as Record<string, unknown> };
}

/** Every path at which `value` holds a JSON null. */
function nullPaths(value: unknown, path = '$'): string[] {
  if (value === null) return [path];
  if (Array.isArray(value)) return value.flatMap((item, index) => nullPaths(item, `${path}[${index}]`));
  if (typeof value === 'object') return Object.entries(value as object).flatMap(([key, item]) => nullPaths(item, `${path}.${key}`));
  return [];
}

type Method = 'none' | 'client_secret_basic' | 'client_secret_post';

const REAL_CLIENTS: Array<{ client: string; body: Record<string, unknown>; method: Method; applicationType?: string }> = [
  {
    client: 'Claude.ai / Claude Desktop (hosted connector)',
    body: {
      client_name: 'claudeai',
      scope: 'claudeai',
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback'],
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
    },
    method: 'client_secret_post',
  },
  {
    // No token_endpoint_auth_method: RFC 7591 §2's default, client_secret_basic, applies.
    client: 'ChatGPT (DCR fallback)',
    body: {
      client_name: 'ChatGPT',
      redirect_uris: ['https://chatgpt.com/connector_platform_oauth_redirect', 'https://chatgpt.com/connector/oauth/abc123'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    method: 'client_secret_basic',
  },
  {
    // vscode's fetchDynamicRegistration: grant_types filtered by the AS's grant_types_supported.
    client: 'VS Code',
    body: {
      client_name: 'Visual Studio Code',
      client_uri: 'https://code.visualstudio.com',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [
        'https://insiders.vscode.dev/redirect',
        'https://vscode.dev/redirect',
        'http://localhost/',
        'http://127.0.0.1/',
        'http://localhost:33418/',
        'http://127.0.0.1:33418/',
      ],
      scope: 'tools.read tools.call',
      token_endpoint_auth_method: 'none',
    },
    method: 'none',
    applicationType: 'native',
  },
  {
    client: 'Cursor',
    body: {
      client_name: 'Cursor',
      redirect_uris: ['cursor://anysphere.cursor-mcp/oauth/callback', 'https://www.cursor.com/agents/mcp/oauth/callback', 'http://localhost:8787/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    method: 'none',
    applicationType: 'native',
  },
  {
    client: 'mcp-remote',
    body: {
      redirect_uris: ['http://localhost:3334/oauth/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP CLI Proxy',
      client_uri: 'https://github.com/modelcontextprotocol/mcp-cli',
      software_id: '2e6dc280-f3c3-4e01-99a7-8181dbd1d23d',
      software_version: '0.1.29',
      scope: 'openid email profile',
    },
    method: 'none',
    applicationType: 'native',
  },
  {
    client: 'MCP Inspector (web)',
    body: {
      redirect_uris: ['http://localhost:6274/oauth/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP Inspector',
      client_uri: 'https://github.com/modelcontextprotocol/inspector',
      scope: 'tools.read tools.call',
    },
    method: 'none',
    applicationType: 'native',
  },
  {
    client: 'MCP Inspector (CLI/TUI)',
    body: {
      redirect_uris: ['http://127.0.0.1:6276/oauth/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: 'MCP Inspector',
    },
    method: 'none',
    applicationType: 'native',
  },
  {
    client: 'Claude Code',
    body: {
      client_name: 'Claude Code (demo)',
      redirect_uris: ['http://localhost:54545/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    method: 'none',
    applicationType: 'native',
  },
  {
    client: 'MCP TypeScript SDK v2 (application_type native)',
    body: {
      client_name: 'sdk2-client',
      redirect_uris: ['http://127.0.0.1:8090/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      scope: 'tools.read',
    },
    method: 'none',
    applicationType: 'native',
  },
];

describe('dynamic client registration with the bodies real MCP clients send', () => {
  it.each(REAL_CLIENTS)('$client: 201 with its metadata echoed and the requested authentication method', async ({ body, method, applicationType }) => {
    const { status, headers, text, body: registered } = await register(body);
    expect(status, text).toBe(201);
    expect(headers.get('content-type')).toMatch(/^application\/json/);
    expect(headers.get('access-control-allow-origin')).toBe('*');
    expect(nullPaths(registered)).toEqual([]);

    const clientId = registered.client_id;
    expect(typeof clientId).toBe('string');
    expect(clientId as string).not.toMatch(/^https:\/\//i);
    expect(clientId as string).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(registered.redirect_uris).toEqual(body.redirect_uris);
    expect(registered.token_endpoint_auth_method).toBe(method);
    expect(registered.grant_types).toEqual(['authorization_code', 'refresh_token']);
    if (body.client_name) expect(registered.client_name).toBe(body.client_name);
    if (applicationType) expect(registered.application_type).toBe(applicationType);

    if (method === 'none') {
      expect(registered).not.toHaveProperty('client_secret');
      expect(registered).not.toHaveProperty('client_secret_expires_at');
    } else {
      expect(registered.client_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(registered.client_secret_expires_at).toBe(0);
    }
    expect(registered.registration_client_uri).toBe(`${gateway.origin}/register/${clientId as string}`);
    expect(registered.registration_access_token).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  });

  it('treats JSON null members as absent instead of refusing the registration', async () => {
    const { status, text, body } = await register({
      client_name: 'nulls', redirect_uris: ['http://127.0.0.1:7010/callback'], token_endpoint_auth_method: 'none',
      client_uri: null, logo_uri: null, scope: null, grant_types: null,
    });
    expect(status, text).toBe(201);
    expect(nullPaths(body)).toEqual([]);
    expect(body.grant_types).toEqual(['authorization_code', 'refresh_token']);
  });

  it('answers the CORS preflight of browser clients (MCP Inspector web, vscode.dev)', async () => {
    const response = await fetch(`${gateway.origin}/register`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, mcp-protocol-version' },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('access-control-allow-methods')).toContain('POST');
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('mcp-protocol-version');
  });
});

describe('refused registrations', () => {
  it.each([
    ['javascript:alert(1)'],
    ['data:text/html,<script>alert(1)</script>'],
    ['file:///etc/passwd'],
    ['vbscript:msgbox(1)'],
    ['https://app.example.com/callback#fragment'],
    ['https://*.example.com/callback'],
    ['http://app.example.com/callback'],
    ['http://192.168.1.10/callback'],
  ])('%s → 400 invalid_redirect_uri', async (uri) => {
    const { status, headers, body } = await register({ client_name: 'bad', redirect_uris: ['https://good.example.com/cb', uri], token_endpoint_auth_method: 'none' });
    expect(status).toBe(400);
    expect(headers.get('content-type')).toMatch(/^application\/json/);
    expect(body.error).toBe('invalid_redirect_uri');
    expect(String(body.error_description)).toContain('redirect_uris');
  });

  it('malformed JSON → 400 JSON invalid_request, not 500', async () => {
    const { status, headers, body } = await register(undefined, { raw: '{"redirect_uris": ["https://a.example.com/cb"' });
    expect(status).toBe(400);
    expect(headers.get('content-type')).toMatch(/^application\/json/);
    expect(body.error).toBe('invalid_request');
  });

  it('a JSON array, or a body that is not JSON → 400 invalid_request', async () => {
    expect((await register([{ redirect_uris: ['https://a.example.com/cb'] }])).body.error).toBe('invalid_request');
    const form = await register(undefined, { contentType: 'application/x-www-form-urlencoded', raw: 'redirect_uris=https%3A%2F%2Fa.example.com%2Fcb' });
    expect(form.status).toBe(400);
    expect(form.body.error).toBe('invalid_request');
  });
});

describe('confidential and key-based clients at the token endpoint', () => {
  async function codeFor(clientId: string, redirectUri: string) {
    return authorizeWithDevSignIn({ origin: gateway.origin, clientId, redirectUri, resource });
  }

  it('client_secret_post (Claude.ai): the code flow completes with the secret in the body, and in Basic too', async () => {
    const { body: client } = await register(REAL_CLIENTS[0]!.body);
    const clientId = client.client_id as string;
    const secret = client.client_secret as string;
    const redirectUri = 'https://claude.ai/api/mcp/auth_callback';

    const flow = await codeFor(clientId, redirectUri);
    expect(flow.consentHtml).toContain('claudeai');
    expect(flow.redirect.searchParams.get('iss')).toBe(gateway.issuer);
    const post = await exchangeCode(gateway.origin, flow, redirectUri, { method: 'client_secret_post', clientId, secret });
    expect(post.status, JSON.stringify(post.body)).toBe(200);
    expect(post.body.token_type).toBe('Bearer');
    expect(typeof post.body.access_token).toBe('string');
    expect(typeof post.body.refresh_token).toBe('string');
    expect(post.body.scope).toBe('tools.read');

    // oidc-provider accepts either secret-carrying method for a secret client: clients that
    // registered one and send the other (SDKs default to Basic) keep working.
    const basic = await exchangeCode(gateway.origin, await codeFor(clientId, redirectUri), redirectUri, { method: 'client_secret_basic', clientId, secret });
    expect(basic.status, JSON.stringify(basic.body)).toBe(200);

    const wrong = await exchangeCode(gateway.origin, await codeFor(clientId, redirectUri), redirectUri, { method: 'client_secret_post', clientId, secret: secret.slice(1) });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid_client');
  });

  it('client_secret_basic: the code flow completes; a wrong secret is invalid_client', async () => {
    const redirectUri = 'https://chatgpt.com/connector/oauth/abc123';
    const { body: client } = await register({ client_name: 'basic', redirect_uris: [redirectUri], token_endpoint_auth_method: 'client_secret_basic' });
    expect(client.token_endpoint_auth_method).toBe('client_secret_basic');
    const clientId = client.client_id as string;

    const wrong = await exchangeCode(gateway.origin, await codeFor(clientId, redirectUri), redirectUri, { method: 'client_secret_basic', clientId, secret: `${client.client_secret as string}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid_client');

    const right = await exchangeCode(gateway.origin, await codeFor(clientId, redirectUri), redirectUri, { method: 'client_secret_basic', clientId, secret: client.client_secret as string });
    expect(right.status, JSON.stringify(right.body)).toBe(200);
    expect(typeof right.body.access_token).toBe('string');
  });

  it('private_key_jwt with registered jwks: a signed client assertion authenticates, one signed by another key does not', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', use: 'sig', alg: 'ES256' };
    const redirectUri = 'http://127.0.0.1:7020/callback';
    const { status, text, body: client } = await register({
      client_name: 'key-based', redirect_uris: [redirectUri], token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256', jwks: { keys: [jwk] },
    });
    expect(status, text).toBe(201);
    expect(client).not.toHaveProperty('client_secret');
    expect(client.token_endpoint_auth_method).toBe('private_key_jwt');
    const clientId = client.client_id as string;

    const stranger = await generateKeyPair('ES256');
    const forged = await exchangeCode(gateway.origin, await codeFor(clientId, redirectUri), redirectUri, { method: 'private_key_jwt', clientId, key: stranger.privateKey, alg: 'ES256', kid: 'k1' });
    expect(forged.status).toBe(401);
    expect(forged.body.error).toBe('invalid_client');

    const auth: ClientAuthentication = { method: 'private_key_jwt', clientId, key: privateKey, alg: 'ES256', kid: 'k1' };
    const signed = await exchangeCode(gateway.origin, await codeFor(clientId, redirectUri), redirectUri, auth);
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    expect(typeof signed.body.refresh_token).toBe('string');
  });
});

describe('client management (RFC 7592) with secrets stored hashed', () => {
  async function manage(uri: string, token: string, method: string, body?: unknown) {
    const response = await fetch(uri, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  it('stores only a digest; GET, PUT (with the secret, as RFC 7592 §2.2 says) and DELETE work without ever showing it', async () => {
    const warnings = vi.spyOn(console, 'warn');
    const original = {
      client_name: 'managed',
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['authorization_code', 'refresh_token'],
    };
    const { body: client } = await register(original);
    const clientId = client.client_id as string;
    const secret = client.client_secret as string;
    const uri = client.registration_client_uri as string;
    const token = client.registration_access_token as string;

    // At rest: a digest, not the secret.
    const stored = await gateway.store.get('Client', clientId);
    expect(stored).toBeDefined();
    expect(JSON.stringify(stored)).not.toContain(secret);
    const digest = stored!.value.client_secret as string;
    expect(digest).toMatch(/^sha256:/);

    // Read: the registration, without the secret or its digest.
    const read = await manage(uri, token, 'GET');
    expect(read.status).toBe(200);
    expect(read.body.client_id).toBe(clientId);
    expect(read.body.redirect_uris).toEqual(original.redirect_uris);
    expect(read.body).not.toHaveProperty('client_secret');
    expect(read.text).not.toContain(digest.slice('sha256:'.length));
    expect(read.headers.get('access-control-allow-origin')).toBe('*');
    expect(nullPaths(read.body)).toEqual([]);

    // Update with the full metadata, client_secret included.
    const newRedirect = 'https://claude.com/api/mcp/auth_callback';
    const updated = await manage(uri, token, 'PUT', { ...original, client_id: clientId, client_secret: secret, redirect_uris: [newRedirect] });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.body.redirect_uris).toEqual([newRedirect]);
    expect(updated.body.token_endpoint_auth_method).toBe('client_secret_post');
    expect(updated.body).not.toHaveProperty('client_secret');
    expect(updated.text).not.toContain(digest.slice('sha256:'.length));
    expect((await gateway.store.get('Client', clientId))!.value.client_secret).toBe(digest);
    expect(warnings.mock.calls.flat().join('\n')).not.toContain('already parsed request body');
    warnings.mockRestore();

    // Update without client_secret also works (the stored one is kept).
    const withoutSecret = await manage(uri, token, 'PUT', { ...original, client_id: clientId, redirect_uris: [newRedirect] });
    expect(withoutSecret.status, withoutSecret.text).toBe(200);

    // The secret still authenticates, at the updated redirect URI.
    const flow = await authorizeWithDevSignIn({ origin: gateway.origin, clientId, redirectUri: newRedirect, resource });
    const tokens = await exchangeCode(gateway.origin, flow, newRedirect, { method: 'client_secret_post', clientId, secret });
    expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);

    // Delete: gone from the store, and /authorize shows an error page instead of redirecting.
    const deleted = await manage(uri, token, 'DELETE');
    expect(deleted.status).toBe(204);
    expect(await gateway.store.get('Client', clientId)).toBeUndefined();
    expect((await manage(uri, token, 'GET')).status).toBe(401);
    const session = new HttpSession();
    const authorize = await session.fetch(authorizationUrl({ origin: gateway.origin, clientId, redirectUri: newRedirect, resource }));
    expect(authorize.status).toBe(400);
    expect(authorize.headers.get('location')).toBeNull();
    expect(authorize.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await authorize.text()).toContain('not registered with this gateway');
  });

  it('PUT refuses a wrong secret, and the stored digest presented as the secret', async () => {
    const original = { client_name: 'guarded', redirect_uris: ['https://claude.ai/api/mcp/auth_callback'], token_endpoint_auth_method: 'client_secret_basic' };
    const { body: client } = await register(original);
    const clientId = client.client_id as string;
    const uri = client.registration_client_uri as string;
    const token = client.registration_access_token as string;
    const digest = (await gateway.store.get('Client', clientId))!.value.client_secret as string;

    for (const presented of [`${client.client_secret as string}x`, digest, 42]) {
      const refused = await manage(uri, token, 'PUT', { ...original, client_id: clientId, client_secret: presented, redirect_uris: ['https://evil.example.com/cb'] });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toBe('invalid_request');
    }
    // A bad registration access token is still a 401, whatever the body says.
    const unauthenticated = await manage(uri, 'not-the-token', 'PUT', { ...original, client_id: clientId, client_secret: client.client_secret });
    expect(unauthenticated.status).toBe(401);
    expect((await gateway.store.get('Client', clientId))!.value.redirect_uris).toEqual(original.redirect_uris);
  });

  it('a public client may echo an empty client_secret on update, but not a made-up one', async () => {
    const original = { client_name: 'public', redirect_uris: ['http://127.0.0.1:7030/callback'], token_endpoint_auth_method: 'none' };
    const { body: client } = await register(original);
    const uri = client.registration_client_uri as string;
    const token = client.registration_access_token as string;
    const refused = await manage(uri, token, 'PUT', { ...original, client_id: client.client_id, client_secret: 'made-up' });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_request');
    const empty = await manage(uri, token, 'PUT', { ...original, client_id: client.client_id, client_secret: '', client_name: 'public, renamed' });
    expect(empty.status, empty.text).toBe(200);
    expect(empty.body.client_name).toBe('public, renamed');
    expect(empty.body).not.toHaveProperty('client_secret');
  });
});

describe('authorization server metadata', () => {
  const WELL_KNOWN = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'];

  it.each(WELL_KNOWN)('%s: 200 JSON with CORS and every field MCP clients rely on', async (path) => {
    const response = await fetch(`${gateway.origin}${path}`, { headers: { origin: 'http://localhost:6274', 'mcp-protocol-version': '2025-06-18' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(['*', 'http://localhost:6274']).toContain(response.headers.get('access-control-allow-origin'));
    const metadata = (await response.json()) as Record<string, unknown>;
    const origin = gateway.origin;
    expect(metadata.issuer).toBe(`${origin}/`);
    expect(metadata.issuer).toBe(gateway.issuer);
    expect(metadata).toMatchObject({
      authorization_endpoint: `${origin}/authorize`,
      token_endpoint: `${origin}/token`,
      registration_endpoint: `${origin}/register`,
      revocation_endpoint: `${origin}/revoke`,
      introspection_endpoint: `${origin}/introspect`,
      jwks_uri: `${origin}/jwks`,
      code_challenge_methods_supported: ['S256'],
      response_types_supported: ['code'],
      client_id_metadata_document_supported: true,
      authorization_response_iss_parameter_supported: true,
      grant_types_supported: ['authorization_code', 'refresh_token'],
    });
    expect(metadata.subject_types_supported).toContain('public');
    expect((metadata.id_token_signing_alg_values_supported as string[]).length).toBeGreaterThan(0);
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']));
    expect(metadata.scopes_supported).toEqual(['tools.read', 'tools.call']);
    expect(metadata.scopes_supported).not.toContain('offline_access');
    expect(nullPaths(metadata)).toEqual([]);
  });

  it.each(WELL_KNOWN)('%s: the CORS preflight (the SDK sends MCP-Protocol-Version) needs no token', async (path) => {
    const response = await fetch(`${gateway.origin}${path}`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'GET', 'access-control-request-headers': 'mcp-protocol-version' },
    });
    expect(response.status).toBe(204);
    expect(['*', 'http://localhost:6274']).toContain(response.headers.get('access-control-allow-origin'));
    expect(response.headers.get('access-control-allow-methods')).toContain('GET');
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('mcp-protocol-version');
  });

  it.each(WELL_KNOWN)('%s: tolerates a query string', async (path) => {
    const plain = (await (await fetch(`${gateway.origin}${path}`)).json()) as Record<string, unknown>;
    const response = await fetch(`${gateway.origin}${path}?resource=${encodeURIComponent(resource)}&x=1`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(plain);
  });
});
