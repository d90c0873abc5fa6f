/**
 * Streamable HTTP forwarding: bodies stream both ways and are never buffered whole; SSE events
 * are written as they arrive; a client that goes away aborts the upstream request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Agent, errors as undiciErrors, request } from 'undici';
import { jsonRpcError, type JsonRpcErrorKind } from '../errors/index.ts';
import { clientResponseHeaders } from './headers.ts';

export interface ForwardOptions {
  upstream: string;
  method: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** The JSON-RPC id of the request, when the gateway could read it, for error bodies. */
  rpcId?: string | number | null;
}

const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256, pipelining: 1 });

export async function forwardRequest(req: IncomingMessage, res: ServerResponse, options: ForwardOptions): Promise<void> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  res.once('close', abort);
  const hasBody = options.method !== 'GET' && options.method !== 'HEAD' && options.method !== 'DELETE';
  try {
    const upstream = await request(options.upstream, {
      dispatcher: agent,
      method: options.method as 'POST',
      headers: options.headers,
      body: hasBody ? req : null,
      signal: controller.signal,
      headersTimeout: options.timeoutMs,
      bodyTimeout: 0,
    });
    const headers = clientResponseHeaders(upstream.headers);
    if (String(upstream.headers['content-type'] ?? '').startsWith('text/event-stream')) {
      headers['cache-control'] = 'no-cache, no-transform';
      headers['x-accel-buffering'] = 'no';
      res.socket?.setNoDelay(true);
    }
    res.writeHead(upstream.statusCode, headers);
    res.flushHeaders();
    await pipeline(upstream.body, res);
  } catch (error) {
    if (res.headersSent || controller.signal.aborted) {
      res.destroy();
      return;
    }
    const timeout = error instanceof undiciErrors.HeadersTimeoutError;
    sendJsonRpcError(res, timeout ? 504 : 502, timeout ? 'upstream_timeout' : 'upstream_unavailable',
      timeout ? 'the MCP server did not answer in time' : 'the MCP server is unreachable', options.rpcId ?? null);
  } finally {
    res.off('close', abort);
  }
}

export function sendJsonRpcError(res: ServerResponse, status: number, kind: JsonRpcErrorKind, message: string, id: string | number | null = null, extraHeaders: Record<string, string> = {}): void {
  const body = JSON.stringify(jsonRpcError(kind, message, id));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extraHeaders });
  res.end(body);
}
