/**
 * The OpenTelemetry side of tracing.ts, imported only when `tracing.enabled` is on: a tracer
 * provider of this gateway's own (never the global one), spans exported in batches by
 * OTLP/HTTP JSON, and W3C Trace Context read from requests and written to the MCP server.
 *
 * Attribute names follow the OpenTelemetry semantic conventions (HTTP server and client
 * spans); the gateway's own are under `gatehouse.*`. The MCP one is still "development" in the
 * conventions, so it is written out here rather than imported from the incubating entry point.
 */
import {
  defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace,
  type Attributes, type Context, type Span, type Tracer,
} from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, resourceAttributesEnvDetector, resourceFromAttributes, serviceInstanceIdDetector, serviceNameEnvDetector } from '@opentelemetry/resources';
import {
  BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type ReadableSpan, type SpanExporter,
} from '@opentelemetry/sdk-trace';
import {
  ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT, ATTR_SERVICE_NAME, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_SCHEME, ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import type { AnswerState, RequestTrace, TracedRequest, TraceHop, TraceStep, Tracing, TracingConfig } from './tracing.ts';

const ATTR_MCP_METHOD_NAME = 'mcp.method.name';
const ATTR_GATEHOUSE_SERVICE = 'gatehouse.service';
const ATTR_GATEHOUSE_REQUEST_ID = 'gatehouse.request_id';
const ATTR_GATEHOUSE_OUTCOME = 'gatehouse.outcome';
/** At shutdown, what is queued gets this long to reach the collector. */
const SHUTDOWN_DEADLINE_MS = 5000;
/** Export failures are logged at most this often (a collector that is down fails every batch). */
const EXPORT_WARNING_INTERVAL_MS = 60_000;
/** HTTP semantic conventions: a method outside the known set is `_OTHER` (span names stay few). */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

const propagator = new W3CTraceContextPropagator();

export function createOtelTracing(config: TracingConfig, logger: Logger): Tracing {
  const log = logger.child({ component: 'tracing' });
  const exporter = new OTLPTraceExporter({
    // Left out, the exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT.
    ...(config.endpoint !== undefined ? { url: config.endpoint } : {}),
    headers: { ...config.headers },
  });
  const provider = new TracerProvider({
    resource: gatewayResource(config.service_name),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sample_ratio) }),
    spanProcessors: [new BatchSpanProcessor({ exporter: reportingFailures(exporter, log) })],
  });
  const tracer = provider.getTracer('gatehouse');
  const hopTargets = new Map<string, Attributes>();
  const targetOf = (upstream: string) => {
    let attributes = hopTargets.get(upstream);
    if (!attributes) {
      attributes = hopAttributes(upstream);
      if (hopTargets.size < 1000) hopTargets.set(upstream, attributes);
    }
    return attributes;
  };
  log.info({ endpoint: config.endpoint ? new URL(config.endpoint).origin : 'from OTEL_EXPORTER_OTLP_* or http://localhost:4318', sample_ratio: config.sample_ratio }, 'tracing on');
  return {
    startRequest: (request) => new OtelRequestTrace(tracer, request, { targetOf, propagate: config.propagate_to_upstream }),
    async shutdown() {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), SHUTDOWN_DEADLINE_MS);
        timer.unref();
      });
      const done = await Promise.race([provider.shutdown().then(() => 'sent' as const, () => 'failed' as const), deadline]);
      clearTimeout(timer);
      if (done !== 'sent') log.warn({ result: done }, 'the last spans may not have reached the OTLP endpoint');
    },
  };
}

/**
 * service.name: `tracing.service_name`, else OTEL_SERVICE_NAME (or service.name in
 * OTEL_RESOURCE_ATTRIBUTES), else `gatehouse`; plus the other OTEL_RESOURCE_ATTRIBUTES and an
 * instance id that tells replicas apart. In `a.merge(b)`, b's attributes win.
 */
function gatewayResource(serviceName: string | undefined) {
  return defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'gatehouse' }))
    .merge(detectResources({ detectors: [serviceInstanceIdDetector, resourceAttributesEnvDetector, serviceNameEnvDetector] }))
    .merge(serviceName !== undefined ? resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }) : null);
}

