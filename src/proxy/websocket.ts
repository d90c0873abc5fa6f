/**
 * WebSocket services (`upstream: ws://…` or `wss://…`): a client opens a WebSocket at the
 * service's path (RFC 6455 opening handshake) and the gateway opens one to the MCP server, then
 * relays messages both ways. Each upgrade request runs these steps in order; the first that
 * answers ends it, with an HTTP response before anything is upgraded:
 *
 *   1. handshake        not a WebSocket upgrade (RFC 6455 §4.2.1) → 400; another version → 426
 *   2. origin           a foreign browser Origin is refused → 403 (cross-site WebSocket hijacking)
 *   3. bearer           none → 401 challenge; bad, expired, revoked, another service's → 401 invalid_token
 *   4. access policy    the gateway's and the service's `access` rules → 403
 *   5. upstream token   `forward.upstream_token` and none usable → 401 invalid_token
 *   6. upstream         the server's upgrade, with the identity headers and the client's
 *                       subprotocols, never the client's Authorization; refused → 502, slow → 504
 *   7. accept           the client's upgrade, with the subprotocol the server chose
 *
 * Then, while open: a service's `method_scopes` apply to every client message (a request
 * without its scope gets a JSON-RPC error and is not forwarded); the connection closes with 1008
 * when the token expires or a periodic re-check refuses it (revoked, or access withdrawn), since
 * the HTTP checks otherwise run once per request; a close by either side is passed to the other
 * with its code and reason; pings find dead peers.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { WebSocket, WebSocketServer } from 'ws';
import type { ProtectedService } from '../authz/index.ts';
import { jsonRpcError, type JsonRpcErrorKind } from '../errors/index.ts';
import { authorizeBearer, checkOrigin, serviceHeaders, type AuthorizationContext, type Authorized, type ForwardDefinition } from './authorize-request.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { scopesNeeded } from './method-scopes.ts';
import { isFailureStatus, type CircuitBreaker } from './circuit-breaker.ts';
import { ToolCallAudit, type ServiceAuditSettings } from './tool-calls.ts';
import { WebSocketToolCalls } from './websocket-tool-calls.ts';
import type { ServiceMetrics } from './service-metrics.ts';
import { closeWith, pipe, refusals, refuseUpgrade, toBuffer } from './websocket-wire.ts';
import type { Tracing } from '../ops/tracing.ts';

export interface WebSocketServiceDefinition extends ForwardDefinition {
  method_scopes: Readonly<Record<string, string>>;
  timeout_ms: number;
  max_body_bytes: number;
  /** What the audit trail shows of tool calls (tool-calls.ts). */
  audit?: ServiceAuditSettings | undefined;
}

type Service = ProtectedService<WebSocketServiceDefinition & { path: string }>;

export interface WebSocketOptions {
  /** How often an open connection's token and access are checked again. */
  recheckMs?: number | undefined;
  /** How often both peers are pinged; one that has not answered the previous ping is dropped. */
  heartbeatMs?: number | undefined;
  /** The service's metrics: handshake latency and failures, open connections. */
  metrics?: ServiceMetrics | undefined;
  /** The service's circuit breaker: judged by the server's handshakes (circuit-breaker.ts). */
  breaker?: CircuitBreaker | undefined;
  /** Traces the handshake (`tracing.enabled`): Fastify's hooks never see an upgrade. */
  tracing?: Tracing | undefined;
}


export type WebSocketUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;

interface ServerState {
  routes: Map<string, WebSocketUpgrade>;
  open: Set<WebSocket>;
  closing: boolean;
}

const states = new WeakMap<Server, ServerState>();

/** Adds `service` to the paths where the gateway accepts WebSocket upgrades. */
export function registerWebSocketService(app: FastifyInstance, service: Service, context: AuthorizationContext, options: WebSocketOptions = {}): void {
  const upgrade = createWebSocketUpgrade(app, service, context, options);
  const routes = webSocketRoutes(app);
  routes.set(service.path, upgrade);
  routes.set(`${service.path}/`, upgrade);
}

/** The upgrade handler of one WebSocket service, for the caller to route (proxy/service-routes.ts). */
export function createWebSocketUpgrade(app: FastifyInstance, service: Service, context: AuthorizationContext, options: WebSocketOptions = {}): WebSocketUpgrade {
  return createUpgradeHandler(service, context, serverState(app), app.log, options);
}

/**
 * The paths where the server accepts WebSocket upgrades, and their handlers; changes apply to
 * the next upgrade request. The first call sets up upgrade handling, which adds a Fastify hook:
 * make it before the server listens.
 */
