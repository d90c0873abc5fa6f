/**
 * Every Prometheus metric the gateway exports, with its closed set of labels, in one place
 * (docs/operations.md, "Metrics", is the reference). The rest of the code calls the narrow
 * methods below, never prom-client.
 *
 * Labels are low-cardinality by construction: service ids, route patterns and identity provider
 * ids come from the configuration; methods and statuses are bounded sets; client names (which
 * anyone who registers a client chooses) are normalised, truncated and capped. Never a user id,
 * client id, token id or session id.
 *
 * Each gateway has its own registry (tests run many gateways in one process); the default
 * process metrics (`process_*`, `nodejs_*`, unprefixed as every Node exporter names them)
 * describe the process, so one registry per process holds them and every gateway serves it.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { IncomingMessage } from 'node:http';
import type { CircuitState, ProxyMetrics, ServiceMetrics, UpstreamFailure } from '../proxy/service-metrics.ts';
import { labelRequestService } from './request-metrics.ts';

export interface Metrics extends ProxyMetrics {
  /** The Content-Type of `render()`'s text. */
  readonly contentType: string;
  /** The text exposition of every metric (process metrics first). */
  render(): Promise<string>;
  /** One HTTP request ended (finished or abandoned); `service` is '' outside MCP endpoints. */
  requestEnded(service: string, route: string, method: string, status: number, seconds: number): void;
  /** One store call took `seconds`; `ok` false when it rejected. */
  storeOperation(operation: string, seconds: number, ok: boolean): void;
  /** An audit event of the authorization server (sign-in, token, client, consent, denial). */
  authEvent(event: string, labels: { client?: string | undefined; provider?: string | undefined }): void;
  /** An MCP tool call ended (audit event `tool.called`). */
  toolCalled(service: string, outcome: string, seconds: number | undefined): void;
  /** A request was refused by a rate limit; `scope` is what was counted (`ip`, `client`). */
  rateLimited(endpoint: string, scope: string): void;
  circuitStateChanged(service: string, state: CircuitState): void;
}

/** Distinct client names labelled; later ones count as `other`. */
export const CLIENT_LABEL_CAP = 50;
const PROVIDER_LABEL_CAP = 20;
const OUTCOME_LABEL_CAP = 10;
const RATE_LIMIT_LABEL_CAP = 20;
const LABEL_MAX_LENGTH = 48;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const TOOL_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']);
const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half_open'];

let processRegistry: Registry | undefined;

/** The process metrics, collected once per process however many gateways it runs. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Caches a value per label value: one Map lookup per call, nothing allocated once warm. */
function by1<K, T>(create: (a: K) => T): (a: K) => T {
  const cache = new Map<K, T>();
  return (a) => {
    let hit = cache.get(a);
    if (hit === undefined) {
      hit = create(a);
      cache.set(a, hit);
    }
    return hit;
  };
}

function by2<A, B, T>(create: (a: A, b: B) => T): (a: A, b: B) => T {
  const outer = by1((a: A) => by1((b: B) => create(a, b)));
  return (a, b) => outer(a)(b);
}

function by3<A, B, C, T>(create: (a: A, b: B, c: C) => T): (a: A, b: B, c: C) => T {
  const outer = by1((a: A) => by2((b: B, c: C) => create(a, b, c)));
  return (a, b, c) => outer(a)(b, c);
}

/** Printable text, whitespace collapsed, at most `LABEL_MAX_LENGTH` characters. */
export function normaliseLabel(value: string): string {
  return value.normalize('NFKC').replace(/\p{C}+/gu, ' ').replace(/\s+/g, ' ').trim().slice(0, LABEL_MAX_LENGTH).trim();
}

/**
 * A label for values chosen outside the configuration: normalised, `unknown` when empty, and
 * after `cap` distinct values `other`, so no one can grow the number of series without bound.
 */
