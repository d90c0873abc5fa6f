/**
 * Configuration reload on a running gateway: services, the access policy and identity
 * providers change while a stream stays open; a configuration that cannot be put in force is
 * refused whole; keys that need a restart keep their running values and are named in a warning;
 * the log level changes.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer } from '../../src/demo/index.ts';
import { ConfigError, type Config } from '../../src/config/index.ts';
import { freePort, reloadedConfig, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { HttpSession } from '../support/http-session.ts';
import { authorizeUrl, callMcp, redeem, registerClient, runCodeFlow, type DevUser } from '../support/oauth-flow.ts';
import { startUpstreamIdp, type UpstreamIdp } from '../support/upstream-idp.ts';

const ALICE: DevUser = { email: 'alice@example.com', name: 'Alice' };
const BOB: DevUser = { email: 'bob@example.com', name: 'Bob' };

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let streamer: Server;
let streamerUrl: string;
let idp: UpstreamIdp;

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'reload-test', version: '0' } },
});

/** The raw configuration the gateway started with, changed by `changes`, validated. */
function configWith(changes: Record<string, unknown>): Config {
  return reloadedConfig(gateway, { identity_providers: [{ id: 'dev', type: 'dev' }], access: { allow: { users: ['*'] } }, ...changes });
}

async function tokenFor(service: string, user: DevUser = ALICE): Promise<{ token: string; expiresIn: number }> {
  const flow = await runCodeFlow(gateway, { user, params: { resource: `${gateway.origin}/${service}/mcp` } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return { token: String(response.body.access_token), expiresIn: Number(response.body.expires_in) };
}

/** Reads the stream until an event numbered above `after` arrives; returns the highest number read. */
async function readPast(reader: ReadableStreamDefaultReader<Uint8Array>, after: number): Promise<number> {
  const decoder = new TextDecoder();
  let highest = after;
  while (highest <= after) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the stream ended');
    for (const match of decoder.decode(value).matchAll(/"n":(\d+)/g)) highest = Math.max(highest, Number(match[1]));
  }
  return highest;
}

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  // An SSE upstream that writes a numbered event every 50 ms for as long as the stream is open.
  streamer = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let sent = 0;
    const timer = setInterval(() => res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { n: ++sent } })}\n\n`), 50);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => streamer.listen(0, '127.0.0.1', resolve));
  streamerUrl = `http://127.0.0.1:${(streamer.address() as { port: number }).port}/mcp`;
  const port = await freePort();
  idp = await startUpstreamIdp({
    users: { carol: { sub: 'carol-1', email: 'carol@example.com', email_verified: true } },
    clients: [{ client_id: 'gatehouse', client_secret: 'upstream-secret', redirect_uris: [`http://127.0.0.1:${port}/callback/corp`] }],
  });
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: { a: { upstream: streamerUrl }, c: { upstream: demo.url } },
  }, { port });
}, 30_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
  streamer?.closeAllConnections();
  streamer?.close();
  await idp?.close();
});

