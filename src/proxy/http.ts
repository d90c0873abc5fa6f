/**
 * Streamable HTTP forwarding: bodies stream both ways and are never buffered whole; SSE events
 * are written as they arrive; a client that goes away aborts the upstream request, and an
 * upstream that goes away ends the client's response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { relay } from './relay.ts';
import { Agent, errors as undiciErrors, request } from 'undici';
import { jsonRpcError, OAuthError, type JsonRpcErrorKind } from '../errors/index.ts';
import { StoreUnavailableError } from '../store/index.ts';
import { clientResponseHeaders } from './headers.ts';
import { BodyTooLargeError, jsonRpcIdOf, MeteredBody } from './request-body.ts';
import { isFailureStatus, type CircuitBreaker } from './circuit-breaker.ts';
import type { OpenStreams } from './open-streams.ts';
import { isUpstreamFailure, mayRetry } from './upstream-failures.ts';
import { failForwardedCalls, failUnreadCalls, forwardedCalls, watchAnswers } from './tool-call-stream.ts';
import type { ToolCallWatch } from './tool-calls.ts';
import type { ServiceMetrics } from './service-metrics.ts';

export interface ForwardOptions {
  upstream: string;
  method: string;
  headers: Record<string, string>;
  timeoutMs: number;
  maxBodyBytes: number;
  /** Extra response headers (CORS) for every answer, including the gateway's own errors. */
  responseHeaders: Record<string, string>;
  /** The body, when a policy already had to read it; otherwise it is streamed from `req`. */
  body?: Buffer | undefined;
  /**
   * Sees the upstream's status and headers before the client does (session-owners.ts records a
   * new `Mcp-Session-Id` there). When it rejects, the client gets 503 instead of the answer.
   * Undefined when it has nothing to do: no promise to wait for on the usual answer.
   */
  onResponse?: ((status: number, headers: Record<string, string | string[] | undefined>) => Promise<void> | undefined) | undefined;
  /** The service's circuit breaker (circuit-breaker.ts): while open, an immediate 503. */
  breaker?: CircuitBreaker | undefined;
  /** Event-stream answers are registered here, so a shutdown can end them cleanly (open-streams.ts). */
  streams?: OpenStreams | undefined;
  /** Audits the `tools/call` requests of the body, if any (tool-call-stream.ts). */
  toolCalls?: ToolCallWatch | undefined;
  /** The service's metrics: upstream latency and failures, open event streams. */
  metrics?: ServiceMetrics | undefined;
}

// No cap on connections per upstream: every open SSE stream holds one, and a cap would stall
// streams beyond it (seen at 512 in the SSE benchmark).
const agent = new Agent({ keepAliveTimeout: 30_000, connections: null, pipelining: 1 });

function hasBody(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && method !== 'DELETE' && method !== 'OPTIONS';
}

