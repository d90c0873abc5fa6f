/**
 * Which headers cross the proxy. Allow-lists, not deny-lists: a header the gateway does not
 * know is not forwarded (RFC 9110 §7.6.1 hop-by-hop headers never are).
 */

/** Request headers an MCP client may send on to the server. */
const REQUEST_ALLOW = new Set([
  'accept', 'accept-language', 'content-type', 'content-length', 'user-agent', 'last-event-id',
  'mcp-session-id', 'mcp-protocol-version', 'mcp-method', 'mcp-name', 'traceparent', 'tracestate',
]);

/**
 * Response headers the server may send back to the client. `allow` goes with a 405 (RFC 9110
 * §15.5.6), which 2026-07-28 servers answer to GET and DELETE.
 */
const RESPONSE_ALLOW = new Set([
  'content-type', 'content-length', 'cache-control', 'mcp-session-id', 'mcp-protocol-version',
  'retry-after', 'etag', 'last-modified', 'content-language', 'vary', 'allow',
]);

export interface IdentityHeaderNames {
  user_id: string;
  email: string;
  name: string;
  groups: string;
  provider: string;
  client_id: string;
}

export interface ForwardedIdentity {
  accountId: string;
  email?: string | undefined;
  name?: string | undefined;
  groups: readonly string[];
  provider: string;
  clientId: string;
}

type IncomingHeaders = Record<string, string | string[] | undefined>;

/** Headers for the upstream request: allowed client headers, then the gateway's own. */
export function upstreamRequestHeaders(
  incoming: IncomingHeaders,
  options: { identity?: ForwardedIdentity | undefined; names?: IdentityHeaderNames | null | undefined; requestId: string },
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (REQUEST_ALLOW.has(lower) || lower.startsWith('mcp-param-')) headers[lower] = Array.isArray(value) ? value.join(', ') : value;
  }
  headers['x-request-id'] = options.requestId;
  const { identity, names } = options;
  // Identity headers are never in the allow-list above, so a caller's copies never pass.
  if (identity && names) Object.assign(headers, identityHeaders(identity, names));
  return headers;
}

/** The identity headers for one user under the service's configured names (lower case). */
export function identityHeaders(identity: ForwardedIdentity, names: IdentityHeaderNames): Record<string, string> {
  const headers: Record<string, string> = {};
  headers[names.user_id.toLowerCase()] = identity.accountId;
  if (identity.email) headers[names.email.toLowerCase()] = identity.email;
  if (identity.name) headers[names.name.toLowerCase()] = encodeHeaderText(identity.name);
  if (identity.groups.length > 0) headers[names.groups.toLowerCase()] = identity.groups.map(encodeHeaderText).join(',');
  headers[names.provider.toLowerCase()] = identity.provider;
  headers[names.client_id.toLowerCase()] = identity.clientId;
  return headers;
}

/** Header values are Latin-1 on the wire; percent-encode anything else so names survive. */
function encodeHeaderText(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

export function clientResponseHeaders(upstream: IncomingHeaders): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value !== undefined && RESPONSE_ALLOW.has(name.toLowerCase())) headers[name.toLowerCase()] = value;
  }
  return headers;
}
