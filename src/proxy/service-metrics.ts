/**
 * What the proxy reports about one service's traffic. The proxy depends on this interface only;
 * ops/metrics.ts implements it (imports flow proxy → ops, never back). Every method is cheap
 * (label values are bound when the object is made) and never throws.
 */
import type { IncomingMessage } from 'node:http';

/**
 * Why the gateway got no (complete) answer from an MCP server:
 *   unreachable   no connection, or the server refused or broke the exchange before answering
 *   timeout       no response headers within the service's `timeout_ms`
 *   interrupted   the connection broke while the answer was being relayed
 *   circuit_open  not tried: the service's circuit breaker is open
 *   spawn_failed  a `command` server could not be started
 *   exited        a `command` server exited without being asked to
 */
export type UpstreamFailure = 'unreachable' | 'timeout' | 'interrupted' | 'circuit_open' | 'spawn_failed' | 'exited';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface ServiceMetrics {
  /** Counts this request under the service in the gateway's request metrics (ops/request-metrics.ts). */
  countRequest(req: IncomingMessage): void;
  /** The MCP server sent its response headers (or accepted a WebSocket) `seconds` after the request went out. */
  upstreamResponded(seconds: number): void;
  upstreamFailed(kind: UpstreamFailure): void;
  /** An event stream from the server to a client opened; `sseStreamClosed` once it ends, whatever ended it. */
  sseStreamOpened(): void;
  sseStreamClosed(): void;
  webSocketOpened(): void;
  webSocketClosed(): void;
  /** A `command` server process started; `stdioProcessExited` once it is gone (for every start). */
  stdioProcessStarted(): void;
  stdioProcessExited(reason: 'stopped' | 'crashed' | 'spawn_failed'): void;
  /** The service's circuit breaker moved to `state`. */
  circuitStateChanged(state: CircuitState): void;
}

/** Hands out the metrics of each service (the same object for the same id). */
export interface ProxyMetrics {
  forService(serviceId: string): ServiceMetrics;
}
