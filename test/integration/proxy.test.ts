/**
 * The protected MCP endpoints: challenges, CORS, origin checks, audience binding, identity
 * headers and assertions, size limits, upstream failures, and streaming that is not buffered.
 */
import { createServer, type Server } from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDemoServer } from '../../src/demo/index.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let silent: Server;
let echo: Server;
let echoed: Record<string, string | string[] | undefined> = {};
let streamer: Server;
let upstreamClosed: Promise<void>;
let markUpstreamClosed: () => void = () => undefined;
const tokens: Record<string, string> = {};

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0', id: 'init-7', method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'proxy-test', version: '0' } },
});

async function tokenFor(service: string, scope?: string): Promise<string> {
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/${service}/mcp`, ...(scope ? { scope } : {}) } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

function post(path: string, token: string | undefined, init: { body?: string; headers?: Record<string, string> } = {}) {
  return fetch(`${gateway.origin}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...init.headers,
    },
    body: init.body ?? INITIALIZE,
  });
}

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  silent = createServer(() => { /* never answers: the upstream timeout */ });
  echo = createServer((req, res) => {
    echoed = req.headers;
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive', 'x-internal': 'secret' }).end('{"jsonrpc":"2.0","id":1,"result":{}}'));
  });
  // An SSE upstream that writes an event every 50 ms until either side goes away; a request
  // with `?hangup` is cut by the upstream itself after two events.
  streamer = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let sent = 0;
    const timer = setInterval(() => {
      res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { n: ++sent } })}\n\n`);
      if (sent >= 2 && req.url?.includes('hangup')) res.destroy();
    }, 50);
    res.on('close', () => { clearInterval(timer); markUpstreamClosed(); });
  });
  await Promise.all([silent, echo, streamer].map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  const portOf = (server: Server) => (server.address() as { port: number }).port;
  const closedPort = await freePort();
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: {
      demo: { upstream: demo.url, scopes: ['tools.read', 'tools.call'], default: true },
      other: { upstream: demo.url },
      echo: { upstream: `http://127.0.0.1:${portOf(echo)}/mcp`, forward: { identity_jwt: true } },
      slow: { upstream: `http://127.0.0.1:${portOf(silent)}/mcp`, timeout_ms: 1000 },
      down: { upstream: `http://127.0.0.1:${closedPort}/mcp` },
      small: { upstream: demo.url, max_body_bytes: 512 },
      stream: { upstream: `http://127.0.0.1:${portOf(streamer)}/mcp` },
      hangup: { upstream: `http://127.0.0.1:${portOf(streamer)}/mcp?hangup` },
      guarded: { upstream: demo.url, scopes: ['tools.read', 'tools.call'], method_scopes: { 'tools/call': 'tools.call', 'tools/call:whoami': 'tools.read' } },
    },
  });
  for (const service of ['demo', 'echo', 'slow', 'down', 'small', 'guarded', 'stream', 'hangup']) tokens[service] = await tokenFor(service);
  tokens.guardedRead = await tokenFor('guarded', 'tools.read');
});

afterAll(async () => {
  await gateway?.close();
  await demo?.close();
  silent?.closeAllConnections();
  silent?.close();
  echo?.close();
  streamer?.closeAllConnections();
  streamer?.close();
});