export async function forwardRequest(req: IncomingMessage, res: ServerResponse, options: ForwardOptions): Promise<void> {
  const breaker = options.breaker;
  if (breaker && !breaker.admit()) {
    options.metrics?.upstreamFailed('circuit_open');
    refuseOpenCircuit(req, res, options, breaker);
    return;
  }
  const controller = new AbortController();
  // Only a response closed before it finished means the client went away. Aborting costs a
  // DOMException with a stack trace, so it is not done for every normal end.
  const abort = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.once('close', abort);
  let body = hasBody(options.method) ? new MeteredBody(options.maxBodyBytes) : undefined;
  // A body error (too large, client gone) must fail the upstream request, not crash the process.
  const source = options.body ? Readable.from([options.body]) : req;
  const bodyDone = body ? relay(source, body).catch((error: unknown) => error) : Promise.resolve(undefined);
  for (const [name, value] of Object.entries(options.responseHeaders)) res.setHeader(name, value);
  const started = performance.now();
  try {
    let upstream: Awaited<ReturnType<typeof dispatch>>;
    try {
      ({ upstream, body } = await sendUpstream(options, body, controller.signal));
      options.metrics?.upstreamResponded((performance.now() - started) / 1000);
    } catch (error) {
      if (breaker) {
        if (isUpstreamFailure(error, controller.signal.aborted || res.destroyed)) breaker.failed();
        else breaker.released();
      }
      throw error;
    }
    if (breaker) {
      if (isFailureStatus(upstream.statusCode)) breaker.failed();
      else breaker.succeeded();
    }
    const recording = options.onResponse?.(upstream.statusCode, upstream.headers);
    if (recording) {
      const refused = await recording.then(() => undefined, (error: unknown) => error ?? new Error('refused'));
      if (refused !== undefined) {
        // Drop the answer; destroying the body emits an abort error that nobody needs.
        upstream.body.on('error', () => undefined).destroy();
        if (refused instanceof StoreUnavailableError) {
          // The same answer as every other step of the endpoint gives while the store is down (app.ts).
          const answer = JSON.stringify(new OAuthError('temporarily_unavailable', 'the gateway cannot reach its store; try again shortly'));
          res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer), 'retry-after': '5' });
          res.end(answer);
        } else {
          sendJsonRpcError(res, 503, 'service_unavailable', 'the gateway could not take this answer from the MCP server; try again', body?.rpcId() ?? null, { 'retry-after': '5' });
        }
        failForwardedCalls(options.toolCalls, body, 503);
        return;
      }
    }
    const headers = clientResponseHeaders(upstream.headers);
    const eventStream = String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream');
    if (eventStream) {
      // Events must reach the client as they are written (no proxy or client buffering).
      headers['cache-control'] = 'no-cache, no-transform';
      headers['x-accel-buffering'] = 'no';
      res.socket?.setNoDelay(true);
      options.streams?.track(res, options.method === 'GET' ? 'listen' : 'call', () => endRelay(upstream.body, res));
      if (options.metrics) {
        options.metrics.sseStreamOpened();
        res.once('close', options.metrics.sseStreamClosed);
      }
    }
    // During a shutdown the client takes its next request to another connection (another replica).
    if (options.streams?.draining) headers.connection = 'close';
    res.writeHead(upstream.statusCode, headers);
    // A stream's headers go at once, its events may be far apart; any other answer's headers go
    // with its first chunk of body: one write to the socket instead of two.
    if (eventStream) res.flushHeaders();
    const calls = options.toolCalls && body ? forwardedCalls(options.toolCalls, body) : undefined;
    if (calls) watchAnswers(calls, upstream.body, upstream.statusCode, String(upstream.headers['content-type'] ?? ''), res);
    await relay(upstream.body, res);
  } catch (error) {
    if (res.headersSent || res.destroyed) {
      // A client that left aborted the exchange itself: no failure of the server's.
      if (res.headersSent && !controller.signal.aborted) options.metrics?.upstreamFailed('interrupted');
      // Headers sent: watchAnswers records the calls. Otherwise the client left while waiting.
      if (!res.headersSent) failForwardedCalls(options.toolCalls, body, 'cancelled');
      res.destroy();
      return;
    }
    // The upstream may have failed before reading the body: read it here (bounded by the size
    // limit and a short wait) so the error can name the request's JSON-RPC id.
    body?.resume();
    const bodyError = await Promise.race([bodyDone, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    const id = body?.rpcId() ?? null;
    if (bodyError instanceof BodyTooLargeError || error instanceof BodyTooLargeError) {
      sendJsonRpcError(res, 413, 'payload_too_large', 'the request body is too large', id, { connection: 'close' });
    } else if (error instanceof undiciErrors.HeadersTimeoutError) {
      options.metrics?.upstreamFailed('timeout');
      sendJsonRpcError(res, 504, 'upstream_timeout', 'the MCP server did not answer in time', id);
    } else {
      options.metrics?.upstreamFailed('unreachable');
      sendJsonRpcError(res, 502, 'upstream_unavailable', 'the MCP server is unreachable', id);
    }
    failForwardedCalls(options.toolCalls, body, res.statusCode);
  } finally {
    res.off('close', abort);
  }
}

function dispatch(options: ForwardOptions, body: MeteredBody | undefined, signal: AbortSignal) {
  return request(options.upstream, {
    dispatcher: agent,
    method: options.method as 'POST',
    headers: options.headers,
    body: body ?? null,
    signal,
    headersTimeout: options.timeoutMs,
    bodyTimeout: 0,
  });
}

/** Sends the request, and once more where that is safe (upstream-failures.ts); with the body that went along. */
async function sendUpstream(options: ForwardOptions, body: MeteredBody | undefined, signal: AbortSignal) {
  try {
    return { upstream: await dispatch(options, body, signal), body };
  } catch (error) {
    // A streamed body went with the first attempt; a buffered one (or none) can go again.
    if (!mayRetry(error, options.method, !body || options.body !== undefined, signal.aborted)) throw error;
    let again = body;
    if (body && options.body) {
      again = new MeteredBody(options.maxBodyBytes);
      again.end(options.body);
    }
    return { upstream: await dispatch(options, again, signal), body: again };
  }
}

export function sendJsonRpcError(res: ServerResponse, status: number, kind: JsonRpcErrorKind, message: string, id: string | number | null = null, extraHeaders: Record<string, string> = {}): void {
  const body = JSON.stringify(jsonRpcError(kind, message, id));
  res.writeHead(status, { ...extraHeaders, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** A fast 503 while the service's circuit is open; the body is drained, not forwarded. */
function refuseOpenCircuit(req: IncomingMessage, res: ServerResponse, options: ForwardOptions, breaker: CircuitBreaker): void {
  failUnreadCalls(options.toolCalls, req, options.body, 503);
  req.resume();
  const id = options.body ? jsonRpcIdOf(options.body.toString('utf8')) : null;
  sendJsonRpcError(res, 503, 'service_unavailable', 'the MCP server is failing; the gateway holds requests back for a moment', id, {
    ...options.responseHeaders,
    'retry-after': String(breaker.retryAfterSeconds()),
  });
}

/** Ends an event stream between the server and the client cleanly (shutdown), and lets go of the server's side. */
function endRelay(from: Readable, to: ServerResponse): void {
  from.unpipe(to);
  from.on('error', () => undefined);
  to.on('error', () => undefined);
  to.end(() => from.destroy());
}
