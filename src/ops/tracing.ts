/**
 * OpenTelemetry tracing (`tracing`), off by default.
 *
 * Off: `createTracing` answers undefined, nothing of the OpenTelemetry SDK is loaded (start-up
 * time, docs/performance.md), no hook is added, and `request.trace` is undefined, so a traced
 * step costs one property read. On: the SDK is imported here, once (tracing-sdk.ts), and
 *
 *   - every HTTP request gets a server span, continuing an incoming W3C `traceparent`
 *     (parent-based sampling); it ends when the response closes, since MCP endpoints hijack
 *     the reply and stream on the raw response;
 *   - the gateway's own steps (bearer check and policy, the identity it forwards, the code
 *     exchange at the identity provider) are child spans: `request.trace?.step(name)`;
 *   - the request to the MCP server is a client span whose context replaces, in the upstream
 *     request's headers, any `traceparent`/`tracestate` the client sent (W3C Trace Context §3).
 *
 * Spans never carry tokens, codes, query strings, e-mail addresses, names or account ids.
 * Each gateway holds its own tracer provider: nothing is registered globally, so gateways
 * started side by side (tests) don't see each other's spans.
 */
import type { ServerResponse } from 'node:http';

/** What a span needs of an answer: a response, or a WebSocket handshake's outcome. */
export type AnswerState = Pick<ServerResponse, 'headersSent' | 'statusCode'>;
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';

export type TracingConfig = Config['tracing'];

/** A span of one of the gateway's own steps. */
export interface TraceStep {
  /**
   * Ends the step with its outcome (`allowed`, `unauthorized`, `signed_in`, …), recorded as
   * `gatehouse.outcome`; `error` also marks the span as failed. A second call does nothing.
   */
  end(outcome: string, attributes?: Readonly<Record<string, string | number | boolean>>): void;
}

/** The client span of the request to the MCP server. */
export interface TraceHop {
  /**
   * Ends the hop when the answer to the client is complete, with the status the client got;
   * 5xx (the server's, or the gateway's 502/504 for an unreachable or slow one) marks it as failed.
   */
  end(response: AnswerState): void;
}

/** One HTTP request's server span and what hangs under it. */
export interface RequestTrace {
  /** Starts a child span for a step of the gateway's own; one not ended when the response closes ends with it. */
  step(name: string): TraceStep;
  /**
   * Starts the client span of the hop to `upstream` (a URL, or a name such as `stdio`) and,
   * unless `tracing.propagate_to_upstream` is off, writes its context into `headers` as
   * `traceparent`/`tracestate`, replacing the client's. Off: the client's are removed too.
   */
  hop(method: string, upstream: string, headers?: Record<string, string>): TraceHop;
  /**
   * Names the protected service the request is for (its path is the span's route: services are
   * routed by one wildcard route, service-routes.ts), and its MCP method when the client's
   * `Mcp-Method` header says it.
   */
  forService(service: { id: string; path: string }, mcpMethod: string | string[] | undefined): void;
}

/** What the server span of a request is made from. */
export interface TracedRequest {
  method: string;
  /** Without the query string. */
  path: string;
  /** The route's template (`/register/:clientId`), when a route matched. */
  route: string | undefined;
  scheme: string;
  requestId: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface Tracing {
  startRequest(request: TracedRequest): RequestTrace & { finish(response: AnswerState): void };
  /** Sends what is still queued, then stops (bounded by a deadline: shutdown must not hang on a dead collector). */
  shutdown(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's trace; undefined when tracing is off or the route is not traced. */
    trace?: RequestTrace | undefined;
  }
}

/** Probes and scrapes: frequent, uninteresting, and they would drown the traces worth keeping. */
const UNTRACED_ROUTES = new Set(['/health', '/ready', '/metrics']);

/** The gateway's tracing, or undefined when `tracing.enabled` is off (then nothing is loaded). */
export async function createTracing(config: TracingConfig, logger: Logger): Promise<Tracing | undefined> {
  if (!config.enabled) return undefined;
  const { createOtelTracing } = await import('./tracing-sdk.ts');
  return createOtelTracing(config, logger);
}

/** Gives every request (but probes) a server span, at `request.trace`. */
export function traceRequests(app: FastifyInstance, tracing: Tracing): void {
  app.decorateRequest('trace', undefined);
  app.addHook('onRequest', (request, reply, done) => {
    const route = request.routeOptions.url;
    if (route === undefined || !UNTRACED_ROUTES.has(route)) {
      const trace = tracing.startRequest({
        method: request.method,
        path: request.url.split('?', 1)[0] ?? '/',
        route,
        scheme: request.protocol,
        requestId: request.id,
        headers: request.headers,
      });
      request.trace = trace;
      // 'close' comes after 'finish', and also when the client went away mid-answer.
      reply.raw.once('close', () => trace.finish(reply.raw));
    }
    done();
  });
}