export function webSocketRoutes(app: FastifyInstance): Map<string, WebSocketUpgrade> {
  return serverState(app).routes;
}

function serverState(app: FastifyInstance): ServerState {
  const server = app.server;
  let state = states.get(server);
  if (state) return state;
  const created: ServerState = { routes: new Map(), open: new Set(), closing: false };
  states.set(server, created);
  const pathOf = (req: IncomingMessage) => (req.url ?? '/').split('?')[0] ?? '/';
  // Node 24.9+: other upgrades (other paths, or h2c) stay ordinary requests for Fastify's
  // routes. Older Node hands every upgrade to this listener, which refuses those with 404.
  if ('shouldUpgradeCallback' in server) {
    (server as Server & { shouldUpgradeCallback: (req: IncomingMessage) => boolean }).shouldUpgradeCallback = (req) => (
      created.routes.has(pathOf(req)) && String(req.headers.upgrade ?? '').toLowerCase() === 'websocket'
    );
  }
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const upgrade = created.routes.get(pathOf(req));
    if (!upgrade) return refuseUpgrade(socket, 404, 'not_found', `no WebSocket service is served at ${pathOf(req)}`);
    if (created.closing) return refuseUpgrade(socket, 503, 'service_unavailable', 'the gateway is shutting down');
    upgrade(req, socket, head).catch((error: unknown) => {
      app.log.error({ err: error }, 'unexpected error in a WebSocket upgrade');
      refuseUpgrade(socket, 500, 'internal_error', 'an unexpected error occurred');
    });
  });
  app.addHook('preClose', async () => {
    created.closing = true;
    for (const socket of created.open) closeWith(socket, 1001, 'the gateway is shutting down');
  });
  return created;
}

