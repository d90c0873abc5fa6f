import { z } from 'zod';
import type { KeyPath } from '../config-error.ts';
import { serviceAccess } from './access.ts';
import {
  always, flag, headerName, integer, isRecord, list, scopeToken, text, toggle, upstreamUrl, wrongType,
} from './primitives.ts';
import { circuitBreaker } from './resilience.ts';
import { serviceAudit } from './service-audit.ts';
import { checkServiceKind, stdioKeys } from './stdio.ts';

/*
 * The MCP servers behind the gateway (`services`): each service, what is forwarded to it, its
 * scopes, and the rules across services (paths, the default service).
 */

// ---------------------------------------------------------------------------------------------
// Paths

/** Paths the gateway serves itself; a service path may be neither one of these nor under one. */
export const reservedPaths: readonly string[] = [
  '/authorize', '/token', '/register', '/revoke', '/introspect', '/jwks', '/.well-known',
  '/interaction', '/callback', '/signin', '/consents', '/health', '/ready', '/metrics',
  '/forward-auth',
];

const pathSegment = /^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$/;

/** Why a string is not usable as a service's URL path, or undefined. */
function servicePathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'must start with /';
  if (path.endsWith('/')) return 'must not end with / (the gateway accepts both forms of the one path)';
  if (/[?#]/.test(path)) return 'must be a path only, without a query or fragment';
  const segments = path.slice(1).split('/');
  if (segments.some((segment) => !pathSegment.test(segment) || segment === '.' || segment === '..')) {
    return 'must be a plain URL path such as /tools/mcp (no empty, "." or ".." segments, no spaces)';
  }
  return undefined;
}

function isUnder(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

// ---------------------------------------------------------------------------------------------
// Services

const identityHeaderNames = z.strictObject(
  {
    user_id: headerName.default('X-User-Id'),
    email: headerName.default('X-User-Email'),
    name: headerName.default('X-User-Name'),
    groups: headerName.default('X-User-Groups'),
    provider: headerName.default('X-User-Provider'),
    client_id: headerName.default('X-Client-Id'),
  },
  { error: wrongType('must be true, false, or a mapping of header names') },
);

const identityJwt = z.strictObject(
  {
    header: headerName.default('X-Gatehouse-Identity'),
    ttl_seconds: integer(10, 3600).default(60),
  },
  { error: wrongType('must be true, false, or a mapping with header and ttl_seconds') },
);

/** Two forwarding rules writing the same header would overwrite each other. */
function checkDistinctHeaders(forward: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (!isRecord(forward)) return;
  const named: Array<[KeyPath, unknown]> = [];
  if (isRecord(forward.identity_headers)) {
    for (const [key, value] of Object.entries(forward.identity_headers)) named.push([['identity_headers', key], value]);
  }
  if (isRecord(forward.identity_jwt)) named.push([['identity_jwt', 'header'], forward.identity_jwt.header]);
  named.push([['upstream_token'], forward.upstream_token]);
  const seen = new Map<string, KeyPath>();
  for (const [path, value] of named) {
    if (typeof value !== 'string') continue;
    const first = seen.get(value.toLowerCase());
    if (first === undefined) seen.set(value.toLowerCase(), path);
    else ctx.addIssue({ code: 'custom', path: [...path], message: `is the same header as forward.${first.join('.')}`, input: value });
  }
}

const forward = z.strictObject({
  identity_headers: z.preprocess(toggle(true), identityHeaderNames.nullable()),
  identity_jwt: z.preprocess(toggle(false), identityJwt.nullable()),
  upstream_token: headerName.optional(),
}).superRefine(checkDistinctHeaders, always);

const service = z.strictObject({
  // Either upstream (a server at a URL) or command (a stdio server the gateway starts): stdio.ts.
  upstream: upstreamUrl.optional(),
  ...stdioKeys,
  // How the gateway talks to the upstream; absent: websocket for ws:// and wss://, otherwise
  // streamable-http. `sse` is the 2024-11-05 HTTP+SSE transport, which the URL cannot reveal.
  transport: z.enum(['streamable-http', 'sse', 'websocket'], { error: 'must be streamable-http, sse or websocket' }).optional(),
  path: z.string().superRefine((path, ctx) => {
    const problem = servicePathProblem(path);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: path });
  }).optional(),
  name: text.optional(),
  scopes: list(scopeToken).superRefine((scopes: unknown, ctx) => {
    if (!Array.isArray(scopes)) return;
    scopes.forEach((scope: unknown, index) => {
      if (scope === 'offline_access') {
        ctx.addIssue({ code: 'custom', path: [index], message: 'offline_access is not a service scope: the gateway issues refresh tokens without it', input: scope });
      }
    });
  }),
  method_scopes: z.record(
    z.string().regex(/^[a-z][a-zA-Z0-9_/-]*(:[^\s]+)?$/, { error: 'keys are MCP methods such as tools/call, or tools/call:<tool name>' }),
    scopeToken,
  ).default(() => ({})),
  default: flag().default(false),
  access: serviceAccess.optional(),
  forward: forward.prefault({ identity_headers: true, identity_jwt: false }),
  // Scopes asked of the identity provider, on the user's upstream token, when this service is authorized.
  upstream_scopes: list(scopeToken),
  timeout_ms: integer(1000, 600_000).default(30_000),
  circuit_breaker: circuitBreaker,
  max_body_bytes: integer(1, 1024 ** 3).default(4 * 1024 * 1024),
  audit: serviceAudit,
}).superRefine((item, ctx) => {
  checkServiceKind(item, ctx);
  // The scheme and the transport must agree: a WebSocket server has a ws(s):// address, an HTTP one does not.
  if (typeof item.upstream === 'string') {
    const websocket = /^wss?:/i.test(item.upstream);
    if (item.transport === 'websocket' && !websocket) {
      ctx.addIssue({ code: 'custom', path: ['upstream'], message: 'must be a ws:// or wss:// URL for transport: websocket', input: item.upstream });
    } else if (item.transport !== undefined && item.transport !== 'websocket' && websocket) {
      ctx.addIssue({ code: 'custom', path: ['transport'], message: `cannot be ${item.transport} for a ws:// or wss:// upstream; leave it out or set websocket`, input: item.transport });
    }
  }
  // Upstream scopes only matter on a token the service receives; without one they would make
  // every sign-in ask the user for rights nothing uses.
  if (item.upstream_scopes.length > 0 && item.forward.upstream_token === undefined) {
    ctx.addIssue({ code: 'custom', path: ['upstream_scopes'], message: 'needs forward.upstream_token: the scopes are granted on the upstream token, which this service does not receive', input: item.upstream_scopes });
  }
  // A scope a method requires must be one the service offers, or no token could ever carry it.
  for (const [method, scope] of Object.entries(item.method_scopes)) {
    if (!item.scopes.includes(scope)) {
      ctx.addIssue({ code: 'custom', path: ['method_scopes', method], message: `${scope} is not in this service's scopes`, input: scope });
    }
  }
});

