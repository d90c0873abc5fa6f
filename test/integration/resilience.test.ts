/**
 * Resilience of the proxy hop: the circuit breaker of a service whose server is down (fast 503
 * with Retry-After, one probe after the cool-down, closed again by its success) and retries
 * only where the server cannot have acted on the request (a kept-alive connection the server
 * closes before answering: GET sent again, POST never).
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';

let gateway: TestGateway;
let flakyPort: number;
let flaky: Server | undefined;
let flakyHits = 0;
/** Closes the connection on the second request of every connection, before answering it. */
let breaking: Server;
const seen: string[] = [];
const tokens: Record<string, string> = {};
const CALL = JSON.stringify({ jsonrpc: '2.0', id: 'call-9', method: 'tools/call', params: { name: 'x', arguments: {} } });

async function tokenFor(service: string, scope?: string): Promise<string> {
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/${service}/mcp`, ...(scope ? { scope } : {}) } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

function call(service: string, init: { method?: string; body?: string } = {}) {
  const method = init.method ?? 'POST';
  return fetch(`${gateway.origin}/${service}/mcp`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${tokens[service]}` },
    ...(method === 'POST' ? { body: init.body ?? CALL } : {}),
  });
}

function answer(res: import('node:http').ServerResponse) {
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":"call-9","result":{}}');
}

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

beforeAll(async () => {
  flakyPort = await freePort();
  const requestsOn = new WeakMap<Socket, number>();
  breaking = createServer((req: IncomingMessage, res) => {
    const count = (requestsOn.get(req.socket) ?? 0) + 1;
    requestsOn.set(req.socket, count);
    seen.push(`${req.method} #${count}`);
    if (count === 2) {
      req.socket.destroy();
      return;
    }
    req.resume();
    req.on('end', () => answer(res));
  });
  const breakingPort = await listen(breaking);
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: {
      flaky: { upstream: `http://127.0.0.1:${flakyPort}/mcp`, circuit_breaker: { failures: 2, open_seconds: 1, max_open_seconds: 2 } },
      ws: { upstream: `ws://127.0.0.1:${await freePort()}/mcp`, circuit_breaker: { failures: 1, open_seconds: 60, max_open_seconds: 60 } },
      breaking: { upstream: `http://127.0.0.1:${breakingPort}/mcp`, circuit_breaker: false },
      scoped: {
        upstream: `http://127.0.0.1:${breakingPort}/mcp`, circuit_breaker: false,
        scopes: ['tools.call'], method_scopes: { 'tools/call': 'tools.call' },
      },
    },
  });
  tokens.flaky = await tokenFor('flaky');
  tokens.breaking = await tokenFor('breaking');
  tokens.ws = await tokenFor('ws');
  tokens.scoped = await tokenFor('scoped', 'tools.call');
});

afterAll(async () => {
  await gateway?.close();
  flaky?.closeAllConnections();
  flaky?.close();
  breaking?.closeAllConnections();
  breaking?.close();
});

describe('circuit breaker', () => {
  it('opens after consecutive failures, answers 503 at once with Retry-After, probes after the cool-down and closes', async () => {
    for (let i = 0; i < 2; i++) expect((await call('flaky')).status).toBe(502);

    const started = performance.now();
    const refused = await call('flaky');
    expect(performance.now() - started).toBeLessThan(200);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32012, message: expect.stringContaining('failing') } });

    // The server is back, but the circuit holds requests back until the cool-down ends.
    flaky = createServer((req, res) => {
      flakyHits++;
      req.resume();
      req.on('end', () => answer(res));
    });
    await listen(flaky, flakyPort);
    expect((await call('flaky')).status).toBe(503);
    expect(flakyHits).toBe(0);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    const probe = await call('flaky');
    expect(probe.status).toBe(200);
    expect(await probe.json()).toMatchObject({ id: 'call-9', result: {} });
    expect((await call('flaky')).status).toBe(200);
    expect(flakyHits).toBe(2);

    const events = gateway.logs.filter((line) => String(line.event).startsWith('circuit.') && line.service === 'flaky').map((line) => [line.event, line.service, line.level]);
    expect(events).toEqual([['circuit.open', 'flaky', 40], ['circuit.half_open', 'flaky', 30], ['circuit.closed', 'flaky', 30]]);
  });
});

/** A WebSocket opening handshake through the gateway: the status and Retry-After of its answer. */
function handshake(service: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gateway.origin}/${service}/mcp`, {
      headers: {
        connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', authorization: `Bearer ${tokens[service]}`,
      },
    });
    req.on('response', (response) => {
      response.resume();
      resolve({ status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'] });
    });
    req.on('upgrade', (response, socket) => {
      socket.destroy();
      resolve({ status: response.statusCode ?? 0, retryAfter: undefined });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('circuit breaker of a WebSocket service', () => {
  it('refuses handshakes with 503 while the server is failing', async () => {
    expect(await handshake('ws')).toEqual({ status: 502, retryAfter: undefined });
    const refused = await handshake('ws');
    expect(refused.status).toBe(503);
    expect(Number(refused.retryAfter)).toBeGreaterThan(50);
  });
});

describe('retries', () => {
  it('sends a GET again on a fresh connection when a kept-alive one closes before any answer', async () => {
    seen.length = 0;
    expect((await call('breaking', { method: 'GET' })).status).toBe(200);
    // The second GET goes out on the kept-alive connection, which the server closes unanswered.
    const again = await call('breaking', { method: 'GET' });
    expect(again.status).toBe(200);
    expect(seen).toEqual(['GET #1', 'GET #2', 'GET #1']);
  });

  it('never sends a POST twice, streamed or buffered: the server may have acted on it', async () => {
    seen.length = 0;
    // The kept-alive connection left by the test before carries this POST as its second request.
    const streamed = await call('breaking');
    expect(streamed.status).toBe(502);
    expect(await streamed.json()).toMatchObject({ error: { code: -32010 } });
    expect(seen).toEqual(['POST #2']);

    seen.length = 0;
    expect((await call('scoped')).status).toBe(200);
    const buffered = await call('scoped');
    expect(buffered.status).toBe(502);
    expect(await buffered.json()).toMatchObject({ id: 'call-9', error: { code: -32010 } });
    expect(seen).toEqual(['POST #1', 'POST #2']);
  });
});
