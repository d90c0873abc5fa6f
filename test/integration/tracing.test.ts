/**
 * OpenTelemetry tracing: spans of a full OAuth flow and MCP calls, exported by OTLP/HTTP JSON
 * to a collector this test runs; W3C trace context continued from the client and handed to
 * the MCP server; nothing secret in what is exported; and, off, nothing of the SDK loaded.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE, REPO } from '../cli/cli-process.ts';
import { freePort, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { HttpSession } from '../support/http-session.ts';
import { authorizeUrl, pkcePair, redeem, registerClient, runCodeFlow, type CodeFlow, type TokenResponse } from '../support/oauth-flow.ts';
import { signInAtUpstream, startUpstreamIdp } from '../support/upstream-idp.ts';
import { startWebSocketServer, type RecordingWebSocketServer } from '../support/websocket-mcp.ts';
import { WebSocket } from 'ws';

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status?: { code?: number };
}

const SERVER = 2;
const CLIENT = 3;
const INTERNAL = 1;

/** A stand-in OpenTelemetry Collector: keeps every ExportTraceServiceRequest POSTed to /v1/traces. */
async function startCollector() {
  const requests: Array<{ headers: IncomingHttpHeaders; text: string }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body).toString('utf8');
      if (req.method === 'POST' && req.url === '/v1/traces') requests.push({ headers: req.headers, text });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const url = await listen(server);
  return {
    url: `${url}/v1/traces`,
    requests,
    spans(): ExportedSpan[] {
      return requests.flatMap(({ text }) => {
        const body = JSON.parse(text) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: ExportedSpan[] }> }> };
        return body.resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans));
      });
    },
    resourceAttributes(): Record<string, unknown> {
      const first = JSON.parse(requests[0]?.text ?? '{}') as { resourceSpans?: Array<{ resource: { attributes: ExportedSpan['attributes'] } }> };
      return attributesOf(first.resourceSpans?.[0]?.resource.attributes ?? []);
    },
    close: () => close(server),
  };
}

/** An MCP server stand-in that remembers the trace context of each request it gets. */
async function startUpstream() {
  const seen: Array<{ traceparent?: string | undefined; tracestate?: string | undefined }> = [];
  const server = createServer((req, res) => {
    const { traceparent, tracestate } = req.headers;
    seen.push({ traceparent: typeof traceparent === 'string' ? traceparent : undefined, tracestate: typeof tracestate === 'string' ? tracestate : undefined });
    req.resume().on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} }));
    });
  });
  return { url: `${await listen(server)}/mcp`, seen, close: () => close(server) };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

function attributesOf(list: ExportedSpan['attributes']): Record<string, unknown> {
  return Object.fromEntries(list.map(({ key, value }) => [key, value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : value.boolValue ?? value.doubleValue)]));
}