export function cappedLabel(cap: number): (value: string | undefined) => string {
  const seen = new Set<string>();
  // Values seen before skip the normalising; the memory is bounded like everything here.
  const known = new Map<string, string>();
  const label = (value: string): string => {
    const normalised = normaliseLabel(value);
    if (normalised === '' || normalised === 'unknown') return 'unknown';
    if (seen.has(normalised)) return normalised;
    if (seen.size >= cap) return 'other';
    seen.add(normalised);
    return normalised;
  };
  return (value) => {
    if (value === undefined) return 'unknown';
    let hit = known.get(value);
    if (hit === undefined) {
      hit = label(value);
      if (known.size >= 1000) known.clear();
      known.set(value, hit);
    }
    return hit;
  };
}

/** Every metric, with its name, help and closed label set, in `registry`. */
function defineMetrics(registry: Registry) {
  const registers = [registry];
  const requests = new Counter({ name: 'gatehouse_http_requests_total', help: 'HTTP requests served, by MCP service (empty for the gateway\'s own endpoints), route pattern, method and status (499: the client left before an answer began).', labelNames: ['service', 'route', 'method', 'status'], registers });
  const requestSeconds = new Histogram({ name: 'gatehouse_http_request_duration_seconds', help: 'Time from a request\'s arrival to the end of its answer (for GET on an MCP endpoint: the life of the event stream).', labelNames: ['service', 'route', 'method'], buckets: LATENCY_BUCKETS, registers });
  const upstreamSeconds = new Histogram({ name: 'gatehouse_upstream_response_seconds', help: 'Time until an MCP server sent its response headers (or accepted a WebSocket).', labelNames: ['service'], buckets: LATENCY_BUCKETS, registers });
  const upstreamErrors = new Counter({ name: 'gatehouse_upstream_errors_total', help: 'Requests or processes for which an MCP server gave no (complete) answer, by kind.', labelNames: ['service', 'kind'], registers });
  const sseStreams = new Gauge({ name: 'gatehouse_sse_streams', help: 'Event streams from MCP servers to clients open now.', labelNames: ['service'], registers });
  const webSockets = new Gauge({ name: 'gatehouse_websocket_connections', help: 'WebSocket connections relayed now.', labelNames: ['service'], registers });
  const stdioProcesses = new Gauge({ name: 'gatehouse_stdio_processes', help: 'MCP server processes (services with command) running now.', labelNames: ['service'], registers });
  const stdioExits = new Counter({ name: 'gatehouse_stdio_process_exits_total', help: 'MCP server processes gone, by reason: stopped (by the gateway), crashed, spawn_failed.', labelNames: ['service', 'reason'], registers });
  const circuit = new Gauge({ name: 'gatehouse_circuit_state', help: 'Circuit breaker state per service: 1 for the current state, 0 for the others.', labelNames: ['service', 'state'], registers });
  const storeSeconds = new Histogram({ name: 'gatehouse_store_operation_seconds', help: 'Time of store calls, by operation.', labelNames: ['operation'], buckets: STORE_BUCKETS, registers });
  const storeErrors = new Counter({ name: 'gatehouse_store_errors_total', help: 'Store calls that failed, by operation.', labelNames: ['operation'], registers });
  const authEvents = new Counter({ name: 'gatehouse_auth_events_total', help: 'Authorization events (the audit trail\'s), by event, client name and identity provider.', labelNames: ['event', 'client', 'provider'], registers });
  const toolCalls = new Counter({ name: 'gatehouse_tool_calls_total', help: 'MCP tool calls, by service and outcome.', labelNames: ['service', 'outcome'], registers });
  const toolSeconds = new Histogram({ name: 'gatehouse_tool_call_duration_seconds', help: 'Time from a tool call to its result.', labelNames: ['service'], buckets: TOOL_BUCKETS, registers });
  const rateLimits = new Counter({ name: 'gatehouse_rate_limited_total', help: 'Requests refused by a rate limit, by endpoint and what was counted (ip, client, client_metadata, global).', labelNames: ['endpoint', 'scope'], registers });
  return { requests, requestSeconds, upstreamSeconds, upstreamErrors, sseStreams, webSockets, stdioProcesses, stdioExits, circuit, storeSeconds, storeErrors, authEvents, toolCalls, toolSeconds, rateLimits };
}

