/**
 * A legacy HTTP+SSE MCP server (protocol 2024-11-05: GET /sse, then POST /messages) behind the
 * gateway, reached by clients as Streamable HTTP: the SDK's SSEServerTransport as the upstream
 * and the SDK's StreamableHTTPClientTransport as the client, plus the protocol by hand.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { CreateMessageRequestSchema, LATEST_PROTOCOL_VERSION, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { createTestMcpServer } from '../support/test-mcp-server.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body?: string;
}

let gateway: TestGateway;
let legacy: Server;
let odd: Server;
const transports = new Map<string, SSEServerTransport>();
const seen: Seen[] = [];
const ended: string[] = [];
const tokens: Record<string, string> = {};

/** The 2024-11-05 server: the SDK's SSEServerTransport, one McpServer per stream. */
function startLegacyServer(): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://legacy');
    if (req.method === 'GET' && url.pathname === '/sse') {
      seen.push({ method: 'GET', url: req.url ?? '', headers: req.headers });
      const transport = new SSEServerTransport('/messages', res);
      transports.set(transport.sessionId, transport);
      transport.onclose = () => {
        transports.delete(transport.sessionId);
        ended.push(transport.sessionId);
      };
      void createTestMcpServer().connect(transport);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/messages') {
      let body = '';
      req.on('data', (chunk: Buffer) => { body += String(chunk); });
      req.on('end', () => {
        seen.push({ method: 'POST', url: req.url ?? '', headers: req.headers, body });
        const transport = transports.get(url.searchParams.get('sessionId') ?? '');
        if (!transport) return void res.writeHead(404).end('no such session');
        void transport.handlePostMessage(req, res, JSON.parse(body));
      });
      return;
    }
    res.writeHead(404).end();
  });
}

/** Servers that get the legacy protocol wrong: no event stream, or an endpoint on another origin. */
function startOddServer(): Server {
  return createServer((req, res) => {
    if (req.url === '/json') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: endpoint\ndata: http://evil.example/messages?sessionId=1\n\n');
  });
}

async function tokenFor(service: string, user = 'alice@example.com'): Promise<string> {
  const flow = await runCodeFlow(gateway, { user: { email: user }, params: { resource: `${gateway.origin}/${service}/mcp` } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

function mcpPost(service: string, token: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${gateway.origin}/${service}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const initialize = (id: number | string = 1) => ({
  jsonrpc: '2.0', id, method: 'initialize',
  params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'by-hand', version: '0' } },
});

/** Initializes by hand (JSON answers) and returns the gateway's session id. */
async function handSession(token: string): Promise<string> {
  const response = await mcpPost('legacy', token, initialize());
  expect(response.status).toBe(200);
  const session = response.headers.get('mcp-session-id')!;
  expect((await mcpPost('legacy', token, { jsonrpc: '2.0', method: 'notifications/initialized' }, { 'mcp-session-id': session })).status).toBe(202);
  return session;
}

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  legacy = startLegacyServer();
  odd = startOddServer();
  await Promise.all([legacy, odd].map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  const portOf = (server: Server) => (server.address() as { port: number }).port;
  const closedPort = await freePort();
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: {
      legacy: { upstream: `http://127.0.0.1:${portOf(legacy)}/sse`, transport: 'sse', timeout_ms: 2000 },
      notsse: { upstream: `http://127.0.0.1:${portOf(odd)}/json`, transport: 'sse', timeout_ms: 1000 },
      elsewhere: { upstream: `http://127.0.0.1:${portOf(odd)}/sse`, transport: 'sse', timeout_ms: 1000 },
      down: { upstream: `http://127.0.0.1:${closedPort}/sse`, transport: 'sse' },
    },
  });
  for (const service of ['legacy', 'notsse', 'elsewhere', 'down']) tokens[service] = await tokenFor(service);
  tokens.bob = await tokenFor('legacy', 'bob@example.com');
});

afterAll(async () => {
  await gateway?.close();
  for (const server of [legacy, odd]) {
    server?.closeAllConnections();
    server?.close();
  }
});

