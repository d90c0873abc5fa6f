/**
 * A gateway on a SQLite file keeps working across a restart: its signing keys, registered
 * clients, grants and refresh tokens live in the store, so tokens issued before the restart
 * still verify and clients need not register again (checklist §4b "Persist registrations
 * durably"). A restart with another encryption key refuses to start, naming the setting.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer, type DemoServer } from '../../src/demo/index.ts';
import { GatehouseError } from '../../src/errors/index.ts';
import { HttpSession } from '../support/http-session.ts';
import { freePort, startTestGateway, testEncryptionKey, type TestGateway } from '../support/gateway.ts';

const REDIRECT = 'http://127.0.0.1:49152/callback';

let dir: string;
let demo: DemoServer;
let port: number;
let encryptionKey: string;
let gateway: TestGateway | undefined;

function gatewayConfig(key: string): Record<string, unknown> {
  return {
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    secrets: { encryption_key: key },
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: demo.url, scopes: ['tools.read', 'tools.call'] } },
    log: { level: 'warn' },
  };
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(origin: string, clientId: string, challenge: string): URL {
  const url = new URL('/authorize', origin);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: `${origin}/demo/mcp`,
    scope: 'tools.read tools.call',
    state: 'st-1',
  }).toString();
  return url;
}

async function register(origin: string): Promise<string> {
  const response = await fetch(`${origin}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Restart test', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] }),
  });
  const body = await response.json() as { client_id?: string };
  expect(response.status, JSON.stringify(body)).toBe(201);
  return body.client_id!;
}

/** authorize → dev sign-in form → consent → the code at the client's redirect URI. */
async function signInForCode(origin: string, clientId: string, challenge: string): Promise<string> {
  const session = new HttpSession();
  const atClient = (url: URL) => url.href.startsWith(REDIRECT);
  const toForm = await session.follow(authorizeUrl(origin, clientId, challenge), {}, { stopWhen: atClient });
  const formHtml = await toForm.response.text();
  expect(toForm.url.pathname, formHtml.slice(0, 300)).toMatch(/^\/signin\/dev\//);
  const signedIn = await session.submitForm(toForm.url, formHtml, { action: toForm.url.pathname }, { email: 'alice@example.com', name: 'Alice', groups: 'eng' });
  expect(signedIn.status).toBe(303);
  const consent = await session.follow(new URL(signedIn.headers.get('location')!, origin), {}, { stopWhen: atClient });
  let final = consent.url;
  if (!atClient(final)) {
    const html = await consent.response.text();
    expect(html).toContain('name="decision"');
    const posted = await session.submitForm(consent.url, html, {}, { decision: 'approve' });
    expect(posted.status).toBe(303);
    final = (await session.follow(new URL(posted.headers.get('location')!, origin), {}, { stopWhen: atClient })).url;
  }
  expect(final.searchParams.get('error')).toBeNull();
  const code = final.searchParams.get('code');
  expect(code).toBeTruthy();
  return code!;
}

async function token(origin: string, params: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${origin}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  return { status: response.status, body: await response.json() as Record<string, unknown> };
}

async function initialize(origin: string, accessToken: string): Promise<Response> {
  return fetch(`${origin}/demo/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'restart-test', version: '1.0.0' } } }),
  });
}

/**
 * A new connection pool, as a client process started after the restart would have. fetch's pool
 * may still hold keep-alive sockets to the closed gateway whose FIN it has not read yet, and a
 * request on one fails with "other side closed": a race in the test client, not the gateway.
 */
function freshConnections(): void {
  const previous = getGlobalDispatcher();
  setGlobalDispatcher(new Agent());
  void previous.close();
}

let clientId: string;
let accessToken: string;
let refreshToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-restart-'));
  demo = await startDemoServer({ port: 0 });
  port = await freePort();
  encryptionKey = testEncryptionKey();

  const first = await startTestGateway(gatewayConfig(encryptionKey), { port });
  gateway = first;
  clientId = await register(first.origin);
  const { verifier, challenge } = pkce();
  const code = await signInForCode(first.origin, clientId, challenge);
  const issued = await token(first.origin, { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: clientId, resource: `${first.origin}/demo/mcp` });
  expect(issued.status, JSON.stringify(issued.body)).toBe(200);
  accessToken = String(issued.body.access_token);
  refreshToken = String(issued.body.refresh_token);
  expect(refreshToken).toMatch(/\S{20,}/);
  expect((await initialize(first.origin, accessToken)).status).toBe(200);

  await first.close();
  gateway = undefined;
  freshConnections();
  gateway = await startTestGateway(gatewayConfig(encryptionKey), { port });
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('restart on the same SQLite file and encryption key', () => {
  it('accepts an access token issued before the restart', async () => {
    const response = await initialize(gateway!.origin, accessToken);
    const text = await response.text();
    expect(response.status, text).toBe(200);
    expect(text).toContain('"protocolVersion"');
  });

  it('still refuses a forged token after the restart (keys were loaded, not regenerated and trusted blindly)', async () => {
    const response = await initialize(gateway!.origin, `${accessToken.slice(0, -4)}AAAA`);
    expect(response.status).toBe(401);
  });

  it('knows the registered client at /authorize: no error page, on to sign-in', async () => {
    const response = await fetch(authorizeUrl(gateway!.origin, clientId, pkce().challenge), { redirect: 'manual' });
    const body = await response.text();
    expect([302, 303], body.slice(0, 300)).toContain(response.status);
    expect(new URL(response.headers.get('location')!, gateway!.origin).pathname).toMatch(/^\/interaction\//);
  });

  it('exchanges a refresh token issued before the restart, and the new access token works', async () => {
    const refreshed = await token(gateway!.origin, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId, resource: `${gateway!.origin}/demo/mcp` });
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
    expect(refreshed.body.access_token).toEqual(expect.any(String));
    expect(refreshed.body.refresh_token).not.toBe(refreshToken);
    expect((await initialize(gateway!.origin, String(refreshed.body.access_token))).status).toBe(200);
  });
});

describe('restart with another encryption key', () => {
  it('refuses to start, naming secrets.encryption_key', async () => {
    await gateway?.close();
    gateway = undefined;
    freshConnections();
    const attempt = startTestGateway(gatewayConfig(testEncryptionKey()), { port });
    await expect(attempt).rejects.toBeInstanceOf(GatehouseError);
    await expect(attempt).rejects.toThrow(/secrets\.encryption_key/);
    // Nothing was left listening on the port.
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
  });

  it('starts again with the right key, listed as a previous key after a rotation', async () => {
    gateway = await startTestGateway({ ...gatewayConfig(testEncryptionKey()), secrets: { encryption_key: testEncryptionKey(), previous_encryption_keys: [encryptionKey] } }, { port });
    expect((await initialize(gateway.origin, accessToken)).status).toBe(200);
  });
});
