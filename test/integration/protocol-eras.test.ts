/**
 * Both eras of MCP over HTTP through the gateway: 2025-03-26 … 2025-11-25 (initialize,
 * `Mcp-Session-Id`, GET streams) and 2026-07-28 (stateless requests with `Mcp-Method` and
 * `Mcp-Name`, no sessions, 405 to GET). The gateway passes versions, headers and bodies as they
 * are: it never rewrites a protocol version.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { createTestMcpServer } from '../support/test-mcp-server.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

const VERSIONS = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25', '2026-07-28'];

let gateway: TestGateway;
let recorder: Server;
let sdkStateless: Server;
const seen: Seen[] = [];
const sdkSeen: Array<{ method: string; status: number }> = [];
const tokens: Record<string, string> = {};

/**
 * Records each request as received. `/stateful` acts as a 2025 server (a session id on the
 * initialize answer, an event stream on GET); `/stateless` as a 2026-07-28 one (405 to GET and
 * DELETE). Both answer a POST with its own protocol version and body echoed.
 */
function startRecorder(): Server {
  return createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => { body += String(chunk); });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const stateless = req.url === '/stateless';
      if (req.method !== 'POST') {
        if (stateless) return void res.writeHead(405, { allow: 'POST', 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Method not allowed."}}');
        if (req.method === 'GET') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return void res.end('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
        }
        return void res.writeHead(200).end();
      }
      const message = JSON.parse(body) as { id: unknown; method: string; params?: { protocolVersion?: string } };
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (!stateless && message.method === 'initialize') headers['mcp-session-id'] = 'session-from-server';
      if (req.headers['mcp-protocol-version']) headers['mcp-protocol-version'] = String(req.headers['mcp-protocol-version']);
      const result = message.method === 'initialize'
        ? { protocolVersion: message.params?.protocolVersion, capabilities: {}, serverInfo: { name: 'recorder', version: '1' } }
        : { echoed: message.method };
      res.writeHead(200, headers).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
    });
  });
}

/** The SDK's Streamable HTTP server in its stateless mode: a fresh server per POST, 405 to GET and DELETE. */
function startSdkStateless(): Server {
  return createServer((req, res) => {
    if (req.method !== 'POST') {
      sdkSeen.push({ method: req.method ?? '', status: 405 });
      return void res.writeHead(405, { allow: 'POST' }).end();
    }
    sdkSeen.push({ method: 'POST', status: 200 });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const server = createTestMcpServer();
    res.on('close', () => { void transport.close(); void server.close(); });
    void server.connect(transport).then(() => transport.handleRequest(req, res));
  });
}

async function tokenFor(service: string, scope?: string): Promise<string> {
  const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/${service}/mcp`, ...(scope ? { scope } : {}) } });
  const response = await redeem(gateway, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

function send(service: string, method: string, headers: Record<string, string>, body?: string) {
  return fetch(`${gateway.origin}/${service}/mcp`, {
    method,
    headers: { authorization: `Bearer ${tokens[service]}`, accept: 'application/json, text/event-stream', ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body ? { body } : {}),
  });
}

beforeAll(async () => {
  recorder = startRecorder();
  sdkStateless = startSdkStateless();
  await Promise.all([recorder, sdkStateless].map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  const portOf = (server: Server) => (server.address() as { port: number }).port;
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: {
      stateful: { upstream: `http://127.0.0.1:${portOf(recorder)}/stateful` },
      stateless: { upstream: `http://127.0.0.1:${portOf(recorder)}/stateless`, scopes: ['tools.read', 'tools.call'], method_scopes: { 'tools/call': 'tools.call' } },
      sdk: { upstream: `http://127.0.0.1:${portOf(sdkStateless)}/mcp` },
    },
  });
  for (const service of ['stateful', 'stateless', 'sdk']) tokens[service] = await tokenFor(service);
  tokens.statelessRead = await tokenFor('stateless', 'tools.read');
});

afterAll(async () => {
  await gateway?.close();
  for (const server of [recorder, sdkStateless]) {
    server?.closeAllConnections();
    server?.close();
  }
});

