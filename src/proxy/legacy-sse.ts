/**
 * A legacy HTTP+SSE MCP server (`transport: sse`, protocol 2024-11-05) offered to clients as
 * Streamable HTTP (MCP 2025-03-26 and later, basic/transports "Streamable HTTP"):
 *
 *   POST initialize      opens the server's event stream for a new session (legacy-sse-session.ts)
 *                        and answers with the `Mcp-Session-Id` the gateway minted
 *   POST with requests   each message POSTed to the server's endpoint; the responses, which the
 *                        server sends on its stream, answer the POST: as JSON, or as an event
 *                        stream when the client accepts one (then with related progress too)
 *   POST without         (notifications, responses to the server's requests) 202 Accepted
 *   GET                  the client's stream for server-initiated messages
 *   DELETE               ends the session and the server's stream
 *
 * Sessions live in this process: a session id unknown here (ended, idle, or created by another
 * replica) gets 404, which tells Streamable HTTP clients to initialize again. A session belongs
 * to the account that created it; another account presenting its id gets the same 404.
 * Messages pass unchanged: the gateway never rewrites a protocol version or an id.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { jsonRpcError, type JsonRpcErrorKind, type JsonRpcId } from '../errors/index.ts';
import { messageEvent } from './event-stream.ts';
import { sendJsonRpcError } from './http.ts';
import { idKey, LegacySession, UpstreamError, type Exchange, type SessionLog } from './legacy-sse-session.ts';
import { BodyTooLargeError, readBody } from './request-body.ts';
import type { ServiceMetrics } from './service-metrics.ts';
import { endingAtClose, openToolCalls, scannedText, type ToolCallWatch } from './tool-calls.ts';

export interface LegacySseOptions {
  /** The server's SSE URL (`GET` opens a session). */
  upstream: string;
  timeoutMs: number;
  maxBodyBytes: number;
  /** A session nobody used for this long, with no client stream open, is ended. */
  idleMs?: number | undefined;
  /** Sessions one account may hold at a service; opening one more ends its least recently used. */
  maxSessionsPerAccount?: number | undefined;
  /** The service's metrics: upstream failures, open client streams. */
  metrics?: ServiceMetrics | undefined;
}

export interface LegacySseRequest {
  /** The authorized account: the owner of the sessions it creates. */
  account: string;
  /** The headers for the server (allowed client headers plus the gateway's identity headers). */
  upstreamHeaders: Record<string, string>;
  /** Headers for every answer (CORS). */
  responseHeaders: Record<string, string>;
  /** The body, when a policy already read it. */
  body?: Buffer | undefined;
  log: SessionLog;
  /** Audits the request's tool calls (tool-calls.ts). */
  toolCalls?: ToolCallWatch | undefined;
}

export interface LegacySseBridge {
  handle(req: IncomingMessage, res: ServerResponse, request: LegacySseRequest): Promise<void>;
  /** Ends every session (gateway shutdown). */
  close(): void;
}

interface JsonRpcMessage {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: { _meta?: { progressToken?: unknown } };
}

/** Headers that belong to the client's leg only: its session with the gateway, its stream, its body. */
const CLIENT_LEG_ONLY = ['mcp-session-id', 'last-event-id', 'accept', 'content-length', 'content-type'];

const DEFAULT_IDLE_MS = 30 * 60_000;
const DEFAULT_MAX_SESSIONS = 32;

