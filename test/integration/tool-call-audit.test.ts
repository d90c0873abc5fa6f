/**
 * The audit trail of MCP tool calls: one `tool.called` line per call, on every transport
 * (Streamable HTTP, stdio, legacy HTTP+SSE, WebSocket), with who, which client, which service,
 * which tool, how it ended and how long it took; arguments only where the service opts in,
 * redacted; never a token or a session id.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { WebSocketClientTransport } from '@modelcontextprotocol/sdk/client/websocket.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { startDemoServer } from '../../src/demo/index.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { createTestMcpServer } from '../support/test-mcp-server.ts';
import { startWebSocketServer, WebSocketServerTransport, withWebSocketHeaders, type RecordingWebSocketServer } from '../support/websocket-mcp.ts';

const fixture = fileURLToPath(new URL('../support/stdio-test-server.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tool-audit-'));
const auditFile = join(dir, 'audit.log');

let gateway: TestGateway;
let demo: Awaited<ReturnType<typeof startDemoServer>>;
let legacy: Server;
let ws: RecordingWebSocketServer;
const tokens: Record<string, string> = {};
const clientIds: Record<string, string> = {};
const sessions: string[] = [];
const clients: Client[] = [];

/** A 2024-11-05 HTTP+SSE server: the SDK's SSEServerTransport, one McpServer per stream. */
function startLegacyServer(): Server {
  const transports = new Map<string, SSEServerTransport>();
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://legacy');
    if (req.method === 'GET' && url.pathname === '/sse') {
      const transport = new SSEServerTransport('/messages', res);
      transports.set(transport.sessionId, transport);
      void createTestMcpServer().connect(transport);
      return;
    }
    const transport = transports.get(url.searchParams.get('sessionId') ?? '');
    if (req.method !== 'POST' || !transport) return void res.writeHead(404).end();
    void transport.handlePostMessage(req, res);
  });
}

async function tokenFor(service: string): Promise<void> {
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/${service}/mcp` } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  tokens[service] = String(response.body.access_token);
  clientIds[service] = flow.client.client_id;
}

async function connect(service: string): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/${service}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${tokens[service]}` } },
  });
  const client = new Client({ name: 'tool-audit-test', version: '1' });
  await client.connect(transport);
  clients.push(client);
  if (transport.sessionId) sessions.push(transport.sessionId);
  return client;
}