/** The exporter, with failed batches said in the log (rarely; never its headers, which hold keys). */
function reportingFailures(exporter: SpanExporter, log: Logger): SpanExporter {
  let lastWarning = 0;
  return {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void) {
      exporter.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS && Date.now() - lastWarning > EXPORT_WARNING_INTERVAL_MS) {
          lastWarning = Date.now();
          log.warn({ spans: spans.length, reason: result.error?.message }, 'spans could not be sent to the OTLP endpoint');
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}

/** Where the hop goes, without credentials or query (an upstream URL may carry an API key in either). */
function hopAttributes(upstream: string): Attributes {
  const url = URL.parse(upstream);
  if (!url || !/^(https?|wss?):$/.test(url.protocol)) return { 'network.transport': 'pipe', 'gatehouse.upstream': upstream.split(':', 1)[0] ?? 'local' };
  const port = url.port ? Number(url.port) : url.protocol === 'https:' || url.protocol === 'wss:' ? 443 : 80;
  return { [ATTR_SERVER_ADDRESS]: url.hostname, [ATTR_SERVER_PORT]: port, [ATTR_URL_FULL]: `${url.protocol}//${url.host}${url.pathname}` };
}

function methodOf(method: string): string {
  return KNOWN_METHODS.has(method) ? method : '_OTHER';
}

interface HopSettings {
  targetOf(upstream: string): Attributes;
  propagate: boolean;
}

class OtelRequestTrace implements RequestTrace {
  readonly #tracer: Tracer;
  readonly #span: Span;
  readonly #context: Context;
  readonly #settings: HopSettings;
  readonly #method: string;
  /** Steps and hops not ended yet: they end with the request (an exception left them, or the client went away). */
  readonly #open = new Set<OpenSpan>();

  constructor(tracer: Tracer, request: TracedRequest, settings: HopSettings) {
    this.#tracer = tracer;
    this.#settings = settings;
    const parent = propagator.extract(ROOT_CONTEXT, request.headers, defaultTextMapGetter);
    const method = methodOf(request.method);
    this.#method = method;
    const userAgent = request.headers['user-agent'];
    // A route's parameters (interaction ids, sign-in state, client ids) stay out: its template stands in for the path.
    const path = request.route?.includes(':') ? request.route : request.path;
    this.#span = tracer.startSpan(request.route ? `${method} ${request.route}` : method, {
      kind: SpanKind.SERVER,
      attributes: {
        [ATTR_HTTP_REQUEST_METHOD]: method,
        [ATTR_URL_PATH]: path,
        [ATTR_URL_SCHEME]: request.scheme,
        [ATTR_GATEHOUSE_REQUEST_ID]: request.requestId,
        ...(request.route ? { [ATTR_HTTP_ROUTE]: request.route } : {}),
        ...(typeof userAgent === 'string' ? { [ATTR_USER_AGENT_ORIGINAL]: userAgent } : {}),
      },
    }, parent);
    this.#context = trace.setSpan(parent, this.#span);
  }

  step(name: string): TraceStep {
    const step = new OtelStep(this.#tracer.startSpan(name, { kind: SpanKind.INTERNAL }, this.#context), this.#open);
    this.#open.add(step);
    return step;
  }

  hop(method: string, upstream: string, headers?: Record<string, string>): TraceHop {
    const span = this.#tracer.startSpan(methodOf(method), {
      kind: SpanKind.CLIENT,
      attributes: { [ATTR_HTTP_REQUEST_METHOD]: methodOf(method), ...this.#settings.targetOf(upstream) },
    }, this.#context);
    if (headers) {
      // The client's trace context never passes as is: the server's parent is this hop.
      delete headers.traceparent;
      delete headers.tracestate;
      if (this.#settings.propagate) propagator.inject(trace.setSpan(this.#context, span), headers, defaultTextMapSetter);
    }
    const hop = new OtelHop(span, this.#open);
    this.#open.add(hop);
    return hop;
  }

  forService(service: { id: string; path: string }, mcpMethod: string | string[] | undefined): void {
    this.#span.updateName(`${this.#method} ${service.path}`);
    this.#span.setAttributes({ [ATTR_GATEHOUSE_SERVICE]: service.id, [ATTR_HTTP_ROUTE]: service.path });
    if (typeof mcpMethod === 'string' && /^[\w/.$-]{1,100}$/.test(mcpMethod)) this.#span.setAttribute(ATTR_MCP_METHOD_NAME, mcpMethod);
  }

  finish(response: AnswerState): void {
    const status = response.headersSent ? response.statusCode : undefined;
    for (const open of this.#open) open.endWithRequest(response);
    if (status !== undefined) this.#span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    // HTTP semantic conventions: on a server span only 5xx is an error (4xx is the client's).
    if (status !== undefined && status >= 500) {
      this.#span.setAttribute(ATTR_ERROR_TYPE, String(status));
      this.#span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.#span.end();
  }
}

interface OpenSpan {
  endWithRequest(response: AnswerState): void;
}

class OtelStep implements TraceStep, OpenSpan {
  readonly #span: Span;
  readonly #open: Set<OpenSpan>;

  constructor(span: Span, open: Set<OpenSpan>) {
    this.#span = span;
    this.#open = open;
  }

  end(outcome: string, attributes?: Readonly<Record<string, string | number | boolean>>): void {
    if (!this.#open.delete(this)) return;
    if (attributes) this.#span.setAttributes(attributes);
    this.#span.setAttribute(ATTR_GATEHOUSE_OUTCOME, outcome);
    if (outcome === 'error') this.#span.setStatus({ code: SpanStatusCode.ERROR });
    this.#span.end();
  }

  /** The request ended first: an exception left the step (a failed request) or the client went away. */
  endWithRequest(response: AnswerState): void {
    this.#open.delete(this);
    const failed = response.headersSent && response.statusCode >= 500;
    this.#span.setAttribute(ATTR_GATEHOUSE_OUTCOME, failed ? 'error' : 'abandoned');
    if (failed) this.#span.setStatus({ code: SpanStatusCode.ERROR });
    this.#span.end();
  }
}

class OtelHop implements TraceHop, OpenSpan {
  readonly #span: Span;
  readonly #open: Set<OpenSpan>;

  constructor(span: Span, open: Set<OpenSpan>) {
    this.#span = span;
    this.#open = open;
  }

  endWithRequest(response: AnswerState): void {
    this.end(response);
  }

  end(response: AnswerState): void {
    if (!this.#open.delete(this)) return;
    // Headers never sent: the client went away before any answer; nothing to say about the server.
    if (!response.headersSent) {
      this.#span.end();
      return;
    }
    const status = response.statusCode;
    this.#span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    if (status >= 500) {
      this.#span.setAttribute(ATTR_ERROR_TYPE, String(status));
      this.#span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.#span.end();
  }
}
