/**
 * A protected MCP endpoint: `/<service>/mcp` (and the same with a trailing slash), routed by
 * service-routes.ts.
 *
 * Each request runs these steps in order; the first that answers ends it:
 *   1. CORS preflight       answered without a token, for the gateway's own origin and the
 *                           allowed ones (`cors.allowed_origins`)
 *   2. origin               a foreign browser Origin is refused (DNS rebinding), its preflight too
 *   3. body size            over the service's limit → 413
 *   4. bearer               none → 401 challenge; bad, expired, revoked or another service's → 401 invalid_token
 *   5. access policy        the gateway's and the service's `access` rules, on every request
 *   6. upstream token       for a service with `forward.upstream_token`: the user's fresh
 *                           identity-provider token, or 401 invalid_token when there is none
 *   7. session owner        a Streamable HTTP upstream's `Mcp-Session-Id` only from the account
 *                           that opened the session (session-owners.ts), else 404
 *   8. forward              identity headers set, the client's Authorization never forwarded;
 *                           a `command` service's process is reached through stdio-bridge.ts
 * (Between 5 and 6, a service with `method_scopes` has its body read and its scopes checked.)
 * Steps 2 and 4–6 are authorize-request.ts, which ForwardAuth (forward-auth.ts) runs too.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ProtectedService } from '../authz/index.ts';
import { bearerChallenge, metadataUrl } from '../resource/index.ts';
import { authorizeBearer, checkOrigin, serviceHeaders, type AuthorizationContext, type Authorized, type ForwardDefinition } from './authorize-request.ts';
import { forwardRequest, sendJsonRpcError } from './http.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { scopesNeeded } from './method-scopes.ts';
import { BodyTooLargeError, readBody } from './request-body.ts';
import { createLegacySseBridge } from './legacy-sse.ts';
import { upstreamTransport, type UpstreamTransport } from './upstream-transport.ts';
import { createWebSocketUpgrade } from './websocket.ts';
import type { ServiceEndpoint } from './service-routes.ts';
import type { SessionOwners } from './session-owners.ts';
import { createStdioBridge, type StdioServiceDefinition } from './stdio-bridge.ts';
import type { CircuitBreakers } from './circuit-breaker.ts';
import type { OpenStreams } from './open-streams.ts';
import type { ProxyMetrics } from './service-metrics.ts';
import type { Tracing } from '../ops/tracing.ts';
import { callContext, ToolCallAudit, type ServiceAuditSettings } from './tool-calls.ts';

export interface McpServiceDefinition extends ForwardDefinition, Omit<StdioServiceDefinition, 'command' | 'timeout_ms' | 'max_body_bytes'> {
  /** A stdio server the gateway starts (stdio-bridge.ts), instead of `upstream`. */
  command?: readonly string[] | undefined;
  /** Absent: from the upstream URL (upstream-transport.ts). */
  transport?: UpstreamTransport | undefined;
  method_scopes: Readonly<Record<string, string>>;
  timeout_ms: number;
  max_body_bytes: number;
  /** Off: null (circuit-breaker.ts). */
  circuit_breaker?: { failures: number; open_seconds: number; max_open_seconds: number } | null | undefined;
  /** What the audit trail shows of tool calls (tool-calls.ts). */
  audit?: ServiceAuditSettings | undefined;
}

export interface McpEndpointContext extends AuthorizationContext {
  /** Owners of Streamable HTTP upstream sessions; absent: session ids are not checked. */
  sessions?: SessionOwners | undefined;
  /** Circuit breakers by service, kept across configuration reloads (circuit-breaker.ts). */
  breakers?: CircuitBreakers | undefined;
  /** The event streams a graceful shutdown ends (open-streams.ts). */
  streams?: OpenStreams | undefined;
  /** Absent: metrics are off (`metrics.enabled: false`), and nothing is measured. */
  metrics?: ProxyMetrics | undefined;
  /** For WebSocket handshakes, which Fastify's hooks (and `request.trace`) never see; absent: tracing is off. */
  tracing?: Tracing | undefined;
}

