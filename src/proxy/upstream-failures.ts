/**
 * What an upstream error means for the circuit breaker and for a retry (http.ts).
 *
 * Retries only where the server certainly did not act on the request: an MCP `tools/call` has
 * side effects, and a server that received it may have run it before the connection broke.
 *   - the connection was never made (refused, unreachable, connect timeout): the request
 *     never left the gateway, whatever its method;
 *   - a GET or DELETE whose connection broke before any answer (a kept-alive connection the
 *     server had just closed): idempotent methods may be sent again (RFC 9110 §9.2.2).
 * And only when the body can be sent again: none, or one the gateway already read whole
 * (`method_scopes`); a streamed body is consumed by the first attempt. Never after the answer
 * began, never on a timeout (the server has the request and is slow), once at most.
 */
import { errors as undiciErrors } from 'undici';
import { BodyTooLargeError } from './request-body.ts';

/** The connection was never established. */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** An established connection broke. */
const CONNECTION_BROKE = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/** Whether the request may be sent once more after `error` (see above). `replayable`: no body, or a buffered one. */
export function mayRetry(error: unknown, method: string, replayable: boolean, clientGone: boolean): boolean {
  if (!replayable || clientGone) return false;
  const code = codeOf(error);
  if (NOT_CONNECTED.has(code as string)) return true;
  return (method === 'GET' || method === 'DELETE') && CONNECTION_BROKE.has(code as string);
}

/**
 * Whether `error` counts against the upstream for its circuit breaker: it could not be reached,
 * broke the connection, or did not answer in time. A client that left or sent too large a
 * body says nothing about the server.
 */
export function isUpstreamFailure(error: unknown, clientGone: boolean): boolean {
  if (clientGone || error instanceof BodyTooLargeError) return false;
  if (error instanceof undiciErrors.HeadersTimeoutError) return true;
  const code = codeOf(error);
  return NOT_CONNECTED.has(code as string) || CONNECTION_BROKE.has(code as string);
}