const serviceName = z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, {
  error: 'service names must be lower-case letters, digits, "-" and "_", starting with a letter or digit',
});

function defaultServicePath(name: string): string {
  return `/${name}/mcp`;
}

/** Rules across services: one path each, clear of the gateway's own, and at most one default. */
function checkServices(services: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (!isRecord(services)) return;
  if (Object.keys(services).length === 0) {
    ctx.addIssue({ code: 'custom', message: 'list at least one service', input: services });
  }
  const paths: Array<[string, string]> = [];
  let defaultService: string | undefined;
  for (const [name, item] of Object.entries(services)) {
    if (!isRecord(item)) continue;
    const explicit = typeof item.path === 'string';
    const path = typeof item.path === 'string' ? item.path : defaultServicePath(name);
    if (servicePathProblem(path) === undefined) {
      const reserved = reservedPaths.find((prefix) => isUnder(path, prefix));
      const other = paths.find(([, otherPath]) => isUnder(path, otherPath) || isUnder(otherPath, path));
      const message = reserved !== undefined
        ? explicit
          ? `${path} is the gateway's own ${reserved} endpoint; choose another path`
          : `the default path ${path} is under the gateway's own ${reserved} endpoint; set another path`
        : other !== undefined
          ? `${explicit ? path : `the default path ${path}`} collides with services.${other[0]}.path (${other[1]})`
          : undefined;
      if (message !== undefined) ctx.addIssue({ code: 'custom', path: [name, 'path'], message, input: path });
      paths.push([name, path]);
    }
    if (item.default === true) {
      if (defaultService === undefined) defaultService = name;
      else ctx.addIssue({ code: 'custom', path: [name, 'default'], message: `only one service can be the default, and services.${defaultService} already is`, input: true });
    }
  }
}

export const services = z.record(serviceName, service, { error: wrongType('must be a mapping of service names to services') })
  .superRefine(checkServices, always)
  .transform((entries) => Object.fromEntries(Object.entries(entries).map(([name, item]) => [
    name,
    { ...item, path: item.path ?? defaultServicePath(name), name: item.name ?? name },
  ])));
