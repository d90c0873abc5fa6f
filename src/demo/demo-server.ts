/**
 * The demo MCP server that `gatehouse dev` runs as the service `demo`: a small, real MCP
 * server (the reference SDK's McpServer over Streamable HTTP) whose tools make the gateway's
 * work visible — `whoami` shows the identity headers that reached it, `countdown` streams
 * notifications over time so unbuffered proxying can be seen.
 *
 * Streamable HTTP (MCP 2025-06-18 "Transports"): POST /mcp for messages, GET /mcp for the
 * session's server-to-client SSE stream, DELETE /mcp to end a session. Sessions are stateful:
 * one McpServer per session, keyed by the `Mcp-Session-Id` the transport assigns.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

export interface DemoServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (random). */
  port?: number;
}

export interface DemoServer {
  /** The MCP endpoint, e.g. http://127.0.0.1:PORT/mcp */
  url: string;
  /** Ends every session and stops listening. */
  close(): Promise<void>;
}

/** What `whoami` reports: the identity headers the gateway set, as received. */
export interface DemoIdentity {
  user_id: string | null;
  email: string | null;
  name: string | null;
  /** X-User-Groups split on commas. */
  groups: string[];
  provider: string | null;
  client_id: string | null;
  /** Must be false behind the gateway: the client's token is never forwarded. */
  authorization_header_present: boolean;
  /** Names of every request header received (lower case, sorted), values omitted. */
  header_names: string[];
}

type Headers = Record<string, string | string[] | undefined>;

const MCP_PATH = '/mcp';
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const README = `# Gatehouse demo server

A small MCP server that runs behind the gateway in dev mode.

- \`whoami\`: the identity the gateway forwarded (X-User-* headers).
- \`echo\`: returns its text.
- \`add\`: adds two numbers.
- \`countdown\`: counts down, one notification per tick, to show streaming.
`;

export async function startDemoServer(options: DemoServerOptions = {}): Promise<DemoServer> {
  const host = options.host ?? '127.0.0.1';
  const sessions = new Map<string, StreamableHTTPServerTransport>();

  const server = createServer((req, res) => {
    handleHttp(sessions, req, res).catch((error: unknown) => {
      console.error('demo server: request failed', error);
      if (!res.headersSent) sendJsonRpcError(res, 500, -32603, 'Internal error');
      else res.end();
    });
  });
  const port = await listen(server, host, options.port ?? 0);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}${MCP_PATH}`;

  return {
    url,
    async close() {
      await Promise.allSettled([...sessions.values()].map((transport) => transport.close()));
      sessions.clear();
      await closeServer(server);
    },
  };
}

/** One MCP server per session: McpServer connects to exactly one transport. */
function createDemoMcpServer(): McpServer {
  const mcp = new McpServer(
    { name: 'gatehouse-demo', version: '0.1.0' },
    { capabilities: { logging: {} }, instructions: 'Demo server behind Gatehouse. Try whoami.' },
  );

  mcp.registerTool(
    'whoami',
    {
      title: 'Who am I',
      description: 'Shows the identity the gateway forwarded with this request.',
      annotations: { readOnlyHint: true },
    },
    (extra) => textResult(JSON.stringify(identityFrom(extra.requestInfo?.headers ?? {}), null, 2)),
  );

  mcp.registerTool(
    'echo',
    {
      title: 'Echo',
      description: 'Returns the text it was given.',
      inputSchema: { text: z.string().max(100_000) },
      annotations: { readOnlyHint: true },
    },
    ({ text }) => textResult(text),
  );

  mcp.registerTool(
    'add',
    {
      title: 'Add',
      description: 'Adds two numbers.',
      inputSchema: { a: z.number(), b: z.number() },
      annotations: { readOnlyHint: true },
    },
    ({ a, b }) => textResult(String(a + b)),
  );

  mcp.registerTool(
    'countdown',
    {
      title: 'Countdown',
      description:
        'Counts down from `from` to 1, one tick every `interval_ms`, sending a log message (and a progress ' +
        'notification when the caller asked for progress) on each tick, then returns.',
      inputSchema: {
        from: z.number().int().min(0).max(1000),
        interval_ms: z.number().int().min(0).max(60_000),
      },
      annotations: { readOnlyHint: true },
    },
    async ({ from, interval_ms }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let tick = 1; tick <= from; tick++) {
        const remaining = from - tick + 1;
        // Sent on the stream of this request (relatedRequestId), so it travels in the same
        // SSE response as the result and shows whether a proxy forwards events as they come.
        await extra.sendNotification({
          method: 'notifications/message',
          params: { level: 'info', logger: 'countdown', data: `${remaining}` },
        });
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: tick, total: from, message: `${remaining}` },
          });
        }
        if (tick < from) await sleep(interval_ms, undefined, { signal: extra.signal });
      }
      return textResult(`Liftoff after ${from} ticks.`);
    },
  );

  mcp.registerResource(
    'readme',
    'demo://readme',
    { title: 'About this server', description: 'What the demo server offers.', mimeType: 'text/markdown' },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/markdown', text: README }] }),
  );

  mcp.registerPrompt(
    'greet',
    { title: 'Greet', description: 'A prompt that greets someone by name.', argsSchema: { name: z.string().max(200) } },
    ({ name }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Please greet ${name} warmly.` } }],
    }),
  );

  return mcp;
}