describe('the MCP SDK client through the gateway', () => {
  it('initializes, lists and calls tools, gets progress, notifications and a sampling request, and ends the session', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/legacy/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${tokens.legacy}` } },
    });
    const client = new Client({ name: 'sdk-through-gateway', version: '1' }, { capabilities: { sampling: {} } });
    const notes: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => { notes.push(notification.params.data); });
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
      role: 'assistant', model: 'test', content: { type: 'text', text: `42 (to "${(request.params.messages[0]!.content as { text: string }).text}")` },
    }));
    await client.connect(transport);

    // The client's session id is the gateway's own, not the legacy server's.
    expect(transport.sessionId).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(transports.has(transport.sessionId!)).toBe(false);
    expect(client.getServerVersion()).toEqual({ name: 'transport-test', version: '1.0.0' });

    const tools = await client.listTools();
    expect(tools.tools.map((tool) => tool.name).sort()).toEqual(['add', 'ask', 'headers', 'notify', 'progress']);
    expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).toEqual({ content: [{ type: 'text', text: '5' }] });

    const progress: number[] = [];
    const done = await client.callTool({ name: 'progress', arguments: { steps: 3 } }, undefined, { onprogress: (event) => progress.push(event.progress) });
    expect(done).toEqual({ content: [{ type: 'text', text: 'done after 3' }] });
    expect(progress).toEqual([1, 2, 3]);

    await client.callTool({ name: 'notify', arguments: { message: 'from the legacy server' } });
    await until(() => notes.length === 1);
    expect(notes).toEqual(['from the legacy server']);

    expect(await client.callTool({ name: 'ask', arguments: { question: 'meaning?' } })).toEqual({
      content: [{ type: 'text', text: 'the client said: 42 (to "meaning?")' }],
    });

    // The server saw the identity and the negotiated protocol version, never the token or the gateway's session id.
    const headers = JSON.parse((await client.callTool({ name: 'headers', arguments: {} }) as { content: Array<{ text: string }> }).content[0]!.text) as Record<string, unknown>;
    expect(headers).toEqual({ authorization: null, email: 'alice@example.com', protocol: LATEST_PROTOCOL_VERSION, session: null });
    const init = seen.find((request) => request.method === 'POST' && request.body?.includes('"initialize"'));
    expect(JSON.parse(init!.body!).params.protocolVersion).toBe(LATEST_PROTOCOL_VERSION);

    const upstreamSessions = [...transports.keys()];
    await transport.terminateSession();
    await until(() => upstreamSessions.every((id) => ended.includes(id)));
    await client.close();
  });
});

describe('Streamable HTTP by hand', () => {
  it('answers with JSON when the client accepts only JSON, batches included', async () => {
    const response = await mcpPost('legacy', tokens.legacy!, initialize('init-1'));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    const body = await response.json() as { id: string; result: { protocolVersion: string } };
    // The server's answer to a 2024-11-05 client, unchanged.
    expect(body).toMatchObject({ jsonrpc: '2.0', id: 'init-1', result: { protocolVersion: '2024-11-05', serverInfo: { name: 'transport-test' } } });
    const session = response.headers.get('mcp-session-id')!;
    expect((await mcpPost('legacy', tokens.legacy!, { jsonrpc: '2.0', method: 'notifications/initialized' }, { 'mcp-session-id': session })).status).toBe(202);

    const batch = await mcpPost('legacy', tokens.legacy!, [
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 1 } } },
      { jsonrpc: '2.0', id: 'three', method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 2 } } },
    ], { 'mcp-session-id': session });
    expect(batch.status).toBe(200);
    expect(await batch.json()).toEqual([
      { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: '2' }] } },
      { jsonrpc: '2.0', id: 'three', result: { content: [{ type: 'text', text: '3' }] } },
    ]);
  });

  it('answers a POST as an event stream when the client accepts one', async () => {
    const session = await handSession(tokens.legacy!);
    const response = await mcpPost('legacy', tokens.legacy!, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'add', arguments: { a: 20, b: 22 } } }, {
      'mcp-session-id': session, accept: 'application/json, text/event-stream',
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(await response.text()).toBe(`event: message\ndata: ${JSON.stringify({ result: { content: [{ type: 'text', text: '42' }] }, jsonrpc: '2.0', id: 5 })}\n\n`);
  });

  it('delivers server messages on the GET stream, kept until it opens', async () => {
    const session = await handSession(tokens.legacy!);
    await mcpPost('legacy', tokens.legacy!, { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'notify', arguments: { message: 'kept' } } }, { 'mcp-session-id': session });
    const controller = new AbortController();
    const stream = await fetch(`${gateway.origin}/legacy/mcp`, {
      headers: { authorization: `Bearer ${tokens.legacy}`, accept: 'text/event-stream', 'mcp-session-id': session },
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    const { value } = await stream.body!.getReader().read();
    expect(new TextDecoder().decode(value)).toContain('"data":"kept"');
    controller.abort();
  });

  it('needs a session after initialize, answers 404 for unknown, ended and other accounts\' sessions', async () => {
    const list = { jsonrpc: '2.0', id: 9, method: 'tools/list' };
    const missing = await mcpPost('legacy', tokens.legacy!, list);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ id: 9, error: { code: -32600 } });
    expect((await mcpPost('legacy', tokens.legacy!, list, { 'mcp-session-id': 'made-up' })).status).toBe(404);

    const session = await handSession(tokens.legacy!);
    const hijack = await mcpPost('legacy', tokens.bob!, list, { 'mcp-session-id': session });
    expect(hijack.status).toBe(404);
    expect(await hijack.json()).toEqual({ jsonrpc: '2.0', id: 9, error: { code: -32004, message: 'the session has ended; initialize a new one' } });
    expect((await mcpPost('legacy', tokens.legacy!, list, { 'mcp-session-id': session })).status).toBe(200);

    const before = transports.size;
    const deleted = await fetch(`${gateway.origin}/legacy/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${tokens.legacy}`, 'mcp-session-id': session } });
    expect(deleted.status).toBe(204);
    await until(() => transports.size === before - 1);
    expect((await mcpPost('legacy', tokens.legacy!, list, { 'mcp-session-id': session })).status).toBe(404);
  });

  it('ends the session when the server ends its stream, so the client initializes again', async () => {
    const ids = new Set(transports.keys());
    const session = await handSession(tokens.legacy!);
    const upstream = [...transports.entries()].find(([id]) => !ids.has(id))![1];
    await upstream.close();
    // The end reaches the gateway as the stream closes: poll briefly rather than race it.
    let status = 0;
    for (let i = 0; i < 40 && status !== 404; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 25));
      status = (await mcpPost('legacy', tokens.legacy!, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': session })).status;
    }
    expect(status).toBe(404);
  });

  it('answers 502 for a server that is down, opens no event stream, or names another origin', async () => {
    for (const service of ['down', 'notsse', 'elsewhere']) {
      const response = await mcpPost(service, tokens[service]!, initialize(7));
      expect(response.status, service).toBe(502);
      expect(await response.json(), service).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32010 } });
    }
  });

  it('still checks the bearer first', async () => {
    const response = await fetch(`${gateway.origin}/legacy/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(initialize()) });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('resource_metadata=');
  });
});
