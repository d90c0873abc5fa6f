/**
 * The request metrics (`gatehouse_http_requests_total`, `gatehouse_http_request_duration_seconds`)
 * for every request the gateway's HTTP server takes, measured on the raw response's `close`,
 * which comes for every response: answered by Fastify, hijacked (MCP endpoints, oidc-provider)
 * or abandoned by the client. Fastify's onResponse hook misses the last kind.
 *
 * - route: the matched route pattern (`/token`, `/authorize/:uid`, `/demo/mcp`), `unmatched`
 *   for a 404 without a route: bounded by the routes registered, never the raw URL.
 * - service: set by an MCP endpoint (ServiceMetrics.countRequest), '' elsewhere.
 * - status: the status sent; 499 (nginx's "client closed request") when the client left before
 *   an answer began. A stream the client closed after its 200 (the usual end of an SSE stream)
 *   counts as 200: an error-rate alert must not fire because clients disconnect.
 *
 * The state rides on the IncomingMessage under private symbols, and one listener function per
 * gateway serves every response: no closure or object per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Metrics } from './metrics.ts';

const STARTED = Symbol('gatehouse.requestStarted');
const ROUTE = Symbol('gatehouse.requestRoute');
const SERVICE = Symbol('gatehouse.requestService');

interface Measured extends IncomingMessage {
  [STARTED]?: number;
  [ROUTE]?: string;
  [SERVICE]?: string;
}

/** Files the request under an MCP service (called by the service's endpoint). */
export function labelRequestService(req: IncomingMessage, service: string): void {
  (req as Measured)[SERVICE] = service;
}

/** Adds the hook that measures every request; call before routes are registered. */
export function measureRequests(app: FastifyInstance, metrics: Pick<Metrics, 'requestEnded'>): void {
  function ended(this: ServerResponse): void {
    const req = this.req as Measured;
    const started = req[STARTED];
    if (started === undefined) return;
    const status = this.writableFinished || this.headersSent ? this.statusCode : 499;
    metrics.requestEnded(req[SERVICE] ?? '', req[ROUTE] ?? 'unmatched', req.method ?? 'other', status, (performance.now() - started) / 1000);
  }
  app.addHook('onRequest', (request, reply, done) => {
    const req = request.raw as Measured;
    req[STARTED] = performance.now();
    req[ROUTE] = request.routeOptions.url ?? 'unmatched';
    reply.raw.on('close', ended);
    done();
  });
}