function identityFrom(headers: Headers): DemoIdentity {
  const groups = header(headers, 'x-user-groups');
  return {
    user_id: header(headers, 'x-user-id'),
    email: header(headers, 'x-user-email'),
    name: header(headers, 'x-user-name'),
    groups: groups ? groups.split(',').map((g) => g.trim()).filter(Boolean) : [],
    provider: header(headers, 'x-user-provider'),
    client_id: header(headers, 'x-client-id'),
    authorization_header_present: header(headers, 'authorization') !== null,
    header_names: Object.keys(headers).map((name) => name.toLowerCase()).sort(),
  };
}

function header(headers: Headers, name: string): string | null {
  const value = headers[name];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(', ') : value;
}

function textResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }] };
}

async function handleHttp(
  sessions: Map<string, StreamableHTTPServerTransport>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (path !== MCP_PATH && path !== `${MCP_PATH}/`) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }

  const sessionHeader = req.headers['mcp-session-id'];
  const sessionId = Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader;
  const existing = sessionId === undefined ? undefined : sessions.get(sessionId);

  switch (req.method) {
    case 'POST': {
      const raw = await readBody(req, MAX_BODY_BYTES);
      if (raw === undefined) {
        sendJsonRpcError(res, 413, -32000, 'Request body too large');
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        sendJsonRpcError(res, 400, -32700, 'Parse error');
        return;
      }
      if (existing) {
        await existing.handleRequest(req, res, body);
      } else if (sessionId !== undefined) {
        sendJsonRpcError(res, 404, -32001, 'Session not found');
      } else if (isInitializeRequest(body)) {
        await startSession(sessions, req, res, body);
      } else {
        sendJsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
      }
      return;
    }
    case 'GET':
    case 'DELETE':
      if (sessionId === undefined) sendJsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
      else if (!existing) sendJsonRpcError(res, 404, -32001, 'Session not found');
      else await existing.handleRequest(req, res);
      return;
    default:
      res.writeHead(405, { allow: 'GET, POST, DELETE' }).end();
  }
}

async function startSession(
  sessions: Map<string, StreamableHTTPServerTransport>,
  req: IncomingMessage,
  res: ServerResponse,
  body: unknown,
): Promise<void> {
  const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    // Registered once the transport has answered initialize, so no request can race it.
    onsessioninitialized: (id) => {
      sessions.set(id, transport);
    },
  });
  transport.onclose = () => {
    if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
  };
  await createDemoMcpServer().connect(transport);
  await transport.handleRequest(req, res, body);
}

function sendJsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

/** The body as text, or undefined when it exceeds `limit` bytes (the rest is read and dropped). */
async function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  return size > limit ? undefined : Buffer.concat(chunks).toString('utf8');
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
