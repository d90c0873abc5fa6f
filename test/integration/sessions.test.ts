/**
 * MCP sessions belong to the user who opened them (MCP basic/security_best_practices, session
 * hijacking), across two replicas of the gateway on one store (SQLite file), as behind a load
 * balancer:
 *
 *   Streamable HTTP upstream   the owner of each `Mcp-Session-Id` the server issues is recorded
 *                              in the store: the owner's requests work on either replica, anyone
 *                              else's get 404, and so does an id the server never issued through
 *                              the gateway or one that DELETE ended
 *   stdio bridge               the process lives on the replica that started it: elsewhere the
 *                              session is not found (404), so the client initializes again
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { freePort, startTestGateway, testEncryptionKey, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { createTestMcpServer } from '../support/test-mcp-server.ts';

const fixture = fileURLToPath(new URL('../support/stdio-test-server.ts', import.meta.url));

let dir: string;
let upstream: Server;
/** Session ids the upstream issued, and the requests it received for each. */
const upstreamSessions = new Map<string, StreamableHTTPServerTransport>();
let first: TestGateway;
let second: TestGateway;
const tokens: Record<string, string> = {};

/** A stateful Streamable HTTP server: the SDK's transport, one McpServer per session. */
function startUpstream(): Server {
  return createServer(async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    const known = typeof sessionId === 'string' ? upstreamSessions.get(sessionId) : undefined;
    if (known) return known.handleRequest(req, res);
    if (sessionId !== undefined) return void res.writeHead(404).end();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void upstreamSessions.set(id, transport),
    });
    transport.onclose = () => void upstreamSessions.delete(transport.sessionId ?? '');
    await createTestMcpServer().connect(transport);
    await transport.handleRequest(req, res);
  });
}

async function tokenFor(service: string, email: string): Promise<string> {
  const flow = await runCodeFlow(first, { user: { email }, params: { resource: `${first.origin}/${service}/mcp` } });
  const response = await redeem(first, flow);
  if (response.status !== 200) throw new Error(`token: ${JSON.stringify(response.body)}`);
  return String(response.body.access_token);
}

/** A raw MCP POST to one replica. */
function post(replica: TestGateway, service: string, token: string, body: unknown, sessionId?: string) {
  return fetch(`${replica.listenUrl}/${service}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18',
      ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
    },
    body: JSON.stringify(body),
  });
}

const listTools = { jsonrpc: '2.0', id: 7, method: 'tools/list' };
const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'by-hand', version: '0' } } };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-sessions-'));
  upstream = startUpstream();
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const shared = {
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: {
      tools: { upstream: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/mcp` },
      local: { command: [process.execPath, fixture] },
    },
    store: { type: 'sqlite', path: join(dir, 'gatehouse.db') },
    secrets: { encryption_key: testEncryptionKey() },
  };
  first = await startTestGateway(shared, { port: await freePort() });
  // The second replica: same public URL (issuer), store and keys, listening elsewhere.
  second = await startTestGateway({ ...shared, public_url: first.origin });
  for (const [name, service, email] of [['alice', 'tools', 'alice@example.com'], ['bob', 'tools', 'bob@example.com'], ['aliceLocal', 'local', 'alice@example.com']] as const) {
    tokens[name] = await tokenFor(service, email);
  }
});

afterAll(async () => {
  await second?.close();
  await first?.close();
  upstream?.closeAllConnections();
  upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a Streamable HTTP upstream\'s sessions', () => {
  it('serve their owner on every replica and nobody else', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${first.origin}/tools/mcp`), { requestInit: { headers: { authorization: `Bearer ${tokens.alice}` } } });
    const client = new Client({ name: 'alice', version: '1' });
    await client.connect(transport);
    const sessionId = transport.sessionId as string;
    expect(upstreamSessions.has(sessionId)).toBe(true);
    expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })).toMatchObject({ content: [{ type: 'text', text: '5' }] });

    // Alice's next request lands on the other replica: it knows the session's owner from the store.
    const elsewhere = await post(second, 'tools', tokens.alice!, listTools, sessionId);
    expect(elsewhere.status).toBe(200);
    expect(await elsewhere.text()).toContain('"name":"add"');

    // Bob presents Alice's session id, on either replica: not found, as if it did not exist.
    for (const replica of [first, second]) {
      const hijack = await post(replica, 'tools', tokens.bob!, listTools, sessionId);
      expect(hijack.status).toBe(404);
      expect(await hijack.json()).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32004, message: 'session not found: initialize a new session' } });
    }
    expect(first.logs.some((line) => line.event === 'session.foreign' && line.account === 'dev:bob@example.com')).toBe(true);

    // An id the server never issued through the gateway is not passed on either.
    const guessed = await post(first, 'tools', tokens.alice!, listTools, 'guessed-session-id');
    expect(guessed.status).toBe(404);

    // DELETE ends the session, and the gateway forgets it.
    await transport.terminateSession();
    expect(upstreamSessions.has(sessionId)).toBe(false);
    expect((await post(second, 'tools', tokens.alice!, listTools, sessionId)).status).toBe(404);
    await client.close();
  });
});

describe('a stdio service\'s sessions', () => {
  it('are found only on the replica that runs their process; elsewhere 404 tells the client to initialize again', async () => {
    const opened = await post(first, 'local', tokens.aliceLocal!, initialize);
    expect(opened.status).toBe(200);
    const sessionId = opened.headers.get('mcp-session-id') as string;
    await opened.text();
    expect((await post(first, 'local', tokens.aliceLocal!, listTools, sessionId)).status).toBe(200);

    const elsewhere = await post(second, 'local', tokens.aliceLocal!, listTools, sessionId);
    expect(elsewhere.status).toBe(404);
    expect(await elsewhere.json()).toEqual({
      jsonrpc: '2.0', id: 7,
      error: { code: -32004, message: 'session not found: it ended, timed out, or was started on another gateway replica; initialize a new session' },
    });
  });
});