describe('challenges and metadata', () => {
  it('answers a request without a token with 401, a quoted Bearer challenge and an absolute resource_metadata', async () => {
    const response = await post('/demo/mcp', undefined);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer scope="tools.read tools.call", resource_metadata="${gateway.origin}/.well-known/oauth-protected-resource/demo/mcp"`,
    );
    expect(await response.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32001 } });
  });

  it('answers a bad token with error="invalid_token"', async () => {
    const response = await post('/demo/mcp', 'not-a-token');
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token", error_description="[^"]+", scope="tools.read tools.call", resource_metadata="http/);
  });

  it('serves protected-resource metadata per service and at the root for the default one, query strings tolerated', async () => {
    const perService = await fetch(`${gateway.origin}/.well-known/oauth-protected-resource/echo/mcp?x=1`);
    expect(perService.status).toBe(200);
    expect(perService.headers.get('access-control-allow-origin')).toBe('*');
    expect(await perService.json()).toEqual({
      resource: `${gateway.origin}/echo/mcp`,
      authorization_servers: [gateway.issuer],
      scopes_supported: ['mcp'],
      bearer_methods_supported: ['header'],
      resource_name: 'echo',
    });
    const root = await (await fetch(`${gateway.origin}/.well-known/oauth-protected-resource`)).json() as { resource: string };
    expect(root.resource).toBe(`${gateway.origin}/demo/mcp`);
    expect((await fetch(`${gateway.origin}/.well-known/oauth-protected-resource/nope/mcp`)).status).toBe(404);
  });

  it('answers unknown paths with 404 JSON', async () => {
    const response = await fetch(`${gateway.origin}/nothing/here`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: 'not_found' });
  });
});

describe('CORS and origins', () => {
  it('answers a preflight without a token and exposes the MCP headers', async () => {
    const response = await fetch(`${gateway.origin}/demo/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, mcp-protocol-version, mcp-session-id, last-event-id' },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('http://localhost:6274');
    expect(response.headers.get('access-control-allow-headers')).toContain('mcp-protocol-version');
    const unauthorized = await post('/demo/mcp', undefined, { headers: { origin: 'http://localhost:6274' } });
    expect(unauthorized.headers.get('access-control-expose-headers')).toContain('WWW-Authenticate');
    expect(unauthorized.headers.get('access-control-expose-headers')).toContain('Mcp-Session-Id');
  });

  it('refuses a foreign browser origin with 403 and allows requests without Origin', async () => {
    const foreign = await post('/demo/mcp', tokens.demo, { headers: { origin: 'https://evil.example' } });
    expect(foreign.status).toBe(403);
    expect((await post('/demo/mcp', tokens.demo)).status).toBe(200);
  });
});

describe('audience, identity and headers', () => {
  it('refuses a token issued for another service', async () => {
    const response = await post('/other/mcp', tokens.demo);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('serves /svc/mcp and /svc/mcp/ as the same endpoint, without a redirect', async () => {
    const response = await post('/demo/mcp/', tokens.demo);
    expect(response.status).toBe(200);
    expect(response.headers.get('mcp-session-id')).toBeTruthy();
  });

  it('forwards allowed headers and the identity, never the client token, spoofed identity or hop-by-hop headers', async () => {
    const response = await post('/echo/mcp', tokens.echo, {
      // (Mcp-Session-Id passes only for sessions the upstream issued to this user: sessions.test.ts.)
      headers: { 'x-user-email': 'spoof@evil.test', 'x-client-id': 'spoof', 'mcp-protocol-version': '2025-06-18', 'proxy-authorization': 'x', 'x-forwarded-user': 'mallory', te: 'trailers', 'last-event-id': '42' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-internal')).toBeNull();
    expect(echoed.authorization).toBeUndefined();
    expect(echoed['proxy-authorization']).toBeUndefined();
    expect(echoed['x-forwarded-user']).toBeUndefined();
    expect(echoed.te).toBeUndefined();
    expect(echoed['x-user-email']).toBe('alice@example.com');
    expect(echoed['x-user-id']).toBe('dev:alice@example.com');
    expect(echoed['x-client-id']).toMatch(/^gh_/);
    expect(echoed['mcp-protocol-version']).toBe('2025-06-18');
    expect(echoed['last-event-id']).toBe('42');
    expect(echoed['x-request-id']).toBeTruthy();
  });

  it('signs an identity assertion for the upstream, verifiable at /jwks, bound to that upstream', async () => {
    await post('/echo/mcp', tokens.echo);
    const assertion = String(echoed['x-gatehouse-identity']);
    const jwks = createRemoteJWKSet(new URL(`${gateway.origin}/jwks`));
    const upstream = gateway.config.services.echo!.upstream;
    const { payload } = await jwtVerify(assertion, jwks, { issuer: gateway.issuer, audience: upstream });
    expect(payload).toMatchObject({ sub: 'dev:alice@example.com', email: 'alice@example.com', provider: 'dev' });
    expect(payload.exp! - payload.iat!).toBe(60);
    await expect(jwtVerify(assertion, jwks, { issuer: gateway.issuer, audience: demo.url })).rejects.toThrow();
  });
});

describe('scopes by method (step-up)', () => {
  const call = (token: string, name: string, id = 3) => post('/guarded/mcp', token, {
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { text: 'hi' } } }),
  });

  it('answers a token without the needed scope with 403 insufficient_scope naming it', async () => {
    const response = await call(tokens.guardedRead!, 'echo');
    expect(response.status).toBe(403);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", scope="tools.read tools.call", resource_metadata="${gateway.origin}/.well-known/oauth-protected-resource/guarded/mcp"`,
    );
  });

  it('lets the same token through where its scope suffices, and a tool-specific rule win', async () => {
    expect((await post('/guarded/mcp', tokens.guardedRead!)).status).toBe(200);
    // tools/call:whoami needs only tools.read: the request reaches the server (which answers
    // it without a session with 400, but not the gateway's 403).
    expect((await call(tokens.guardedRead!, 'whoami')).status).not.toBe(403);
  });

  it('lets a token with the scope call', async () => {
    expect((await call(tokens.guarded!, 'echo')).status).not.toBe(403);
  });

  it('fails closed on a body it cannot parse', async () => {
    const response = await post('/guarded/mcp', tokens.guarded!, { body: '{not json' });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: -32700 } });
  });
});