const CORS_BASE = {
  'access-control-expose-headers': 'WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version',
  vary: 'Origin',
};
/** The CORS headers of a request without an Origin (every non-browser client): one shared, read-only object. */
const CORS_ANY_ORIGIN: Readonly<Record<string, string>> = Object.freeze({ ...CORS_BASE, 'access-control-allow-origin': '*' });
const CORS_FOREIGN: Readonly<Record<string, string>> = Object.freeze({ vary: 'Origin' });

/**
 * The endpoint of one service, routed by service-routes.ts (which a configuration reload
 * updates); `close` stops its stdio processes and legacy SSE sessions.
 */
export function createMcpEndpoint(app: FastifyInstance, service: ProtectedService<McpServiceDefinition & { path: string }>, context: McpEndpointContext): ServiceEndpoint {
  const definition = service.definition;
  const challengeUrl = metadataUrl(service, context.issuer);
  const observed = context.metrics?.forService(service.id);
  // WebSocket services take upgrades (websocket.ts); legacy SSE servers are bridged (legacy-sse.ts).
  const transport = upstreamTransport(definition);
  // Streamable HTTP and WebSocket servers have a circuit breaker; stdio processes and legacy SSE sessions fail on their own terms.
  const settings = definition.circuit_breaker;
  const breaker = definition.command !== undefined || transport === 'sse' || !settings ? undefined
    : context.breakers?.for(service.id, definition.upstream ?? '', { failures: settings.failures, openSeconds: settings.open_seconds, maxOpenSeconds: settings.max_open_seconds });
  const upgrade = transport === 'websocket' ? createWebSocketUpgrade(app, service, context, { metrics: observed, breaker, tracing: context.tracing }) : undefined;
  const stdio = definition.command !== undefined
    ? createStdioBridge(service.id, { ...definition, command: definition.command }, app.log.child({ service: service.id }), observed)
    : undefined;
  // The schema gives each service an upstream URL or a command; only the former is forwarded to.
  if (!stdio && definition.upstream === undefined) throw new Error(`service ${service.id} has neither upstream nor command`);
  const upstreamUrl = definition.upstream ?? '';
  const owners = transport === 'streamable-http' && !stdio ? context.sessions : undefined;
  const legacy = transport === 'sse' && definition.upstream
    ? createLegacySseBridge({ upstream: definition.upstream, timeoutMs: definition.timeout_ms, maxBodyBytes: definition.max_body_bytes, metrics: observed })
    : undefined;
  // Every tools/call goes to the audit trail (WebSocket services: websocket.ts does it).
  const scopedMethods = Object.keys(definition.method_scopes).length > 0;
  const toolAudit = context.audit ? new ToolCallAudit(context.audit, service.id, stdio ? 'stdio' : transport, definition.audit) : undefined;

  // Requests in the stdio or legacy SSE bridge, so a shutdown stops processes and sessions after them.
  const inflight: { count: number; idle?: (() => void) | undefined } = { count: 0 };
  const requestEnded = () => {
    if (--inflight.count === 0) inflight.idle?.();
  };

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    observed?.countRequest(request.raw);
    request.trace?.forService(service, request.headers['mcp-method']);
    const origin = request.headers.origin;
    // A foreign browser Origin gets no CORS permission, for its preflight either: the browser
    // then keeps the answer (a 403) from the page.
    const foreign = checkOrigin(origin, context);
    const corsHeaders: Readonly<Record<string, string>> = foreign ? CORS_FOREIGN
      : origin === undefined ? CORS_ANY_ORIGIN : { ...CORS_BASE, 'access-control-allow-origin': origin };

    if (request.method === 'OPTIONS' && !foreign) {
      return reply.code(204).headers({
        ...corsHeaders,
        'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
        'access-control-allow-headers': String(request.headers['access-control-request-headers'] ?? 'Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID'),
        'access-control-max-age': '600',
      }).send();
    }

    const deny = (status: number, kind: 'forbidden' | 'unauthorized' | 'payload_too_large' | 'parse_error' | 'not_found', message: string, extra: Record<string, string> = {}) => {
      reply.hijack();
      // The body was not read: drain it so the connection can be reused (and closed cleanly at
      // shutdown), except when it is too large to be worth reading.
      if (status === 413) extra.connection = 'close';
      else request.raw.resume();
      sendJsonRpcError(reply.raw, status, kind, message, null, { ...corsHeaders, ...extra });
      return reply;
    };

    if (foreign) return deny(foreign.status, foreign.kind, foreign.message);
    const length = Number(request.headers['content-length'] ?? 0);
    if (length > definition.max_body_bytes) return deny(413, 'payload_too_large', 'the request body is too large');

    const authorizing = request.trace?.step('gatehouse.authorize');
    const result = await authorizeBearer(request.headers.authorization, service, context, request.log);
    authorizing?.end(result.ok ? 'allowed' : result.kind, result.ok ? { 'gatehouse.client_id': result.claims.client_id } : undefined);
    if (!result.ok) return deny(result.status, result.kind, result.message, { ...result.headers });

    // Scopes by method need the parsed body: read it (bounded), decide, then forward it.
    let body: Buffer | undefined;
    if (request.method === 'POST' && scopedMethods) {
      const scoped = await checkMethodScopes(request, definition, result.claims.scope, challengeUrl);
      if (!scoped.ok) {
        // Tool calls refused for a missing scope are tool calls too: the trail says who tried.
        if (toolAudit && scoped.body) toolAudit.refused(scoped.body, callContext(request.id, result, request.headers['mcp-session-id']), scoped.status);
        return deny(scoped.status, scoped.kind, scoped.message, scoped.headers);
      }
      body = scoped.body;
    }

    const identifying = request.trace?.step('gatehouse.upstream_identity');
    const own = await serviceHeaders(service, result, context, request.log);
    identifying?.end(own.ok ? 'ready' : own.kind);
    if (!own.ok) return deny(own.status, own.kind, own.message, { ...own.headers });
    // The gateway's headers last: a client's copy of one of them never reaches the server.
    const headers = Object.assign(upstreamRequestHeaders(request.headers, { requestId: request.id }), own.headers);
    // MCP basic/transports, session management: 404 makes the client start a new session; the
    // same answer for an id never issued and for another account's, so ids reveal nothing.
    const sessionId = request.headers['mcp-session-id'];
    if (owners && typeof sessionId === 'string') {
      const owner = await owners.ownerOf(service.id, sessionId);
      if (owner !== result.account.accountId) {
        if (owner !== undefined) request.log.warn({ event: 'session.foreign', service: service.id, account: result.account.accountId }, 'a session id of another account was presented');
        return deny(404, 'not_found', 'session not found: initialize a new session');
      }
    }
    reply.hijack();
    await forward(request, reply, { authorized: result, upstreamHeaders: headers, ownHeaders: own.headers, corsHeaders, body, sessionId });
    return reply;
  };

  /** Step 8: the request, authorized, goes to the service's server over its transport. */
  const forward = async (request: FastifyRequest, reply: FastifyReply, step: ForwardStep) => {
    const { authorized: result, upstreamHeaders: headers, ownHeaders, corsHeaders, body, sessionId } = step;
    const toolCalls = toolAudit && request.method === 'POST' ? { audit: toolAudit, context: callContext(request.id, result, sessionId) } : undefined;
    // The hop to the server; its trace context replaces the client's in `headers`.
    const hop = transport === 'websocket' ? undefined : request.trace?.hop(request.method, stdio ? 'stdio' : upstreamUrl, headers);
    // stdio and legacy SSE answers that are event streams end at a graceful shutdown (forwardRequest tracks its own).
    if ((stdio || legacy) && context.streams) {
      context.streams.track(reply.raw, request.method === 'GET' ? 'listen' : 'call');
      inflight.count++;
      reply.raw.once('close', requestEnded);
    }
    if (stdio) {
      await stdio.handle(request.raw, reply.raw, {
        identity: { ...result.identity, subject: result.account.subject },
        upstreamToken: definition.forward.upstream_token ? ownHeaders[definition.forward.upstream_token.toLowerCase()] : undefined,
        responseHeaders: corsHeaders,
        body,
        log: request.log,
        toolCalls,
      });
      hop?.end(reply.raw);
      return;
    }
    if (transport === 'websocket') {
      // RFC 9110 §15.5.22: 426 names, in Upgrade, the protocol to switch to.
      request.raw.resume();
      sendJsonRpcError(reply.raw, 426, 'invalid_request', `${service.displayName} is served over WebSocket: open a WebSocket to this URL`, null, { ...corsHeaders, upgrade: 'websocket', connection: 'Upgrade' });
      return;
    }
    if (legacy) {
      await legacy.handle(request.raw, reply.raw, { account: result.account.accountId, upstreamHeaders: headers, responseHeaders: corsHeaders, body, log: request.log, toolCalls });
      hop?.end(reply.raw);
      return;
    }
    await forwardRequest(request.raw, reply.raw, {
      upstream: upstreamUrl,
      onResponse: owners ? recordSession(owners, service.id, result.account.accountId, request.method, sessionId) : undefined,
      method: request.method,
      timeoutMs: definition.timeout_ms,
      maxBodyBytes: definition.max_body_bytes,
      responseHeaders: corsHeaders,
      body,
      headers,
      toolCalls,
      breaker,
      streams: context.streams,
      metrics: observed,
    });
    hop?.end(reply.raw);
  };

  return {
    handle,
    upgrade,
    processes: stdio ? () => stdio.processes : undefined,
    async close() {
      // At a graceful shutdown the calls under way finish first (its deadline cuts what outlasts it).
      if (context.streams?.draining && inflight.count > 0) await new Promise<void>((resolve) => { inflight.idle = resolve; });
      legacy?.close();
      await stdio?.close();
    },
  };
}