function createUpgradeHandler(service: Service, context: AuthorizationContext, state: ServerState, baseLog: FastifyBaseLogger, options: WebSocketOptions): WebSocketUpgrade {
  const definition = service.definition;
  const upstreamUrl = definition.upstream;
  // The configuration gives every ws:// or wss:// service its URL (schema/services.ts).
  if (!upstreamUrl) throw new Error(`the WebSocket service ${service.id} has no upstream URL`);
  const toolAudit = context.audit ? new ToolCallAudit(context.audit, service.id, 'websocket', definition.audit) : undefined;
  // One server per service: its size limit is the service's. Compression stays off, as on the
  // upstream leg: each leg negotiates extensions on its own, and JSON-RPC messages are small.
  // The client gets the subprotocol the server chose, which is one the client offered.
  const chosen = new WeakMap<IncomingMessage, string>();
  const acceptor = new WebSocketServer({
    noServer: true, maxPayload: definition.max_body_bytes, perMessageDeflate: false, clientTracking: false,
    handleProtocols: (_offered, req) => chosen.get(req) || false,
  });

  return async (req, socket, head) => {
    const given = req.headers['x-request-id'];
    const requestId = typeof given === 'string' && /^[\w.-]{1,100}$/.test(given) ? given : randomUUID();
    const log = baseLog.child({ reqId: requestId, service: service.id });
    // The span covers the handshake, not the connection's life; its hop gives the server the
    // gateway's trace context in place of the client's, as for HTTP (ops/tracing.ts).
    const trace = options.tracing?.startRequest({ method: req.method ?? 'GET', path: service.path, route: service.path, scheme: 'http', requestId, headers: req.headers });
    trace?.forService(service, undefined);
    const refuse = (status: number, kind: JsonRpcErrorKind, message: string, headers?: Record<string, string>) => {
      refuseUpgrade(socket, status, kind, message, headers);
      trace?.finish({ headersSent: true, statusCode: status });
    };

    // RFC 6455 §4.1: the key is 16 random bytes in base64.
    if (req.method !== 'GET' || String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || !/^[+/0-9A-Za-z]{22}==$/.test(String(req.headers['sec-websocket-key'] ?? ''))) {
      return refuse(400, 'invalid_request', 'expected a WebSocket upgrade (GET with Upgrade: websocket)');
    }
    if (req.headers['sec-websocket-version'] !== '13') {
      // RFC 6455 §4.4: name the version the server speaks.
      return refuse(426, 'invalid_request', 'unsupported WebSocket version', { 'sec-websocket-version': '13' });
    }
    const foreign = checkOrigin(req.headers.origin, context);
    if (foreign) return refuse(foreign.status, foreign.kind, foreign.message);
    const authorizing = trace?.step('gatehouse.authorize');
    const authorized = await authorizeBearer(req.headers.authorization, service, context, log);
    authorizing?.end(authorized.ok ? 'allowed' : authorized.kind, authorized.ok ? { 'gatehouse.client_id': authorized.claims.client_id } : undefined);
    if (!authorized.ok) return refuse(authorized.status, authorized.kind, authorized.message, authorized.headers);
    const identifying = trace?.step('gatehouse.upstream_identity');
    const own = await serviceHeaders(service, authorized, context, log);
    identifying?.end(own.ok ? 'ready' : own.kind);
    if (!own.ok) return refuse(own.status, own.kind, own.message, own.headers);

    // The gateway's headers last: a client's copy of one of them never reaches the server.
    const headers = { ...upstreamRequestHeaders(req.headers, { requestId }), ...own.headers };
    const protocols = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((name) => name.trim()).filter(Boolean);
    let clientGone = false;
    socket.once('close', () => { clientGone = true; });
    const breaker = options.breaker;
    if (breaker && !breaker.admit()) {
      options.metrics?.upstreamFailed('circuit_open');
      return refuse(503, 'service_unavailable', 'the MCP server is failing; the gateway holds connections back for a moment', { 'retry-after': String(breaker.retryAfterSeconds()) });
    }
    const started = performance.now();
    const hop = trace?.hop('GET', upstreamUrl, headers);
    const upstream = await connectUpstream(upstreamUrl, protocols, headers, definition.timeout_ms).catch((error: Error) => error);
    if (breaker) judgeHandshake(breaker, upstream);
    if (upstream instanceof Error) {
      const timedOut = /timed out/i.test(upstream.message);
      options.metrics?.upstreamFailed(timedOut ? 'timeout' : 'unreachable');
      log.warn({ event: 'websocket.upstream_failed', reason: upstream.message }, 'the MCP server did not accept the WebSocket');
      hop?.end({ headersSent: true, statusCode: timedOut ? 504 : 502 });
      return timedOut
        ? refuse(504, 'upstream_timeout', 'the MCP server did not answer in time')
        : refuse(502, 'upstream_unavailable', 'the MCP server did not accept the WebSocket connection');
    }
    hop?.end({ headersSent: true, statusCode: 101 });
    options.metrics?.upstreamResponded((performance.now() - started) / 1000);
    if (clientGone || socket.destroyed) {
      trace?.finish({ headersSent: false, statusCode: 0 });
      upstream.terminate();
      return;
    }
    chosen.set(req, upstream.protocol);
    let accepted = false;
    acceptor.handleUpgrade(req, socket, head, (client) => {
      accepted = true;
      const toolCalls = toolAudit && new WebSocketToolCalls(toolAudit, {
        requestId, account: authorized.account.accountId, email: authorized.account.email, client: authorized.claims.client_id,
      });
      relay(client, upstream, { service, context, authorized, state, log, options, token: bearerToken(req.headers.authorization), toolCalls });
    });
    // ws accepts synchronously, or refuses (a malformed key, a socket gone) and never calls back.
    trace?.finish({ headersSent: accepted, statusCode: accepted ? 101 : 0 });
    if (!accepted) upstream.terminate();
  };
}

/**
 * A handshake the server answered with something other than 101 is a failure only for 502, 503
 * or 504 (ws reports "Unexpected server response: N"); no answer at all always is.
 */
function judgeHandshake(breaker: CircuitBreaker, upstream: WebSocket | Error): void {
  const status = upstream instanceof Error ? /Unexpected server response: (\d{3})/.exec(upstream.message)?.[1] : undefined;
  if (upstream instanceof Error && (status === undefined || isFailureStatus(Number(status)))) breaker.failed();
  else breaker.succeeded();
}

function bearerToken(authorization: string | undefined): string {
  return /^Bearer[ ]+(\S+)$/i.exec(authorization ?? '')?.[1] ?? '';
}

function connectUpstream(url: string, protocols: string[], headers: Record<string, string>, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const upstream = new WebSocket(url, protocols, { headers, handshakeTimeout: timeoutMs, perMessageDeflate: false, followRedirects: false });
    upstream.once('open', () => {
      // Nothing the server sends is read until the client is accepted and the relay is wired.
      upstream.pause();
      upstream.off('error', reject);
      upstream.on('error', () => undefined);
      resolve(upstream);
    });
    upstream.once('error', reject);
  });
}

interface RelayContext {
  /** The connection's tool calls, for the audit trail. */
  toolCalls?: WebSocketToolCalls | undefined;
  service: Service;
  context: AuthorizationContext;
  authorized: Authorized;
  token: string;
  state: ServerState;
  log: FastifyBaseLogger;
  options: WebSocketOptions;
}