describe('configuration reload', () => {
  it('adds, keeps and removes services and changes the policy while a stream on a kept service flows', async () => {
    const alice = { a: await tokenFor('a'), c: await tokenFor('c') };
    const stream = await fetch(`${gateway.origin}/a/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice.a.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: INITIALIZE,
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    const before = await readPast(reader, 1);

    const result = await gateway.reload(configWith({
      access: { allow: { emails: ['bob@example.com'] } },
      services: { a: { upstream: streamerUrl }, b: { upstream: demo.url } },
    }));
    expect(result).toMatchObject({
      services: { added: ['b'], changed: [], removed: ['c'] },
      identityProviders: { added: [], changed: [], removed: [] },
      access: true,
      needsRestart: [],
    });

    // The stream opened before the reload goes on.
    const after = await readPast(reader, before + 2);
    expect(after).toBeGreaterThan(before + 2);

    // Removed: 404. Added: a challenge naming its metadata, which is served.
    expect((await callMcp(gateway, '/c/mcp', alice.c.token)).status).toBe(404);
    const challenge = await fetch(`${gateway.origin}/b/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: INITIALIZE });
    expect(challenge.status).toBe(401);
    expect(challenge.headers.get('www-authenticate')).toContain(`resource_metadata="${gateway.origin}/.well-known/oauth-protected-resource/b/mcp"`);
    const metadata = await fetch(`${gateway.origin}/.well-known/oauth-protected-resource/b/mcp`);
    expect(metadata.status).toBe(200);
    expect(await metadata.json()).toMatchObject({ resource: `${gateway.origin}/b/mcp` });

    // The new policy: Bob gets a token for the new service and uses it; Alice's requests are refused.
    const bob = await tokenFor('b', BOB);
    expect((await callMcp(gateway, '/b/mcp', bob.token)).status).toBe(200);
    const refused = await callMcp(gateway, '/a/mcp', alice.a.token);
    expect(refused.status).toBe(403);
    await reader.cancel();
  });

  it('refuses a configuration whose new identity provider cannot be discovered, and the one in force stays', async () => {
    const closed = await freePort();
    const bob = await tokenFor('b', BOB);
    const logsBefore = gateway.logs.length;
    const attempt = gateway.reload(configWith({
      identity_providers: [{ id: 'dev', type: 'dev' }, { id: 'gone', type: 'oidc', issuer: `http://127.0.0.1:${closed}`, client_id: 'x', client_secret: 'y' }],
      access: { allow: { emails: ['bob@example.com'] } },
      services: { a: { upstream: streamerUrl }, b: { upstream: demo.url }, d: { upstream: demo.url } },
    }), 'next.yaml');
    const error = await attempt.then(() => undefined, (caught: unknown) => caught);
    if (!(error instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(error)}`);
    expect(error.problems.map((problem) => problem.path)).toEqual(['identity_providers[1]']);
    expect(error.format()).toMatch(/^Invalid configuration in next\.yaml:\n {2}- identity_providers\[1\]: discovery failed: /);
    expect(gateway.logs.slice(logsBefore).some((line) => line.event === 'config.reload_refused' && line.level === 50)).toBe(true);

    expect((await callMcp(gateway, '/d/mcp', bob.token)).status).toBe(404);
    expect((await callMcp(gateway, '/b/mcp', bob.token)).status).toBe(200);
    const ready = await (await fetch(`${gateway.origin}/ready`)).json() as { identity_providers: Record<string, unknown> };
    expect(Object.keys(ready.identity_providers)).toEqual(['dev']);
  });

  it('applies the reloadable part of a file that also changes keys needing a restart, and names those keys', async () => {
    const logsBefore = gateway.logs.length;
    const changes = {
      tokens: { access_ttl_seconds: 120 },
      log: { level: 'warn' },
      access: { allow: { emails: ['bob@example.com'] } },
      services: { a: { upstream: streamerUrl }, b: { upstream: demo.url }, d: { upstream: demo.url } },
    };
    const result = await gateway.reload(configWith(changes));
    expect(result.needsRestart).toEqual(['tokens']);
    expect(result.services).toEqual({ added: ['d'], changed: [], removed: [] });
    expect(result.logLevel).toBe(true);
    expect(gateway.logger.level).toBe('warn');
    const warning = gateway.logs.slice(logsBefore).find((line) => line.event === 'config.restart_needed');
    expect(warning).toMatchObject({ level: 40, keys: ['tokens'] });
    expect(String(warning?.msg)).toContain('tokens');

    // The service is there; the token lifetime in force is still the one the gateway started with.
    const bob = await tokenFor('d', BOB);
    expect(bob.expiresIn).toBe(3600);
    expect((await callMcp(gateway, '/d/mcp', bob.token)).status).toBe(200);
    // The same file again: still named, since the running value still differs.
    expect((await gateway.reload(configWith(changes))).needsRestart).toEqual(['tokens']);
    await gateway.reload(configWith({ ...changes, tokens: {}, log: { level: 'info' } }));
    expect(gateway.logger.level).toBe('info');
  });

  it('adds an identity provider after discovering it, and a sign-in begun with a removed provider fails cleanly', async () => {
    const corp = { id: 'corp', type: 'oidc', issuer: idp.issuer, client_id: 'gatehouse', client_secret: 'upstream-secret' };
    const services = { a: { upstream: streamerUrl }, b: { upstream: demo.url } };
    const added = await gateway.reload(configWith({ identity_providers: [{ id: 'dev', type: 'dev' }, corp], services }));
    expect(added.identityProviders).toEqual({ added: ['corp'], changed: [], removed: [] });
    const ready = await (await fetch(`${gateway.origin}/ready`)).json() as { identity_providers: Record<string, { ready: boolean }> };
    expect(ready.identity_providers.corp).toEqual({ ready: true });

    // Two providers: the chooser; picking corp sends the browser to it.
    const session = new HttpSession();
    const client = await registerClient(gateway, ['http://127.0.0.1:53100/callback']);
    const chooser = await session.follow(authorizeUrl(gateway, {
      client_id: client.client_id, redirect_uri: 'http://127.0.0.1:53100/callback', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      resource: `${gateway.origin}/b/mcp`,
    }));
    expect(chooser.response.status).toBe(200);
    const toProvider = await session.follow(new URL(`${chooser.url.pathname}/signin/corp`, gateway.origin), {}, { stopWhen: (next) => next.origin === idp.url });
    const state = toProvider.url.searchParams.get('state');
    expect(state).toBeTruthy();

    const removed = await gateway.reload(configWith({ services }));
    expect(removed.identityProviders).toEqual({ added: [], changed: [], removed: ['corp'] });
    const callback = await session.fetch(`${gateway.origin}/callback/corp?state=${encodeURIComponent(state ?? '')}&code=whatever`);
    expect(callback.status).toBe(400);
    expect(await callback.text()).toContain('no longer configured');
  });

  it('refuses the tokens of people whose identity provider a reload removed', async () => {
    const services = { a: { upstream: streamerUrl }, b: { upstream: demo.url } };
    const corp = { id: 'corp', type: 'oidc', issuer: idp.issuer, client_id: 'gatehouse', client_secret: 'upstream-secret' };
    await gateway.reload(configWith({ services }));
    const flow = await runCodeFlow(gateway, { user: BOB, params: { resource: `${gateway.origin}/b/mcp` } });
    const tokens = await redeem(gateway, flow);
    expect((await callMcp(gateway, '/b/mcp', String(tokens.body.access_token))).status).toBe(200);

    await gateway.reload(configWith({ identity_providers: [corp], services }));
    const refused = await callMcp(gateway, '/b/mcp', String(tokens.body.access_token));
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('invalid_token');
    const refresh = await fetch(`${gateway.origin}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: String(tokens.body.refresh_token), client_id: flow.client.client_id }),
    });
    expect(refresh.status).toBe(400);
    expect(((await refresh.json()) as { error: string }).error).toBe('invalid_grant');

    // Back again: the same person's new sign-in works (the dev pages exist from start).
    await gateway.reload(configWith({ services }));
    expect((await tokenFor('b', BOB)).token).toBeTruthy();
  });

  it('puts new rate limits in force, without a restart', async () => {
    const services = { a: { upstream: streamerUrl }, b: { upstream: demo.url } };
    const register = (name: string) => fetch(`${gateway.origin}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: name, redirect_uris: ['http://127.0.0.1:53100/callback'], token_endpoint_auth_method: 'none' }),
    });
    const result = await gateway.reload(configWith({ services, rate_limits: { registration: { per_client_metadata: '2/hour' } } }));
    expect(result).toMatchObject({ rateLimits: true, needsRestart: [] });
    expect((await register('Throttled')).status).toBe(201);
    expect((await register('Throttled')).status).toBe(201);
    const refused = await register('Throttled');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    // Turned off by the next reload: the same request passes.
    await gateway.reload(configWith({ services, rate_limits: { enabled: false } }));
    expect((await register('Throttled')).status).toBe(201);
    await gateway.reload(configWith({ services }));
  });

  it('serves a changed service with its new definition, metadata included', async () => {
    const result = await gateway.reload(configWith({ services: { a: { upstream: streamerUrl }, b: { upstream: demo.url, scopes: ['notes.read'] } } }));
    expect(result.services).toEqual({ added: [], changed: ['b'], removed: [] });
    const challenge = await fetch(`${gateway.origin}/b/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: INITIALIZE });
    expect(challenge.headers.get('www-authenticate')).toContain('scope="notes.read"');
    const metadata = await (await fetch(`${gateway.origin}/.well-known/oauth-protected-resource/b/mcp`)).json() as { scopes_supported: string[] };
    expect(metadata.scopes_supported).toEqual(['notes.read']);
    const server = await (await fetch(`${gateway.origin}/.well-known/oauth-authorization-server`)).json() as { scopes_supported: string[] };
    expect(server.scopes_supported).toContain('notes.read');
  });
});
