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
import { BodyTooLargeError, MeteredBody } from './request-body.ts';

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
   */
  onResponse?: ((status: number, headers: Record<string, string | string[] | undefined>) => Promise<void>) | undefined;
}

// No cap on connections per upstream: every open SSE stream holds one, and a cap would stall
// streams beyond it (seen at 512 in the SSE benchmark).
const agent = new Agent({ keepAliveTimeout: 30_000, connections: null, pipelining: 1 });

function hasBody(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && method !== 'DELETE' && method !== 'OPTIONS';
}

export async function forwardRequest(req: IncomingMessage, res: ServerResponse, options: ForwardOptions): Promise<void> {
  const controller = new AbortController();
  // Only a response closed before it finished means the client went away. Aborting costs a
  // DOMException with a stack trace, so it is not done for every normal end.
  const abort = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.once('close', abort);
  const body = hasBody(options.method) ? new MeteredBody(options.maxBodyBytes) : undefined;
  // A body error (too large, client gone) must fail the upstream request, not crash the process.
  const source = options.body ? Readable.from([options.body]) : req;
  const bodyDone = body ? relay(source, body).catch((error: unknown) => error) : Promise.resolve(undefined);
  for (const [name, value] of Object.entries(options.responseHeaders)) res.setHeader(name, value);
  try {
    const upstream = await request(options.upstream, {
      dispatcher: agent,
      method: options.method as 'POST',
      headers: options.headers,
      body: body ?? null,
      signal: controller.signal,
      headersTimeout: options.timeoutMs,
      bodyTimeout: 0,
    });
    if (options.onResponse) {
      const refused = await options.onResponse(upstream.statusCode, upstream.headers).then(() => undefined, (error: unknown) => error ?? new Error('refused'));
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
        return;
      }
    }
    const headers = clientResponseHeaders(upstream.headers);
    if (String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream')) {
      // Events must reach the client as they are written (no proxy or client buffering).
      headers['cache-control'] = 'no-cache, no-transform';
      headers['x-accel-buffering'] = 'no';
      res.socket?.setNoDelay(true);
    }
    res.writeHead(upstream.statusCode, headers);
    res.flushHeaders();
    await relay(upstream.body, res);
  } catch (error) {
    if (res.headersSent || res.destroyed) {
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
      sendJsonRpcError(res, 504, 'upstream_timeout', 'the MCP server did not answer in time', id);
    } else {
      sendJsonRpcError(res, 502, 'upstream_unavailable', 'the MCP server is unreachable', id);
    }
  } finally {
    res.off('close', abort);
  }
}

export function sendJsonRpcError(res: ServerResponse, status: number, kind: JsonRpcErrorKind, message: string, id: string | number | null = null, extraHeaders: Record<string, string> = {}): void {
  const body = JSON.stringify(jsonRpcError(kind, message, id));
  res.writeHead(status, { ...extraHeaders, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
