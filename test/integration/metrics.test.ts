/**
 * Prometheus metrics end to end: a full OAuth flow and MCP traffic through a real gateway, then
 * a scrape of /metrics that shows the requests, upstream latency and errors, streams, store
 * calls, authorization events and tool calls moved, with client names (never ids) as labels;
 * and who may read /metrics, on the main port and on a listener of its own.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startDemoServer } from '../../src/demo/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { eventually, redeem, refresh, runCodeFlow } from '../support/oauth-flow.ts';

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let bare: Server;
let sockets: WebSocketServer;
const openStreams = new Set<import('node:http').ServerResponse>();

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'metrics-test', version: '0' } },
});

const base = {
  identity_providers: [{ id: 'dev', type: 'dev' }],
  access: { allow: { users: ['*'] } },
};

async function tokenFor(target: TestGateway, service: string): Promise<{ access: string; refresh: string; clientId: string }> {
  const flow = await runCodeFlow(target, { params: { resource: `${target.origin}/${service}/mcp` } });
  const response = await redeem(target, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return { access: String(response.body.access_token), refresh: String(response.body.refresh_token), clientId: flow.client.client_id };
}

function post(path: string, token: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${gateway.origin}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: INITIALIZE,
    ...(signal ? { signal } : {}),
  });
}

/** The value of one sample, e.g. `gatehouse_sse_streams{service="bare"}`; 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) total += Number(match[3]);
  }
  return total;
}

async function scrape(target: TestGateway = gateway): Promise<string> {
  const response = await fetch(`${target.origin}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return response.text();
}

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  // A bare upstream: GET is an event stream that stays open, POST /slow answers after 3 s,
  // any other POST a JSON-RPC result.
  bare = createServer((req, res) => {
    req.resume();
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': open\n\n');
      openStreams.add(res);
      res.on('close', () => openStreams.delete(res));
      return;
    }
    const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{}}');
    if (req.url === '/slow') setTimeout(answer, 3000).unref();
    else answer();
  });
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  const barePort = (bare.address() as { port: number }).port;
  sockets = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => sockets.once('listening', resolve));
  gateway = await startTestGateway({
    ...base,
    services: {
      demo: { upstream: demo.url, default: true },
      bare: { upstream: `http://127.0.0.1:${barePort}/mcp` },
      slow: { upstream: `http://127.0.0.1:${barePort}/slow` },
      down: { upstream: 'http://127.0.0.1:9/mcp', circuit_breaker: null },
      socket: { upstream: `ws://127.0.0.1:${(sockets.address() as { port: number }).port}/mcp` },
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  for (const res of openStreams) res.destroy();
  await new Promise((resolve) => sockets?.close(resolve));
  await new Promise((resolve) => bare?.close(resolve));
  await demo?.close();
});

describe('/metrics', () => {
  it('moves request, upstream, stream, store, authorization and tool call metrics, labelled by client name', async () => {
    const demoToken = await tokenFor(gateway, 'demo');
    const refreshed = await refresh(gateway, demoToken.clientId, demoToken.refresh);
    expect(refreshed.status).toBe(200);

    // Tool calls through the real MCP SDK client.
    const client = new Client({ name: 'metrics-test', version: '0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.origin}/demo/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${demoToken.access}` } },
    }));
    const tools = await client.listTools();
    await client.callTool({ name: tools.tools[0]!.name, arguments: { a: 1, b: 2, text: 'x', message: 'x' } });
    await client.close();

    const bareToken = await tokenFor(gateway, 'bare');
    expect((await post('/bare/mcp', bareToken.access)).status).toBe(200);
    const downToken = await tokenFor(gateway, 'down');
    expect((await post('/down/mcp', downToken.access)).status).toBe(502);
    expect((await post('/bare/mcp', 'not-a-token')).status).toBe(401);

    // An event stream is counted while open, and not after.
    const controller = new AbortController();
    const stream = await fetch(`${gateway.origin}/bare/mcp`, { headers: { authorization: `Bearer ${bareToken.access}`, accept: 'text/event-stream' }, signal: controller.signal });
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    expect(sample(await scrape(), 'gatehouse_sse_streams', { service: 'bare' })).toBe(1);
    controller.abort();
    expect(await eventually(async () => sample(await scrape(), 'gatehouse_sse_streams', { service: 'bare' }) === 0)).toBe(true);

    // WebSocket connections likewise, with the handshake as the upstream's latency.
    const socketToken = await tokenFor(gateway, 'socket');
    const socket = new WebSocket(`${gateway.origin.replace('http:', 'ws:')}/socket/mcp`, { headers: { authorization: `Bearer ${socketToken.access}` } });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const withSocket = await scrape();
    expect(sample(withSocket, 'gatehouse_websocket_connections', { service: 'socket' })).toBe(1);
    expect(sample(withSocket, 'gatehouse_upstream_response_seconds_count', { service: 'socket' })).toBe(1);
    socket.close();
    expect(await eventually(async () => sample(await scrape(), 'gatehouse_websocket_connections', { service: 'socket' }) === 0)).toBe(true);

    // A client that gives up before the answer began: 499.
    const slowToken = await tokenFor(gateway, 'slow');
    const impatient = new AbortController();
    const waiting = post('/slow/mcp', slowToken.access, impatient.signal).catch((error: Error) => error);
    await new Promise((resolve) => setTimeout(resolve, 200));
    impatient.abort();
    expect(await waiting).toBeInstanceOf(Error);
    expect(await eventually(async () => sample(await scrape(), 'gatehouse_http_requests_total', { service: 'slow', status: '499' }) === 1)).toBe(true);

    const text = await scrape();
    expect(sample(text, 'gatehouse_http_requests_total', { service: 'demo', method: 'POST', status: '200' })).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'gatehouse_http_requests_total', { service: 'bare', method: 'POST', status: '401' })).toBe(1);
    expect(sample(text, 'gatehouse_http_requests_total', { service: 'down', method: 'POST', status: '502' })).toBe(1);
    expect(sample(text, 'gatehouse_http_requests_total', { service: '', route: '/token', method: 'POST', status: '200' })).toBe(6);
    expect(sample(text, 'gatehouse_http_requests_total', { service: '', route: '/register', method: 'POST', status: '201' })).toBe(5);
    expect(sample(text, 'gatehouse_http_request_duration_seconds_count', { service: 'demo', method: 'POST' })).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'gatehouse_upstream_response_seconds_count', { service: 'demo' })).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'gatehouse_upstream_response_seconds_count', { service: 'bare' })).toBe(2);
    expect(sample(text, 'gatehouse_upstream_errors_total', { service: 'down', kind: 'unreachable' })).toBe(1);
    expect(sample(text, 'gatehouse_upstream_errors_total', { service: 'slow' })).toBe(0);
    expect(sample(text, 'gatehouse_store_operation_seconds_count', { operation: 'get' })).toBeGreaterThan(0);
    expect(sample(text, 'gatehouse_store_operation_seconds_count', { operation: 'ping' })).toBe(0);

    const client_ = { client: 'oauth-flow test client', provider: 'dev' };
    // The first registration came before anyone signed in with such a client: its name was no label yet.
    expect(sample(text, 'gatehouse_auth_events_total', { event: 'client.registered', client: 'other' })).toBe(1);
    expect(sample(text, 'gatehouse_auth_events_total', { event: 'client.registered', client: client_.client })).toBe(4);
    expect(sample(text, 'gatehouse_auth_events_total', { event: 'sign_in', ...client_ })).toBe(5);
    expect(sample(text, 'gatehouse_auth_events_total', { event: 'consent.given', ...client_ })).toBe(5);
    expect(sample(text, 'gatehouse_auth_events_total', { event: 'token.issued', ...client_ })).toBe(5);
    expect(sample(text, 'gatehouse_auth_events_total', { event: 'token.refreshed', ...client_ })).toBe(1);
    expect(sample(text, 'gatehouse_tool_calls_total', { service: 'demo', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'gatehouse_tool_call_duration_seconds_count', { service: 'demo' })).toBe(1);
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);

    // Low cardinality: no client id, account or token appears anywhere.
    for (const secret of [demoToken.clientId, bareToken.clientId, demoToken.access, demoToken.refresh, 'alice@example.com', 'dev:']) {
      expect(text).not.toContain(secret);
    }
  });

  it('is refused to a request that came through a proxy, even from loopback', async () => {
    const response = await fetch(`${gateway.origin}/metrics`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ error: 'forbidden' });
  });

  it('is refused to an address not in metrics.allowed_ips', async () => {
    const elsewhere = await startTestGateway({ ...base, services: { demo: { upstream: demo.url } }, metrics: { allowed_ips: ['10.0.0.0/8'] } });
    try {
      const response = await fetch(`${elsewhere.origin}/metrics`);
      expect(response.status).toBe(403);
      expect(await response.text()).not.toContain('gatehouse_');
    } finally {
      await elsewhere.close();
    }
  });

  it('is served on a listener of its own with metrics.listen, and then not on the main port', async () => {
    const admin = await startTestGateway({ ...base, services: { demo: { upstream: demo.url } }, metrics: { listen: { host: '127.0.0.1', port: 0 } } });
    const closed = await startTestGateway({ ...base, services: { demo: { upstream: demo.url } }, metrics: { listen: { host: '127.0.0.1', port: 0 }, allowed_ips: ['192.0.2.0/24'] } });
    try {
      expect(admin.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await fetch(`${admin.origin}/health`)).status).toBe(200);
      const response = await fetch(`${admin.metricsUrl}/metrics`);
      expect(response.status).toBe(200);
      expect(sample(await response.text(), 'gatehouse_http_requests_total', { route: '/health', status: '200' })).toBe(1);
      expect((await fetch(`${admin.metricsUrl}/ready`)).status).toBe(404);
      expect((await fetch(`${admin.origin}/metrics`)).status).toBe(404);
      expect((await fetch(`${closed.metricsUrl}/metrics`)).status).toBe(403);
    } finally {
      await admin.close();
      await closed.close();
    }
  });

  it('is not served at all with metrics.enabled false', async () => {
    const off = await startTestGateway({ ...base, services: { demo: { upstream: demo.url } }, metrics: { enabled: false } });
    try {
      expect((await fetch(`${off.origin}/metrics`)).status).toBe(404);
      expect(off.metricsUrl).toBeUndefined();
    } finally {
      await off.close();
    }
  });
});