function postCall(service: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${gateway.origin}/${service}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${tokens[service]}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream',
      'mcp-protocol-version': LATEST_PROTOCOL_VERSION, ...headers,
    },
    body: JSON.stringify(body),
    signal,
  });
}

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
  legacy = startLegacyServer();
  await new Promise<void>((resolve) => legacy.listen(0, '127.0.0.1', resolve));
  ws = await startWebSocketServer((socket) => {
    void createTestMcpServer().connect(new WebSocketServerTransport(socket));
  });
  const closedPort = await freePort();
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    services: {
      demo: { upstream: demo.url },
      shown: { upstream: demo.url, audit: { tool_arguments: true, redact: ['text'] } },
      down: { upstream: `http://127.0.0.1:${closedPort}/mcp`, timeout_ms: 1000 },
      local: { command: [process.execPath, fixture] },
      legacy: { upstream: `http://127.0.0.1:${(legacy.address() as { port: number }).port}/sse`, transport: 'sse' },
      socket: { upstream: ws.url },
      scoped: { upstream: demo.url, scopes: ['tools.read', 'tools.call'], method_scopes: { 'tools/call': 'tools.call' } },
    },
    log: { level: 'info', audit_file: auditFile },
  });
  for (const service of ['demo', 'shown', 'down', 'local', 'legacy', 'socket']) await tokenFor(service);
  // A token without the scope that tools/call needs on this service.
  const scopedFlow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/scoped/mcp`, scope: 'tools.read' } });
  tokens.scoped = String((await redeem(gateway, scopedFlow)).body.access_token);
}, 30_000);

afterAll(async () => {
  await Promise.allSettled(clients.map((client) => client.close()));
  await gateway?.close();
  await demo?.close();
  await ws?.close();
  legacy?.closeAllConnections();
  legacy?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the tool-call audit trail', () => {
  it('records every call on every transport with its outcome, and arguments only where opted in', { timeout: 30_000 }, async () => {
    // Streamable HTTP: a result, tool errors (bad arguments, unknown tool), a JSON-RPC error.
    const client = await connect('demo');
    expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).toMatchObject({ content: [{ text: '5' }] });
    expect(await client.callTool({ name: 'add', arguments: { a: 'two', b: 3 } })).toMatchObject({ isError: true });
    expect(await client.callTool({ name: 'nope', arguments: {} })).toMatchObject({ isError: true });
    const sessionless = await postCall('demo', { jsonrpc: '2.0', id: 'no-session', method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } });
    expect(sessionless.status).toBe(400);
    await sessionless.text();

    // Refused by method_scopes before it reaches the server: still a line, `denied`.
    const refused = await postCall('scoped', { jsonrpc: '2.0', id: 'no-scope', method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 1 } } });
    expect(refused.status).toBe(403);
    await refused.text();

    // The client leaves in the middle of a streamed call.
    const session = sessions.at(-1)!;
    const abort = new AbortController();
    const streaming = await postCall('demo', {
      jsonrpc: '2.0', id: 'slow', method: 'tools/call', params: { name: 'countdown', arguments: { from: 50, interval_ms: 100 } },
    }, { 'mcp-session-id': session }, abort.signal);
    expect(streaming.headers.get('content-type')).toMatch(/event-stream/);
    await streaming.body!.getReader().read();
    abort.abort();

    // A service that opts in to arguments, with its own redaction on top of the built-in one.
    const shown = await connect('shown');
    await shown.callTool({ name: 'add', arguments: { a: 1, b: 2, api_key: 'sk-live-123', nested: { Password: 'hunter2', keep: 'visible' } } });
    await shown.callTool({ name: 'echo', arguments: { text: 'top secret text' } });

    // A server that is down.
    const down = await postCall('down', { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'anything', arguments: {} } });
    expect(down.status).toBe(502);
    await down.text();

    // stdio: a result, a tool error, and a process that dies in the middle of a call.
    const local = await connect('local');
    await local.callTool({ name: 'whoami', arguments: {} });
    expect(await local.callTool({ name: 'unknown-tool', arguments: {} })).toMatchObject({ isError: true });
    await expect(local.callTool({ name: 'crash', arguments: {} })).rejects.toThrow();

    // Legacy HTTP+SSE and WebSocket.
    const old = await connect('legacy');
    expect(await old.callTool({ name: 'add', arguments: { a: 4, b: 4 } })).toMatchObject({ content: [{ text: '8' }] });
    const socketClient = new Client({ name: 'tool-audit-ws', version: '1' });
    clients.push(socketClient);
    await withWebSocketHeaders({ authorization: `Bearer ${tokens.socket}` }, () => socketClient.connect(new WebSocketClientTransport(new URL(`${gateway.origin.replace('http', 'ws')}/socket/mcp`))));
    expect(await socketClient.callTool({ name: 'add', arguments: { a: 1, b: 1 } })).toMatchObject({ content: [{ text: '2' }] });

    await new Promise((resolve) => setTimeout(resolve, 200)); // the cancelled call's close reaches the gateway
    await Promise.allSettled(clients.map((each) => each.close()));
    await gateway.close();

    const text = readFileSync(auditFile, 'utf8');
    const calls = text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === 'tool.called');
    const summary = calls.map((line) => [line.service, line.transport, line.tool, line.outcome]);
    expect(summary).toEqual(expect.arrayContaining([
      ['demo', 'streamable-http', 'add', 'ok'],
      ['demo', 'streamable-http', 'add', 'tool_error'],
      ['demo', 'streamable-http', 'nope', 'tool_error'],
      ['demo', 'streamable-http', 'echo', 'rpc_error'],
      ['demo', 'streamable-http', 'countdown', 'cancelled'],
      ['shown', 'streamable-http', 'add', 'ok'],
      ['shown', 'streamable-http', 'echo', 'ok'],
      ['down', 'streamable-http', 'anything', 'upstream_error'],
      ['local', 'stdio', 'whoami', 'ok'],
      ['local', 'stdio', 'unknown-tool', 'tool_error'],
      ['local', 'stdio', 'crash', 'upstream_error'],
      ['legacy', 'sse', 'add', 'ok'],
      ['socket', 'websocket', 'add', 'ok'],
      ['scoped', 'streamable-http', 'add', 'denied'],
    ]));
    expect(calls).toHaveLength(14);
    expect(calls.find((line) => line.outcome === 'denied')).toMatchObject({ rpc_id: 'no-scope', status: 403, account: 'dev:alice@example.com' });

    const first = calls.find((line) => line.service === 'demo' && line.outcome === 'ok')!;
    expect(first).toMatchObject({
      stream: 'audit', account: 'dev:alice@example.com', email: 'alice@example.com', client: clientIds.demo, status: 200,
      request_id: expect.any(String), rpc_id: expect.anything(), session: expect.stringMatching(/^[0-9a-f]{16}$/), duration_ms: expect.any(Number),
    });
    expect(calls.find((line) => line.outcome === 'rpc_error')).toMatchObject({ rpc_id: 'no-session', status: 400, error_code: expect.any(Number) });
    expect(calls.find((line) => line.service === 'down')).toMatchObject({ rpc_id: 9, status: 502 });
    expect(calls.find((line) => line.tool === 'crash')).toMatchObject({ error_code: -32010 });

    // Arguments: absent by default, shown and redacted where the service opts in.
    for (const line of calls.filter((each) => each.service !== 'shown')) expect(line).not.toHaveProperty('arguments');
    expect(calls.find((line) => line.service === 'shown' && line.tool === 'add')?.arguments)
      .toEqual({ a: 1, b: 2, api_key: '[redacted]', nested: { Password: '[redacted]', keep: 'visible' } });
    expect(calls.find((line) => line.service === 'shown' && line.tool === 'echo')?.arguments).toEqual({ text: '[redacted]' });

    for (const secret of [...Object.values(tokens), ...sessions, 'sk-live-123', 'hunter2', 'top secret text']) expect(text).not.toContain(secret);
  });
});