function relay(client: WebSocket, upstream: WebSocket, relayContext: RelayContext): void {
  const { service, context, authorized, state, log, options, toolCalls } = relayContext;
  const rules = service.definition.method_scopes;
  const granted = new Set((authorized.claims.scope ?? '').split(' ').filter(Boolean));
  state.open.add(client);
  options.metrics?.webSocketOpened();
  log.info({ event: 'websocket.open', account: authorized.account.accountId, protocol: client.protocol || undefined }, 'WebSocket connected');

  pipe(client, upstream, (data) => {
    if (Object.keys(rules).length === 0) return true;
    // Scopes by method, decided from each message's body as for HTTP (method-scopes.ts).
    const needs = scopesNeeded(toBuffer(data), rules);
    if (!needs.ok) {
      client.send(JSON.stringify(jsonRpcError('parse_error', needs.reason)));
      return false;
    }
    const missing = needs.needed.filter((scope) => !granted.has(scope));
    if (missing.length === 0) return true;
    const answer = refusals(toBuffer(data), 'forbidden', `this request needs the scope ${missing.join(' ')}`);
    if (answer) client.send(answer);
    return false;
  }, toolCalls && ((data) => toolCalls.sent(toBuffer(data))));
  pipe(upstream, client, () => true, toolCalls && ((data) => toolCalls.received(toBuffer(data))));
  upstream.resume();

  const alive = new Map<WebSocket, boolean>([[client, true], [upstream, true]]);
  for (const peer of [client, upstream]) peer.on('pong', () => alive.set(peer, true));
  const heartbeat = setInterval(() => {
    for (const peer of [client, upstream]) {
      if (!alive.get(peer)) {
        peer.terminate();
        continue;
      }
      alive.set(peer, false);
      peer.ping();
    }
  }, options.heartbeatMs ?? 30_000).unref();

  // The token's lifetime and revocation bound the connection as they bound each HTTP request.
  const endOfToken = (authorized.claims.exp ?? 0) * 1000 - Date.now();
  const expiry = setTimeout(() => closeBoth(1008, 'the access token expired'), Math.max(0, Math.min(endOfToken, 2 ** 31 - 1))).unref();
  const recheck = setInterval(() => {
    void authorizeBearer(`Bearer ${relayContext.token}`, service, context, log).then((result) => {
      if (!result.ok) closeBoth(1008, result.message);
    }, (error: unknown) => log.warn({ err: error }, 'could not re-check a WebSocket connection'));
  }, options.recheckMs ?? 60_000).unref();

  function closeBoth(code: number, reason: string) {
    closeWith(client, code, reason);
    closeWith(upstream, code === 1008 ? 1001 : code, reason);
  }

  let closedBy: 'client' | 'upstream' | undefined;
  // A client that broke the protocol (a message over the size limit, bad UTF-8) was closed by
  // ws with a code of its own; the server hears that code too.
  let clientFault: number | undefined;
  client.on('error', (error: Error & { code?: string }) => {
    if (!error.code?.startsWith('WS_ERR_')) return;
    clientFault = error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 1009 : error.code === 'WS_ERR_INVALID_UTF8' ? 1007 : 1002;
  });
  client.on('close', (code, reason) => {
    closedBy ??= 'client';
    // 1006 (connection lost) and 1005 (no code) cannot be sent (RFC 6455 §7.4.1): the server
    // hears "going away" for a client that vanished, and a plain close for one that gave no code.
    if (clientFault !== undefined) closeWith(upstream, clientFault, 'the client broke the WebSocket protocol');
    else if (code === 1006) closeWith(upstream, 1001, 'the client went away');
    else closeWith(upstream, code === 1005 ? undefined : code, reason);
    finish(code);
  });
  upstream.on('close', (code, reason) => {
    closedBy ??= 'upstream';
    // 1014 Bad Gateway (IANA WebSocket close codes): the server's connection broke.
    if (code === 1006) closeWith(client, 1014, 'the MCP server connection was lost');
    else closeWith(client, code === 1005 ? undefined : code, reason);
    finish(code);
  });
  for (const peer of [client, upstream]) peer.on('error', (error) => log.debug({ err: error }, 'WebSocket error'));

  let finished = false;
  function finish(code: number) {
    if (finished) return;
    finished = true;
    toolCalls?.closed(closedBy);
    clearInterval(heartbeat);
    clearInterval(recheck);
    clearTimeout(expiry);
    state.open.delete(client);
    options.metrics?.webSocketClosed();
    log.info({ event: 'websocket.close', account: authorized.account.accountId, by: closedBy, code }, 'WebSocket closed');
  }
}