function mcpPost(gateway: TestGateway, path: string, token: string | undefined, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gateway.origin}${path}`, {
    method: 'POST',
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-method': 'tools/list',
      ...headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN_ID = '00f067aa0ba902b7';
const SOCKET_TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

/** Opens a WebSocket through the gateway with these headers, and closes it once open. */
function openAndClose(url: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, ['mcp'], { headers });
    socket.once('open', () => socket.close());
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
}

describe('tracing on', () => {
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let socketServer: RecordingWebSocketServer;
  let gateway: TestGateway;
  let flow: CodeFlow;
  let tokens: TokenResponse;
  let spans: ExportedSpan[];
  const answers: Record<string, number> = {};

  beforeAll(async () => {
    collector = await startCollector();
    upstream = await startUpstream();
    socketServer = await startWebSocketServer(() => undefined);
    const deadPort = await freePort();
    gateway = await startTestGateway({
      identity_providers: [{ id: 'dev', type: 'dev' }],
      access: { allow: { domains: ['example.com'] } },
      services: {
        demo: { upstream: upstream.url, default: true },
        gone: { upstream: `http://127.0.0.1:${deadPort}/mcp?api_key=upstream-key-in-query` },
        socket: { upstream: socketServer.url },
      },
      tracing: { enabled: true, endpoint: collector.url, headers: { Authorization: 'Bearer collector-key' }, service_name: 'gatehouse-test' },
    });
    flow = await runCodeFlow(gateway);
    tokens = await redeem(gateway, flow);
    const token = String(tokens.body.access_token);
    answers.traced = (await mcpPost(gateway, '/demo/mcp', token, { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`, tracestate: 'vendor=opaque' })).status;
    answers.anonymous = (await mcpPost(gateway, '/demo/mcp', undefined)).status;
    const goneFlow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/gone/mcp` } });
    answers.gone = (await mcpPost(gateway, '/gone/mcp', String((await redeem(gateway, goneFlow)).body.access_token))).status;
    const socketFlow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/socket/mcp` } });
    await openAndClose(`${gateway.origin.replace('http:', 'ws:')}/socket/mcp`, {
      authorization: `Bearer ${String((await redeem(gateway, socketFlow)).body.access_token)}`,
      traceparent: `00-${SOCKET_TRACE_ID}-${CLIENT_SPAN_ID}-01`,
    });
    // Closing flushes what is queued.
    await gateway.close();
    spans = collector.spans();
  });

  afterAll(async () => {
    await collector?.close();
    await upstream?.close();
    await socketServer?.close();
  });

  it('traces a WebSocket handshake too, and hands the server the hop\'s context', () => {
    const server = spans.find((span) => span.kind === SERVER && span.traceId === SOCKET_TRACE_ID);
    expect(server).toMatchObject({ name: 'GET /socket/mcp', parentSpanId: CLIENT_SPAN_ID });
    expect(attributesOf(server!.attributes)).toMatchObject({ 'gatehouse.service': 'socket', 'http.response.status_code': 101 });
    const children = spans.filter((span) => span.parentSpanId === server!.spanId);
    expect(children.find((span) => span.name === 'gatehouse.authorize')).toBeDefined();
    const hop = children.find((span) => span.kind === CLIENT);
    expect(hop).toBeDefined();
    expect(socketServer.upgrades[0]?.headers.traceparent).toBe(`00-${SOCKET_TRACE_ID}-${hop!.spanId}-01`);
  });

  it('continues the client trace: server span, the authorization step under it, and the hop to the server', () => {
    expect(answers.traced).toBe(200);
    const server = spans.find((span) => span.kind === SERVER && span.traceId === TRACE_ID);
    expect(server).toBeDefined();
    expect(server).toMatchObject({ name: 'POST /demo/mcp', parentSpanId: CLIENT_SPAN_ID });
    expect(attributesOf(server!.attributes)).toMatchObject({
      'http.request.method': 'POST', 'url.path': '/demo/mcp', 'http.route': '/demo/mcp', 'http.response.status_code': 200,
      'gatehouse.service': 'demo', 'mcp.method.name': 'tools/list',
    });
    const children = spans.filter((span) => span.parentSpanId === server!.spanId);
    const authorize = children.find((span) => span.name === 'gatehouse.authorize');
    expect(authorize).toMatchObject({ kind: INTERNAL, traceId: TRACE_ID });
    expect(attributesOf(authorize!.attributes)).toMatchObject({ 'gatehouse.outcome': 'allowed', 'gatehouse.client_id': flow.client.client_id });
    expect(children.find((span) => span.name === 'gatehouse.upstream_identity')).toBeDefined();
    const hop = children.find((span) => span.kind === CLIENT);
    expect(hop).toMatchObject({ name: 'POST', traceId: TRACE_ID });
    expect(attributesOf(hop!.attributes)).toMatchObject({ 'server.address': '127.0.0.1', 'url.full': upstream.url, 'http.response.status_code': 200 });

    // The server's parent is the hop, not the client's span; the client's tracestate goes on.
    expect(upstream.seen[0]).toEqual({ traceparent: `00-${TRACE_ID}-${hop!.spanId}-01`, tracestate: 'vendor=opaque' });
  });

  it('names the authorization server\'s spans by route, and leaves 4xx unmarked', () => {
    const names = spans.filter((span) => span.kind === SERVER).map((span) => span.name);
    expect(names).toEqual(expect.arrayContaining(['POST /register', 'GET /authorize', 'POST /token', 'GET /interaction/:uid']));
    const interaction = spans.find((span) => span.name === 'GET /interaction/:uid');
    // Route parameters (here the interaction id) stay out of url.path.
    expect(attributesOf(interaction!.attributes)['url.path']).toBe('/interaction/:uid');

    expect(answers.anonymous).toBe(401);
    const refused = spans.find((span) => span.name === 'gatehouse.authorize' && attributesOf(span.attributes)['gatehouse.outcome'] === 'unauthorized');
    expect(refused).toBeDefined();
    const parent = spans.find((span) => span.spanId === refused!.parentSpanId);
    expect(attributesOf(parent!.attributes)['http.response.status_code']).toBe(401);
    expect(parent!.status?.code ?? 0).toBe(0);
  });

  it('marks an unreachable server as an error, on the hop and the request', () => {
    expect(answers.gone).toBe(502);
    const server = spans.find((span) => span.name === 'POST /gone/mcp');
    expect(server?.status?.code).toBe(2);
    const hop = spans.find((span) => span.kind === CLIENT && span.parentSpanId === server!.spanId);
    expect(hop?.status?.code).toBe(2);
    expect(attributesOf(hop!.attributes)).toMatchObject({ 'http.response.status_code': 502, 'error.type': '502' });
    // Neither the upstream's query (an API key) nor anything after the path is recorded.
    expect(attributesOf(hop!.attributes)['url.full']).toMatch(/\/mcp$/);
  });

  it('sends to the endpoint with its headers and service name, and exports nothing secret', () => {
    expect(collector.requests[0]?.headers.authorization).toBe('Bearer collector-key');
    expect(collector.requests[0]?.headers['content-type']).toBe('application/json');
    expect(collector.resourceAttributes()['service.name']).toBe('gatehouse-test');
    const exported = collector.requests.map((request) => request.text).join('\n');
    const secrets = [tokens.body.access_token, tokens.body.refresh_token, flow.code, flow.verifier, flow.state, 'upstream-key-in-query', 'alice@example.com'];
    for (const secret of secrets) expect(exported).not.toContain(String(secret));
    expect(gateway.logText()).not.toContain('collector-key');
  });
});

describe('tracing on, sign-in at an OpenID provider', () => {
  it('traces the code exchange at the provider under the callback, without its code or secret', async () => {
    const collector = await startCollector();
    const port = await freePort();
    const idp = await startUpstreamIdp({
      users: { alice: { sub: 'alice-1', email: 'alice@example.com', email_verified: true } },
      clients: [{ client_id: 'gatehouse', client_secret: 'upstream-secret', redirect_uris: [`http://127.0.0.1:${port}/callback/corp`] }],
    });
    const gateway = await startTestGateway({
      identity_providers: [{ id: 'corp', type: 'oidc', issuer: idp.issuer, client_id: 'gatehouse', client_secret: 'upstream-secret' }],
      access: { allow: { domains: ['example.com'] } },
      services: { demo: { upstream: 'http://127.0.0.1:9/mcp', default: true } },
      tracing: { enabled: true, endpoint: collector.url },
    }, { port });
    let closed = false;
    try {
      for (let i = 0; i < 50 && (await fetch(`${gateway.origin}/ready`)).status !== 200; i++) await new Promise((resolve) => setTimeout(resolve, 100));
      const redirect = 'http://127.0.0.1:53191/callback';
      const client = await registerClient(gateway, [redirect]);
      const session = new HttpSession();
      const start = authorizeUrl(gateway, { client_id: client.client_id, redirect_uri: redirect, code_challenge: pkcePair().challenge });
      const atIdp = await session.follow(start, {}, { stopWhen: (next) => next.origin === idp.url });
      const back = new URL(await signInAtUpstream(session, atIdp.url, 'alice'));
      // Back at the gateway: the exchange, then the consent page.
      const consent = await session.follow(back, {}, { stopWhen: (next) => next.href.startsWith(redirect) });
      expect(consent.response.status).toBe(200);
      await gateway.close();
      closed = true;

      const spans = collector.spans();
      const callback = spans.find((span) => span.name === 'GET /callback/:provider');
      const exchange = spans.find((span) => span.name === 'gatehouse.sign_in.exchange');
      expect(callback).toBeDefined();
      expect(exchange?.parentSpanId).toBe(callback!.spanId);
      expect(attributesOf(exchange!.attributes)).toMatchObject({ 'gatehouse.outcome': 'signed_in', 'gatehouse.identity_provider': 'corp' });
      const exported = collector.requests.map((request) => request.text).join('\n');
      for (const secret of ['upstream-secret', back.searchParams.get('code'), back.searchParams.get('state'), 'alice@example.com', 'alice-1']) {
        expect(exported).not.toContain(String(secret));
      }
    } finally {
      if (!closed) await gateway.close();
      await idp.close();
      await collector.close();
    }
  });
});

