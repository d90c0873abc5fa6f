import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer, type DemoIdentity, type DemoServer } from './index.ts';

function text(result: unknown): string {
  const [first] = (result as CallToolResult).content;
  if (first?.type !== 'text') throw new Error(`expected text content, got ${JSON.stringify(result)}`);
  return first.text;
}

describe('demo MCP server', () => {
  let demo: DemoServer;
  const clients: Client[] = [];

  async function connect(headers: Record<string, string> = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const client = new Client({ name: 'demo-server-test', version: '0.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(demo.url), { requestInit: { headers } });
    await client.connect(transport);
    clients.push(client);
    return { client, transport };
  }

  beforeAll(async () => {
    demo = await startDemoServer({});
  });

  afterEach(async () => {
    await Promise.allSettled(clients.splice(0).map((client) => client.close()));
  });

  afterAll(async () => {
    await demo?.close();
  });

  it('listens on loopback at /mcp and lists its tools, resource and prompt', async () => {
    expect(demo.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const { client } = await connect();
    expect(client.getServerVersion()?.name).toBe('gatehouse-demo');

    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['add', 'countdown', 'echo', 'whoami']);

    const readme = await client.readResource({ uri: 'demo://readme' });
    expect(readme.contents[0]).toMatchObject({ uri: 'demo://readme', mimeType: 'text/markdown' });

    const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
    expect(JSON.stringify(prompt.messages)).toContain('Ada');
  });

  it('echo and add validate and answer', async () => {
    const { client } = await connect();
    expect(text(await client.callTool({ name: 'echo', arguments: { text: 'héllo' } }))).toBe('héllo');
    expect(text(await client.callTool({ name: 'add', arguments: { a: 2, b: 40.5 } }))).toBe('42.5');

    const invalid = await client.callTool({ name: 'add', arguments: { a: 'two', b: 1 } });
    expect(invalid.isError).toBe(true);
  });

  it('whoami reports the identity headers it received', async () => {
    const { client } = await connect({
      'X-User-Id': 'u-123',
      'X-User-Email': 'ada@example.com',
      'X-User-Name': 'Ada Lovelace',
      'X-User-Groups': 'eng, admins',
      'X-User-Provider': 'corp',
      'X-Client-Id': 'client-abc',
    });
    const identity = JSON.parse(text(await client.callTool({ name: 'whoami' }))) as DemoIdentity;
    expect(identity).toMatchObject({
      user_id: 'u-123',
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      groups: ['eng', 'admins'],
      provider: 'corp',
      client_id: 'client-abc',
      authorization_header_present: false,
    });
    expect(identity.header_names).toContain('x-user-id');
  });

  it('whoami notices an Authorization header and reports nulls when headers are absent', async () => {
    const { client } = await connect({ Authorization: 'Bearer leaked' });
    const identity = JSON.parse(text(await client.callTool({ name: 'whoami' }))) as DemoIdentity;
    expect(identity).toMatchObject({ user_id: null, email: null, groups: [], authorization_header_present: true });
  });

  it('countdown streams one notification per tick, spread over time, before the result', async () => {
    const { client } = await connect();
    const started = performance.now();
    const logs: Array<{ at: number; data: unknown }> = [];
    const progress: Array<{ at: number; progress: number }> = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      logs.push({ at: performance.now() - started, data: notification.params.data });
    });

    const result = await client.callTool({ name: 'countdown', arguments: { from: 3, interval_ms: 150 } }, undefined, {
      onprogress: (p) => progress.push({ at: performance.now() - started, progress: p.progress }),
    });
    const finished = performance.now() - started;

    expect(text(result)).toContain('3 ticks');
    expect(logs.map((l) => l.data)).toEqual(['3', '2', '1']);
    expect(progress.map((p) => p.progress)).toEqual([1, 2, 3]);
    // Ticks at ~0, ~150 and ~300 ms: the first is seen well before the result, and each
    // arrives when it is sent, not all at once at the end.
    const [first, second, third] = logs.map((l) => l.at) as [number, number, number];
    expect(finished - first).toBeGreaterThan(200);
    expect(second - first).toBeGreaterThan(100);
    expect(third - second).toBeGreaterThan(100);
    expect(finished).toBeGreaterThanOrEqual(290);
  });

  it('serves the GET SSE stream and ends sessions on DELETE (raw HTTP)', async () => {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const initialize = await fetch(demo.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
      }),
    });
    expect(initialize.status).toBe(200);
    await initialize.text();
    const sessionId = initialize.headers.get('mcp-session-id')!;
    expect(sessionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const inSession = { ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
    const initialized = await fetch(demo.url, {
      method: 'POST',
      headers: inSession,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    expect(initialized.status).toBe(202);

    const controller = new AbortController();
    const stream = await fetch(demo.url, {
      headers: { ...inSession, accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
    controller.abort();

    const deleted = await fetch(demo.url, { method: 'DELETE', headers: inSession });
    expect(deleted.status).toBe(200);
    const after = await fetch(demo.url, {
      method: 'POST',
      headers: inSession,
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(after.status).toBe(404);
  });

  it('ends a session the SDK client terminates', async () => {
    const { transport } = await connect();
    const sessionId = transport.sessionId!;
    await transport.terminateSession();
    const after = await fetch(demo.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId } });
    expect(after.status).toBe(404);
  });

  it('refuses requests without a session and bad JSON', async () => {
    const post = (body: string) =>
      fetch(demo.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body,
      });
    expect((await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }))).status).toBe(400);
    const bad = await post('{not json');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: -32700 } });
    expect((await fetch(demo.url.replace('/mcp', '/other'))).status).toBe(404);
  });
});