describe('limits and upstream failures', () => {
  it('refuses a body over the service limit with 413', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { pad: 'x'.repeat(2000) } });
    const declared = await post('/small/mcp', tokens.small, { body: big });
    expect(declared.status).toBe(413);
    const chunked = await fetch(`${gateway.origin}/small/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.small}`, 'content-type': 'application/json' },
      body: new Blob([big]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
  });

  it('answers an unreachable upstream with 502 and the request id', async () => {
    const response = await post('/down/mcp', tokens.down);
    expect(response.status).toBe(502);
    expect(await response.json()).toEqual({ jsonrpc: '2.0', id: 'init-7', error: { code: -32010, message: 'the MCP server is unreachable' } });
  });

  it('answers an upstream that does not answer in time with 504 and the request id', async () => {
    const started = Date.now();
    const response = await post('/slow/mcp', tokens.slow);
    expect(response.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await response.json()).toMatchObject({ id: 'init-7', error: { code: -32011 } });
  });
});

describe('streaming', () => {
  it('forwards server events as they are sent, not all at the end', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/demo/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${tokens.demo}` } },
    });
    const client = new Client({ name: 'stream-test', version: '1' });
    await client.connect(transport);
    const arrivals: number[] = [];
    const started = Date.now();
    await client.callTool({ name: 'countdown', arguments: { from: 4, interval_ms: 250 } }, undefined, {
      onprogress: () => arrivals.push(Date.now() - started),
    });
    const finished = Date.now() - started;
    expect(arrivals).toHaveLength(4);
    // Spread over time: the first arrives well before the end, and consecutive ones ~250 ms apart.
    expect(arrivals[0]!).toBeLessThan(finished - 500);
    for (let i = 1; i < arrivals.length; i++) expect(arrivals[i]! - arrivals[i - 1]!).toBeGreaterThan(150);
    await client.close();
  });

  it('aborts the upstream request when the client goes away', async () => {
    upstreamClosed = new Promise((resolve) => { markUpstreamClosed = resolve; });
    const controller = new AbortController();
    const response = await fetch(`${gateway.origin}/stream/mcp`, {
      headers: { authorization: `Bearer ${tokens.stream}`, accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(response.headers.get('x-accel-buffering')).toBe('no');
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    const closedInTime = await Promise.race([upstreamClosed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
    expect(closedInTime).toBe(true);
  });

  it('ends the client response when the upstream goes away', async () => {
    const response = await fetch(`${gateway.origin}/hangup/mcp`, {
      headers: { authorization: `Bearer ${tokens.hangup}`, accept: 'text/event-stream' },
    });
    const started = Date.now();
    const text = await response.text().catch(() => 'aborted');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(text === 'aborted' || text.includes('"n":2')).toBe(true);
  });
});
