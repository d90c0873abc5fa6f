/**
 * Graceful shutdown of the real command line (`gatehouse serve`) on SIGTERM: a request under
 * way gets its whole answer, an open event stream ends cleanly (the client sees an end, not a
 * reset), new connections are refused, and the process exits 0 within `shutdown.grace_seconds`;
 * requests that outlast the deadline are ended (event streams cleanly) and the process still
 * exits at once after it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, testEncryptionKey } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { killAll, startCli, type CliProcess } from './cli-process.ts';

const stdioServer = fileURLToPath(new URL('../support/stdio-test-server.ts', import.meta.url));
let dir: string;
let upstream: Server;
let upstreamUrl: string;
/** POSTs the upstream has received, so a test signals only once its request is under way. */
let received = 0;
const streams = new Set<ServerResponse>();

/**
 * `/json?ms=N`: answers a POST with JSON after N ms. `/events`: a POST answered with an event
 * stream that sends one event and then nothing (a long tool call). GET: a notification stream.
 */
function startUpstream(): Promise<void> {
  upstream = createServer((req, res) => {
    req.resume();
    const url = new URL(req.url ?? '/', 'http://upstream');
    if (req.method === 'GET' || url.pathname === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('id: 1\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n');
      streams.add(res);
      if (req.method === 'POST') received++;
      return;
    }
    received++;
    setTimeout(() => {
      if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{"done":true}}');
    }, Number(url.searchParams.get('ms') ?? 0));
  });
  return new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => {
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    resolve();
  }));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-shutdown-'));
  await startUpstream();
});

afterEach(() => killAll());

afterAll(() => {
  for (const res of streams) res.destroy();
  upstream?.closeAllConnections();
  upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startGateway(graceSeconds: number, upstreamPath: string): Promise<{ cli: CliProcess; origin: string; token: string }> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const path = join(dir, `grace-${graceSeconds}.yaml`);
  writeFileSync(path, `public_url: ${origin}
listen: { host: 127.0.0.1, port: ${port} }
store: { type: memory }
secrets: { encryption_key: "${testEncryptionKey()}" }
identity_providers: [{ id: dev, type: dev }]
access: { allow: { users: ["*"] } }
shutdown: { grace_seconds: ${graceSeconds} }
services:
  slow: { upstream: "${upstreamUrl}${upstreamPath}" }
  events: { upstream: "${upstreamUrl}/events" }
  stdio: { command: ["${process.execPath.replace(/\\/g, '/')}", "${stdioServer}"] }
`);
  const cli = startCli(['serve', '--config', path]);
  await cli.waitForOutput(/"msg":"gatehouse ready"/);
  const gateway = { issuer: `${origin}/`, listenUrl: origin };
  const flow = await runCodeFlow(gateway, { params: { resource: `${origin}/slow/mcp` } });
  const slowToken = await redeem(gateway, flow);
  const eventsFlow = await runCodeFlow(gateway, { params: { resource: `${origin}/events/mcp` } });
  const eventsToken = await redeem(gateway, eventsFlow);
  const stdioFlow = await runCodeFlow(gateway, { params: { resource: `${origin}/stdio/mcp` } });
  const stdioToken = await redeem(gateway, stdioFlow);
  return { cli, origin, token: [slowToken, eventsToken, stdioToken].map((answer) => String(answer.body.access_token)).join(' ') };
}

function mcp(origin: string, service: string, token: string, method: 'GET' | 'POST', extra: { body?: string; session?: string } = {}): Promise<Response> {
  return fetch(`${origin}/${service}/mcp`, {
    method,
    headers: {
      authorization: `Bearer ${token}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json',
      ...(extra.session ? { 'mcp-session-id': extra.session, 'mcp-protocol-version': '2025-06-18' } : {}),
    },
    ...(method === 'POST' ? { body: extra.body ?? '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}' } : {}),
  });
}

/** Initializes an MCP session with the stdio service; its session id. */
async function stdioSession(origin: string, token: string): Promise<string> {
  const initialize = await mcp(origin, 'stdio', token, 'POST', {
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'shutdown-test', version: '0' } } }),
  });
  expect(initialize.status).toBe(200);
  await initialize.text();
  const session = initialize.headers.get('mcp-session-id') ?? '';
  expect(session).not.toBe('');
  await (await mcp(origin, 'stdio', token, 'POST', { session, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' })).text();
  return session;
}

/** Reads a body to its end: 'end' when it ended normally, else the error's cause (a reset). */
async function readToEnd(response: Response): Promise<{ text: string; how: string }> {
  const reader = response.body!.getReader();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { text, how: 'end' };
      text += Buffer.from(value).toString('utf8');
    }
  } catch (error) {
    return { text, how: String((error as { cause?: { code?: string } }).cause?.code ?? error) };
  }
}

async function untilReceived(count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (received < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(received).toBeGreaterThanOrEqual(count);
}

describe('graceful shutdown on SIGTERM', () => {
  it('finishes the request under way, ends event streams cleanly, refuses new connections and exits 0', async () => {
    const { cli, origin, token } = await startGateway(5, '/json?ms=1500');
    const [slowToken = '', eventsToken = '', stdioToken = ''] = token.split(' ');
    const session = await stdioSession(origin, stdioToken);
    const stdioCall = mcp(origin, 'stdio', stdioToken, 'POST', { session }).then(readToEnd);
    const stream = await mcp(origin, 'events', eventsToken, 'GET');
    expect(stream.status).toBe(200);
    const streamRead = readToEnd(stream);
    const before = received;
    const call = mcp(origin, 'slow', slowToken, 'POST');
    await untilReceived(before + 1);

    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    // The idle GET stream ends at once, and cleanly.
    const ended = await streamRead;
    expect(ended.how).toBe('end');
    expect(ended.text).toContain('notifications/message');
    expect(Date.now() - signalled).toBeLessThan(1000);
    // No new connections while the slow call finishes.
    await expect(fetch(`${origin}/health`)).rejects.toThrow();

    const answer = await call;
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ jsonrpc: '2.0', id: 1, result: { done: true } });
    // A call to a stdio server under way is answered before its process is stopped.
    const stdioAnswer = await stdioCall;
    expect(stdioAnswer.how).toBe('end');
    expect(stdioAnswer.text).toContain('slow done');
    expect(await cli.exited).toBe(0);
    // Well before the 5 s deadline: it waited for the call (1.5 s), not for the grace period.
    expect(Date.now() - signalled).toBeLessThan(4000);
    expect(cli.stdout()).toMatch(/"event":"shutdown.drained","how":"closed"/);
  });

  it('ends what outlasts a short deadline (event streams cleanly) and still exits promptly', async () => {
    const { cli, origin, token } = await startGateway(1, '/json?ms=20000');
    const [slowToken = '', eventsToken = ''] = token.split(' ');
    const before = received;
    const hung = mcp(origin, 'slow', slowToken, 'POST').then((response) => response.status, (error: unknown) => String((error as { cause?: { code?: string } }).cause?.code ?? error));
    const streamed = await mcp(origin, 'events', eventsToken, 'POST');
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const streamRead = readToEnd(streamed);
    await untilReceived(before + 2);

    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    // A tool call answered as a stream runs until the deadline, then ends cleanly.
    const ended = await streamRead;
    expect(ended.how).toBe('end');
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(900);
    expect(await cli.exited).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(3500);
    // The plain call that never got its answer was cut with its connection.
    expect(await hung).not.toBe(200);
    expect(cli.stdout()).toMatch(/"event":"shutdown.deadline"/);
  });
});