/** What step 8 needs of the steps before it. */
interface ForwardStep {
  authorized: Authorized;
  upstreamHeaders: Record<string, string>;
  /** The gateway's own headers for the server (identity, upstream token). */
  ownHeaders: Record<string, string>;
  corsHeaders: Readonly<Record<string, string>>;
  /** The body, when method_scopes had to read it. */
  body: Buffer | undefined;
  sessionId: string | string[] | undefined;
}

type ScopeCheck =
  | { ok: true; body: Buffer }
  | { ok: false; status: 400 | 403 | 413; kind: 'parse_error' | 'forbidden' | 'payload_too_large'; message: string; headers?: Record<string, string>; body?: Buffer };

/** Reads the body (bounded) of a POST to a service with `method_scopes` and checks the token has the scopes its method needs. */
async function checkMethodScopes(request: FastifyRequest, definition: McpServiceDefinition, grantedScope: string | undefined, challengeUrl: string): Promise<ScopeCheck> {
  let body: Buffer;
  try {
    body = await readBody(request.raw, definition.max_body_bytes);
  } catch (error) {
    if (error instanceof BodyTooLargeError) return { ok: false, status: 413, kind: 'payload_too_large', message: 'the request body is too large' };
    throw error;
  }
  const needs = scopesNeeded(body, definition.method_scopes);
  if (!needs.ok) return { ok: false, status: 400, kind: 'parse_error', message: needs.reason };
  const granted = new Set((grantedScope ?? '').split(' ').filter(Boolean));
  const missing = needs.needed.filter((scope) => !granted.has(scope));
  if (missing.length === 0) return { ok: true, body };
  // The challenge names everything this call needs together with what the token has, so
  // clients that re-authorize with exactly the challenge's scope keep their other rights.
  return {
    ok: false, status: 403, kind: 'forbidden', message: `this request needs the scope ${missing.join(' ')}`, body,
    headers: {
      'www-authenticate': bearerChallenge({
        resourceMetadata: challengeUrl,
        error: 'insufficient_scope',
        scope: [...new Set([...granted, ...needs.needed])],
        description: 'the access token lacks a scope this request needs',
      }),
    },
  };
}

/**
 * Records the owner of a session id the server issues, and forgets one that DELETE ended; no
 * promise when there is neither (most answers), so forwardRequest has nothing to wait for.
 */
function recordSession(owners: SessionOwners, serviceId: string, accountId: string, method: string, presented: string | string[] | undefined) {
  return (status: number, headers: Record<string, string | string[] | undefined>): Promise<void> | undefined => {
    if (status >= 300) return undefined;
    const issued = headers['mcp-session-id'];
    const record = typeof issued === 'string' && issued !== presented;
    const forget = method === 'DELETE' && typeof presented === 'string';
    if (!record && !forget) return undefined;
    return (async () => {
      if (record) await owners.record(serviceId, issued, accountId);
      // A record left behind only expires; a failed delete must not fail the client's DELETE.
      if (forget) await owners.forget(serviceId, presented).catch(() => undefined);
    })();
  };
}