export function createLegacySseBridge(options: LegacySseOptions): LegacySseBridge {
  const sessions = new Map<string, LegacySession>();
  const idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const session of sessions.values()) if (!session.busy && now - session.lastUsed > idleMs) session.close('idle');
  }, Math.min(idleMs, 60_000)).unref();

  const upstreamHeaders = (request: LegacySseRequest) => {
    const headers = { ...request.upstreamHeaders };
    for (const name of CLIENT_LEG_ONLY) delete headers[name];
    return headers;
  };

  /** The session named by the request's `Mcp-Session-Id`, or an answer already sent. */
  const sessionOf = (req: IncomingMessage, res: ServerResponse, request: LegacySseRequest, id: JsonRpcId = null): LegacySession | undefined => {
    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId !== 'string' || sessionId === '') {
      // Streamable HTTP, session management: a request without a required session id gets 400.
      sendJsonRpcError(res, 400, 'invalid_request', 'this server needs a session: send initialize first, then the Mcp-Session-Id it returns', id, request.responseHeaders);
      return undefined;
    }
    const session = sessions.get(sessionId);
    // One answer for "never existed", "ended" and "someone else's", so an id reveals nothing.
    if (!session || session.closed || session.owner !== request.account) {
      if (session && !session.closed) request.log.warn({ event: 'session.foreign', account: request.account }, 'a session id of another account was presented');
      sendJsonRpcError(res, 404, 'not_found', 'the session has ended; initialize a new one', id, request.responseHeaders);
      return undefined;
    }
    session.lastUsed = Date.now();
    return session;
  };

  const openSession = async (request: LegacySseRequest): Promise<LegacySession> => {
    const session = await LegacySession.open({
      upstream: options.upstream, headers: upstreamHeaders(request), timeoutMs: options.timeoutMs, owner: request.account, log: request.log,
    });
    sessions.set(session.id, session);
    session.onClose(() => sessions.delete(session.id));
    const own = [...sessions.values()].filter((other) => other.owner === request.account);
    if (own.length > (options.maxSessionsPerAccount ?? DEFAULT_MAX_SESSIONS)) {
      own.filter((other) => other !== session).sort((a, b) => a.lastUsed - b.lastUsed)[0]?.close('too many sessions for one account');
    }
    return session;
  };

  const handlePost = async (req: IncomingMessage, res: ServerResponse, request: LegacySseRequest) => {
    let body: Buffer;
    try {
      body = request.body ?? await readBody(req, options.maxBodyBytes);
    } catch (error) {
      if (error instanceof BodyTooLargeError) return sendJsonRpcError(res, 413, 'payload_too_large', 'the request body is too large', null, { ...request.responseHeaders, connection: 'close' });
      throw error;
    }
    const parsed = parseMessages(body);
    if (!parsed.ok) return sendJsonRpcError(res, parsed.status, parsed.kind, parsed.message, null, request.responseHeaders);
    const { messages, batch } = parsed;
    // Tool calls are recorded as their answers pass (the exchange's onResponse); those left
    // when the client's response closes were answered by the gateway, or left by the client.
    const toolCalls = request.toolCalls && openToolCalls(request.toolCalls, messages.map(({ message }) => message));
    if (toolCalls) res.once('close', () => toolCalls.close(endingAtClose(res)));
    const requests = messages.filter(({ message }) => typeof message.method === 'string' && message.id !== undefined && message.id !== null);
    const firstId = (requests[0]?.message.id ?? null) as JsonRpcId;
    // Streamable HTTP lets the server answer a POST with JSON or an event stream; the stream
    // when the client takes one, as it also carries the request's progress notifications.
    const accept = String(req.headers.accept ?? '');
    const streaming = accept.includes('text/event-stream');
    if (requests.length > 0 && !streaming && accept !== '' && !/application\/json|application\/\*|\*\/\*/.test(accept)) {
      return sendJsonRpcError(res, 406, 'invalid_request', 'the client must accept application/json or text/event-stream', firstId, request.responseHeaders);
    }

    const initialize = messages.some(({ message }) => message.method === 'initialize');
    let session: LegacySession | undefined;
    if (initialize) {
      // "The initialize request MUST NOT be part of a JSON-RPC batch" (MCP 2025-03-26, lifecycle).
      if (messages.length > 1) return sendJsonRpcError(res, 400, 'invalid_request', 'initialize must be sent alone, not in a batch', firstId, request.responseHeaders);
      try {
        session = await openSession(request);
      } catch (error) {
        return answerUpstreamError(res, error, firstId, request, options.metrics);
      }
    } else {
      session = sessionOf(req, res, request, firstId);
      if (!session) return;
    }

    const onResponse = toolCalls ? (json: string) => {
      const answer = scannedText(json);
      if (answer) toolCalls.answer(answer);
    } : undefined;
    const exchange = requests.length > 0 ? createExchange(requests.map(({ message }) => idKey(message.id)), streaming, onResponse) : undefined;
    if (exchange && !session.expect(exchange, requests.map(({ message }) => message.params?._meta?.progressToken).filter((token) => token !== undefined))) {
      return sendJsonRpcError(res, 400, 'invalid_request', 'a request with this id is already in progress in this session', firstId, request.responseHeaders);
    }
    const headers = upstreamHeaders(request);
    try {
      // One message per POST, in order: the 2024-11-05 endpoint takes single messages.
      for (const { raw } of messages) await session.post(raw, headers);
    } catch (error) {
      if (exchange) session.forget(exchange);
      if (initialize) session.close('initialize failed');
      return answerUpstreamError(res, error, firstId, request, options.metrics);
    }
    const sessionHeader: Record<string, string> = initialize ? { 'mcp-session-id': session.id } : {};
    if (!exchange) {
      res.writeHead(202, { ...request.responseHeaders, ...sessionHeader }).end();
      return;
    }

    // A client gone while its messages were posted waits for nothing.
    if (res.destroyed || req.socket.destroyed) {
      session.forget(exchange);
      return;
    }
    res.once('close', () => session.forget(exchange));
    if (exchange.streaming) {
      res.writeHead(200, { ...request.responseHeaders, ...sessionHeader, 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      res.socket?.setNoDelay(true);
      await exchange.pipeTo(res);
      res.end();
      return;
    }
    const timer = setTimeout(() => {
      session.forget(exchange);
      exchange.abandon();
    }, options.timeoutMs);
    const responses = await exchange.responses();
    clearTimeout(timer);
    if (responses === undefined) {
      if (!res.writableEnded && !res.destroyed) {
        options.metrics?.upstreamFailed('timeout');
        sendJsonRpcError(res, 504, 'upstream_timeout', 'the MCP server did not answer in time', firstId, request.responseHeaders);
      }
      return;
    }
    const text = batch ? `[${responses.join(',')}]` : responses[0] ?? '';
    res.writeHead(200, { ...request.responseHeaders, ...sessionHeader, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const handleGet = (req: IncomingMessage, res: ServerResponse, request: LegacySseRequest) => {
    if (!String(req.headers.accept ?? '').includes('text/event-stream')) {
      return sendJsonRpcError(res, 406, 'invalid_request', 'the client must accept text/event-stream', null, request.responseHeaders);
    }
    const session = sessionOf(req, res, request);
    if (!session) return;
    res.writeHead(200, { ...request.responseHeaders, 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    if (options.metrics) {
      options.metrics.sseStreamOpened();
      res.once('close', options.metrics.sseStreamClosed);
    }
    session.listen(res);
  };

  const handleDelete = (req: IncomingMessage, res: ServerResponse, request: LegacySseRequest) => {
    const session = sessionOf(req, res, request);
    if (!session) return;
    session.close('the client ended the session');
    res.writeHead(204, request.responseHeaders).end();
  };

  return {
    async handle(req, res, request) {
      try {
        if (req.method === 'POST') return await handlePost(req, res, request);
        if (req.method === 'GET') return handleGet(req, res, request);
        if (req.method === 'DELETE') return handleDelete(req, res, request);
        res.writeHead(405, { ...request.responseHeaders, allow: 'GET, POST, DELETE' }).end();
      } catch (error) {
        request.log.error({ err: error }, 'unexpected error in the legacy SSE bridge');
        if (res.headersSent) res.destroy();
        else sendJsonRpcError(res, 500, 'internal_error', 'an unexpected error occurred', null, request.responseHeaders);
      }
    },
    close() {
      clearInterval(sweeper);
      for (const session of [...sessions.values()]) session.close('the gateway is shutting down');
    },
  };
}

type ParsedMessages =
  | { ok: true; batch: boolean; messages: Array<{ raw: Buffer | string; message: JsonRpcMessage }> }
  | { ok: false; status: number; kind: JsonRpcErrorKind; message: string };

/** A JSON-RPC message or batch (JSON-RPC 2.0 §4, §6). A single message is forwarded as the exact bytes received. */
function parseMessages(body: Buffer): ParsedMessages {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, status: 400, kind: 'parse_error', message: 'the request body is not valid JSON' };
  }
  const batch = Array.isArray(parsed);
  const items = (batch ? parsed : [parsed]) as unknown[];
  if (items.length === 0 || !items.every((item) => item !== null && typeof item === 'object' && !Array.isArray(item) && (item as JsonRpcMessage).jsonrpc === '2.0')) {
    return { ok: false, status: 400, kind: 'invalid_request', message: 'the request body is not a JSON-RPC 2.0 message' };
  }
  return {
    ok: true,
    batch,
    messages: items.map((item) => ({ raw: batch ? JSON.stringify(item) : body, message: item as JsonRpcMessage })),
  };
}

function answerUpstreamError(res: ServerResponse, error: unknown, id: JsonRpcId, request: LegacySseRequest, metrics?: ServiceMetrics): void {
  if (!(error instanceof UpstreamError)) throw error;
  if (error.status >= 500) metrics?.upstreamFailed(error.status === 504 ? 'timeout' : 'unreachable');
  request.log.warn({ event: 'legacy_sse.upstream_error', status: error.status, reason: error.message }, 'legacy SSE upstream failed');
  sendJsonRpcError(res, error.status, error.kind, error.clientMessage, id, request.responseHeaders);
}

interface ClientExchange extends Exchange {
  /** Streams every delivered message to `res` until the last response. */
  pipeTo(res: ServerResponse): Promise<void>;
  /** The responses in request order, or undefined when abandoned first. */
  responses(): Promise<string[] | undefined>;
  abandon(): void;
}

/**
 * What one client POST waits for: buffered until the client's response is ready to take it.
 * `onResponse` sees each response as it arrives.
 */
function createExchange(keys: string[], streaming: boolean, onResponse?: (json: string) => void): ClientExchange {
  const awaiting = new Set(keys);
  const byKey = new Map<string, string>();
  const queued: string[] = [];
  let target: ServerResponse | undefined;
  let finish: (value: string[] | undefined) => void = () => undefined;
  const done = new Promise<string[] | undefined>((resolve) => { finish = resolve; });
  const settleIfComplete = () => {
    if (byKey.size === keys.length) finish(keys.map((key) => byKey.get(key)!));
  };
  return {
    awaiting,
    progressTokens: new Set(),
    streaming,
    deliver(json, key) {
      if (key !== undefined) {
        byKey.set(key, json);
        onResponse?.(json);
      }
      if (streaming) {
        if (target && !target.destroyed) target.write(messageEvent(json));
        else queued.push(json);
      }
      settleIfComplete();
    },
    async pipeTo(res) {
      target = res;
      for (const json of queued.splice(0)) res.write(messageEvent(json));
      res.once('close', () => finish(undefined));
      await done;
    },
    responses: () => done,
    abandon: () => finish(undefined),
  };
}
