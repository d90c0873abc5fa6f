/**
 * ForwardAuth: the bearer and policy checks of a protected MCP endpoint, for another reverse
 * proxy that forwards the request itself (nginx `auth_request`, Traefik `forwardAuth`, Caddy
 * `forward_auth`). The proxy sends the client's headers to `/forward-auth/<service>` (or to
 * `/forward-auth` with the original path in `X-Forwarded-Uri` / `X-Original-URI`) and acts on
 * the answer:
 *
 *   200, no body     allowed: copy the identity headers of this answer onto the upstream request
 *   401              no token, or a bad, expired, revoked or another service's token; the
 *                    `WWW-Authenticate` challenge points at the gateway's protected-resource
 *                    metadata for the service (RFC 9728 §5.1), so the client discovers the rest
 *   403              refused by the access policy, a foreign browser Origin, or a caller that is
 *                    not an allowed proxy
 *   404              no such service (every proxy turns this into an error: fails closed)
 *
 * Steps, in order:
 *   1. peer          the TCP peer (never X-Forwarded-For) must be in `forward_auth.allowed_ips`:
 *                    a 200 here carries identity headers the server trusts, and the upstream
 *                    token where one is forwarded
 *   2. service       by name, else by the forwarded URI's path
 *   3. origin, bearer, access policy, identity headers, upstream token: authorize-request.ts,
 *                    exactly as on the MCP endpoint
 *
 * Not done here: scopes by JSON-RPC method (`method_scopes`) need the request body, which no
 * auth subrequest carries; binding `Mcp-Session-Id`s to their account needs the server's
 * answers, which go through the proxy only; body size limits and upstream timeouts are the proxy's.
 */
import { BlockList, isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ProtectedService, ServiceCatalog } from '../authz/index.ts';
import { jsonRpcError } from '../errors/index.ts';
import { authorizeBearer, checkOrigin, serviceHeaders, type AuthorizationContext, type ForwardDefinition } from './authorize-request.ts';

export const FORWARD_AUTH_PATH = '/forward-auth';

type Service = ProtectedService<ForwardDefinition & { path: string }>;

export interface ForwardAuthContext extends AuthorizationContext {
  services: ServiceCatalog<ForwardDefinition & { path: string }>;
  /** Addresses and CIDR ranges of the proxies that may call (`forward_auth.allowed_ips`). */
  allowedIps: readonly string[];
}

/** A matcher for addresses and CIDR ranges (`10.0.0.0/8`, `::1`); IPv4-mapped IPv6 peers match their IPv4 rules. */
export function createAddressList(ranges: readonly string[]): (address: string | undefined) => boolean {
  const list = new BlockList();
  const family = (address: string) => (isIP(address) === 6 ? 'ipv6' : 'ipv4');
  for (const range of ranges) {
    const [address = '', prefix] = range.split('/');
    if (isIP(address) === 0) throw new Error(`not an IP address or CIDR range: ${range}`);
    if (prefix === undefined) list.addAddress(address, family(address));
    else list.addSubnet(address, Number(prefix), family(address));
  }
  return (address) => address !== undefined && isIP(address) !== 0 && list.check(address, family(address));
}

export function registerForwardAuth(app: FastifyInstance, context: ForwardAuthContext): void {
  const peerAllowed = createAddressList(context.allowedIps);

  const handle = async (request: FastifyRequest, reply: FastifyReply) => {
    // Whatever a proxy sends along (nginx sends the original method's headers), the body is not read.
    request.raw.resume();
    const refuse = (status: number, kind: 'unauthorized' | 'forbidden' | 'not_found', message: string, headers: Record<string, string> = {}) =>
      reply.code(status).headers({ ...headers, 'cache-control': 'no-store' }).send(jsonRpcError(kind, message));

    const peer = request.raw.socket.remoteAddress;
    if (!peerAllowed(peer)) {
      request.log.warn({ event: 'forward_auth.refused', peer }, 'ForwardAuth call from an address not in forward_auth.allowed_ips');
      return refuse(403, 'forbidden', 'this address may not use ForwardAuth');
    }
    const service = serviceFor(request, context.services);
    if (!service) return refuse(404, 'not_found', 'no protected service matches this ForwardAuth request');

    const foreign = checkOrigin(request.headers.origin, context);
    if (foreign) return refuse(foreign.status, foreign.kind, foreign.message);
    const authorizing = request.trace?.step('gatehouse.authorize');
    const authorized = await authorizeBearer(request.headers.authorization, service, context, request.log);
    authorizing?.end(authorized.ok ? 'allowed' : authorized.kind, { 'gatehouse.service': service.id });
    if (!authorized.ok) return refuse(authorized.status, authorized.kind, authorized.message, authorized.headers);
    const own = await serviceHeaders(service, authorized, context, request.log);
    if (!own.ok) return refuse(own.status, own.kind, own.message, own.headers);
    return reply.code(200).headers({ ...own.headers, 'cache-control': 'no-store' }).send();
  };

  // Every method: nginx's subrequest keeps the client's method; Traefik and Caddy send GET.
  const method = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
  for (const url of [FORWARD_AUTH_PATH, `${FORWARD_AUTH_PATH}/:service`]) {
    app.route({ method, url, onRequest: handle, handler: async () => undefined });
  }
}

/** The service named in the path, or the one whose path the proxy forwarded (Traefik and Caddy: X-Forwarded-Uri; nginx, by config: X-Original-URI). */
function serviceFor(request: FastifyRequest, services: ForwardAuthContext['services']): Service | undefined {
  const name = (request.params as { service?: string }).service;
  if (name !== undefined) return services.byId(name);
  const forwarded = request.headers['x-forwarded-uri'] ?? request.headers['x-original-uri'];
  if (typeof forwarded !== 'string' || !forwarded.startsWith('/')) return undefined;
  return services.byPath(forwarded.split('?')[0] ?? '');
}