describe('protocol versions pass unchanged', () => {
  it.each(VERSIONS)('%s: the MCP-Protocol-Version header and the body reach the server as sent, and the answer comes back as given', async (version) => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: `init-${version}`, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'era', version: '0' } } });
    const response = await send('stateful', 'POST', { 'mcp-protocol-version': version }, body);
    expect(response.status).toBe(200);
    const received = seen.at(-1)!;
    expect(received.headers['mcp-protocol-version']).toBe(version);
    expect(received.body).toBe(body);
    expect(response.headers.get('mcp-protocol-version')).toBe(version);
    expect(await response.json()).toMatchObject({ id: `init-${version}`, result: { protocolVersion: version } });
  });
});

describe('2025 era: sessions and GET streams', () => {
  it('returns the server\'s session id, forwards it on later requests, and opens the GET stream', async () => {
    const init = await send('stateful', 'POST', {}, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18' } }));
    expect(init.headers.get('mcp-session-id')).toBe('session-from-server');
    await send('stateful', 'POST', { 'mcp-session-id': 'session-from-server', 'mcp-protocol-version': '2025-06-18' }, '{"jsonrpc":"2.0","id":2,"method":"tools/list"}');
    expect(seen.at(-1)!.headers['mcp-session-id']).toBe('session-from-server');
    const stream = await send('stateful', 'GET', { 'mcp-session-id': 'session-from-server', accept: 'text/event-stream' });
    expect(stream.status).toBe(200);
    expect(await stream.text()).toContain('notifications/tools/list_changed');
  });
});

describe('2026-07-28 era: stateless requests', () => {
  it('passes Mcp-Method, Mcp-Name, Mcp-Param-* and the version header intact, without a session', async () => {
    const body = JSON.stringify({
      jsonrpc: '2.0', id: 11, method: 'tools/call',
      params: { name: 'add', arguments: { a: 1, b: 2 }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } },
    });
    const response = await send('stateless', 'POST', {
      'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'add', 'mcp-param-region': 'eu-west',
    }, body);
    expect(response.status).toBe(200);
    expect(response.headers.get('mcp-session-id')).toBeNull();
    const received = seen.at(-1)!;
    expect(received.url).toBe('/stateless');
    expect(received.body).toBe(body);
    expect(received.headers['mcp-protocol-version']).toBe('2026-07-28');
    expect(received.headers['mcp-method']).toBe('tools/call');
    expect(received.headers['mcp-name']).toBe('add');
    expect(received.headers['mcp-param-region']).toBe('eu-west');
    expect(received.headers['mcp-session-id']).toBeUndefined();
    expect(await response.json()).toEqual({ jsonrpc: '2.0', id: 11, result: { echoed: 'tools/call' } });
  });

  it('passes the server\'s 405 to GET and DELETE through, with its Allow header', async () => {
    for (const method of ['GET', 'DELETE']) {
      const response = await send('stateless', method, { 'mcp-protocol-version': '2026-07-28', accept: 'text/event-stream' });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow'), method).toBe('POST');
      expect(seen.at(-1)!.method).toBe(method);
    }
  });

  it('decides scopes from the body, not from an Mcp-Method header that says otherwise', async () => {
    const response = await fetch(`${gateway.origin}/stateless/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tokens.statelessRead}`, 'content-type': 'application/json', accept: 'application/json',
        'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 12, method: 'tools/call', params: { name: 'add' } }),
    });
    expect(response.status).toBe(403);
    expect(response.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
  });
});

describe('the MCP SDK client with a stateless SDK server', () => {
  it('initializes, lists and calls tools; the server\'s 405 to the GET stream reaches the client, which carries on', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/sdk/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${tokens.sdk}` } },
    });
    const client = new Client({ name: 'sdk-stateless', version: '1' });
    await client.connect(transport);
    expect(transport.sessionId).toBeUndefined();
    expect(transport.protocolVersion).toBe(LATEST_PROTOCOL_VERSION);
    expect((await client.listTools()).tools.length).toBe(5);
    expect(await client.callTool({ name: 'add', arguments: { a: 4, b: 5 } })).toEqual({ content: [{ type: 'text', text: '9' }] });
    expect(sdkSeen).toContainEqual({ method: 'GET', status: 405 });
    await client.close();
  });
});