/** A gateway with the dev sign-in in front of `upstream` as its one service, with `tracing` as given (absent: the default). */
function gatewayInFrontOf(upstream: string, tracing?: Record<string, unknown>): Promise<TestGateway> {
  return startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { domains: ['example.com'] } },
    services: { demo: { upstream, default: true } },
    ...(tracing ? { tracing } : {}),
  });
}

describe('tracing on, sampled out', () => {
  it('still hands the server a trace context, marked not sampled, and exports nothing', async () => {
    const collector = await startCollector();
    const upstream = await startUpstream();
    const gateway = await gatewayInFrontOf(upstream.url, { enabled: true, endpoint: collector.url, sample_ratio: 0 });
    try {
      const flow = await runCodeFlow(gateway);
      const token = String((await redeem(gateway, flow)).body.access_token);
      expect((await mcpPost(gateway, '/demo/mcp', token)).status).toBe(200);
      // Parent-based: the client's sampled trace is followed whatever the ratio.
      expect((await mcpPost(gateway, '/demo/mcp', token, { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01` })).status).toBe(200);
      await gateway.close();
      expect(upstream.seen[0]?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(upstream.seen[1]?.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
      expect(collector.spans().every((span) => span.traceId === TRACE_ID)).toBe(true);
      expect(collector.spans().length).toBeGreaterThanOrEqual(3);
    } finally {
      await collector.close();
      await upstream.close();
    }
  });
});

describe('tracing off (the default)', () => {
  it('passes the client\'s trace context through untouched and sends nothing', async () => {
    const collector = await startCollector();
    const upstream = await startUpstream();
    const gateway = await gatewayInFrontOf(upstream.url);
    expect(gateway.config.tracing.enabled).toBe(false);
    try {
      const flow = await runCodeFlow(gateway);
      const token = String((await redeem(gateway, flow)).body.access_token);
      const traceparent = `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`;
      expect((await mcpPost(gateway, '/demo/mcp', token, { traceparent, tracestate: 'vendor=opaque' })).status).toBe(200);
      await gateway.close();
      expect(upstream.seen).toEqual([{ traceparent, tracestate: 'vendor=opaque' }]);
      expect(collector.requests).toEqual([]);
    } finally {
      await collector.close();
      await upstream.close();
    }
  });

  it('loads no OpenTelemetry SDK module (seen by a module-resolution hook in a process of its own)', async () => {
    const child = spawn(NODE, ['test/support/tracing-probe.ts'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; });
    const code = await new Promise((resolve) => child.once('close', resolve));
    expect(code, err).toBe(0);
    const result = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { off: string[]; on: string[] };
    expect(result.off).toEqual([]);
    // The control: the same probe sees the SDK once a gateway turns tracing on.
    expect(result.on).toEqual(expect.arrayContaining(['@opentelemetry/sdk-trace', '@opentelemetry/exporter-trace-otlp-http']));
  });
});