type Defined = ReturnType<typeof defineMetrics>;

/** 1 for the circuit's current state, 0 for its others (the usual encoding of an enum). */
function setCircuit(metric: Defined, service: string, state: CircuitState): void {
  for (const each of CIRCUIT_STATES) metric.circuit.labels(service, each).set(each === state ? 1 : 0);
}

/** One service's metrics, every label child made once. */
function serviceMetrics(metric: Defined, service: string): ServiceMetrics {
  const upstream = metric.upstreamSeconds.labels(service);
  const failures = by1((kind: UpstreamFailure) => metric.upstreamErrors.labels(service, kind));
  const sse = metric.sseStreams.labels(service);
  const ws = metric.webSockets.labels(service);
  const processes = metric.stdioProcesses.labels(service);
  const exits = by1((reason: string) => metric.stdioExits.labels(service, reason));
  return {
    countRequest: (req: IncomingMessage) => labelRequestService(req, service),
    upstreamResponded: (seconds) => upstream.observe(seconds),
    upstreamFailed: (kind) => failures(kind).inc(),
    sseStreamOpened: () => sse.inc(),
    sseStreamClosed: () => sse.dec(),
    webSocketOpened: () => ws.inc(),
    webSocketClosed: () => ws.dec(),
    stdioProcessStarted: () => processes.inc(),
    stdioProcessExited: (reason) => {
      processes.dec();
      exits(reason).inc();
    },
    circuitStateChanged: (state) => setCircuit(metric, service, state),
  };
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const metric = defineMetrics(registry);
  const requestCounter = by3((service: string, route: string, method: string) => by1((status: number) => metric.requests.labels(service, route, method, String(status))));
  const requestTimer = by3((service: string, route: string, method: string) => metric.requestSeconds.labels(service, route, method));
  const storeTimer = by1((operation: string) => metric.storeSeconds.labels(operation));
  const storeFailures = by1((operation: string) => metric.storeErrors.labels(operation));
  const clientLabel = cappedLabel(CLIENT_LABEL_CAP);
  const providerLabel = cappedLabel(PROVIDER_LABEL_CAP);
  const outcomeLabel = cappedLabel(OUTCOME_LABEL_CAP);
  const limitedEndpoint = cappedLabel(RATE_LIMIT_LABEL_CAP);
  const limitedScope = cappedLabel(RATE_LIMIT_LABEL_CAP);
  const authCounter = by3((event: string, client: string, provider: string) => metric.authEvents.labels(event, client, provider));
  const toolCounter = by2((service: string, outcome: string) => metric.toolCalls.labels(service, outcome));
  const toolTimer = by1((service: string) => metric.toolSeconds.labels(service));

  return {
    contentType: registry.contentType,
    async render() {
      const [process, own] = await Promise.all([processMetrics().metrics(), registry.metrics()]);
      return process.endsWith('\n') || process === '' ? process + own : `${process}\n${own}`;
    },
    forService: by1((service: string) => serviceMetrics(metric, service)),
    requestEnded(service, route, method, status, seconds) {
      const verb = METHODS.has(method) ? method : 'other';
      requestCounter(service, route, verb)(status).inc();
      requestTimer(service, route, verb).observe(seconds);
    },
    storeOperation(operation, seconds, ok) {
      storeTimer(operation).observe(seconds);
      if (!ok) storeFailures(operation).inc();
    },
    authEvent(event, labels) {
      authCounter(event, clientLabel(labels.client), labels.provider === undefined ? '' : providerLabel(labels.provider)).inc();
    },
    toolCalled(service, outcome, seconds) {
      toolCounter(service, outcomeLabel(outcome)).inc();
      if (seconds !== undefined && Number.isFinite(seconds) && seconds >= 0) toolTimer(service).observe(seconds);
    },
    rateLimited(endpoint, scope) {
      metric.rateLimits.labels(limitedEndpoint(endpoint), limitedScope(scope)).inc();
    },
    circuitStateChanged: (service, state) => setCircuit(metric, service, state),
  };
}
