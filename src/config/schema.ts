import { Buffer } from 'node:buffer';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import type { KeyPath } from './config-error.ts';

/*
 * The one configuration schema: types, defaults and validation. docs/configuration.md describes
 * every key in it (a test checks that). Values that came from `${VAR}` expansion are strings,
 * so numbers and booleans accept their text form.
 */

// ---------------------------------------------------------------------------------------------
// Value rules

/** Paths the gateway serves itself; a service path may be neither one of these nor under one. */
export const reservedPaths: readonly string[] = [
  '/authorize', '/token', '/register', '/revoke', '/introspect', '/jwks', '/.well-known',
  '/interaction', '/callback', '/signin', '/consents', '/health', '/ready', '/metrics',
];

/** True for `localhost`, 127.0.0.0/8 and ::1 (also in brackets, as URL host names carry it). */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (name === 'localhost' || name === 'localhost.') return true;
  if (isIPv4(name)) return name.startsWith('127.');
  if (isIPv6(name)) return new URL(`http://[${name}]/`).hostname === '[::1]';
  return false;
}

const keyHint = 'Make one with: openssl rand -base64 32';

/** Why a string is not 32 bytes in base64 or base64url, or undefined. Never repeats the value. */
function encryptionKeyProblem(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) && !/^[A-Za-z0-9_-]*={0,2}$/.test(value)) {
    return `must be 32 random bytes in base64 or base64url, and this is not base64. ${keyHint}`;
  }
  const bytes = Buffer.from(value, 'base64').length;
  if (bytes !== 32 || value.replace(/=+$/, '').length !== 43) {
    return `must be 32 random bytes in base64 or base64url, but it decodes to ${bytes} bytes. ${keyHint}`;
  }
  return undefined;
}

/** Why a URL is not usable as the gateway's public origin, or undefined. */
function publicUrlProblem(text: string, url: URL): string | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https:// URL';
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return 'must use https; plain http is allowed only on a loopback host (localhost, 127.0.0.1, ::1)';
  }
  if (url.username !== '' || url.password !== '') return 'must not contain a user name or password';
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(text)) {
    return `must be an origin only, such as ${url.origin}, without a path, query or fragment: the gateway serves its endpoints at the root`;
  }
  return undefined;
}

/** Why a URL is not usable as an upstream identity provider's issuer, or undefined. */
function issuerProblem(text: string, url: URL): string | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https:// URL';
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return 'must use https; plain http is allowed only on a loopback host (a local test identity provider)';
  }
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(text)) return 'must not have a query or fragment';
  return undefined;
}

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

/** Headers that HTTP or the gateway itself controls: never set from a forward rule. */
const protectedHeaders = new Set([
  'host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-connection', 'content-length', 'content-type', 'cookie',
  'mcp-session-id', 'mcp-protocol-version',
]);

/** Parameters the gateway sets on every authorization request to the identity provider. */
const protocolParams = new Set([
  'client_id', 'redirect_uri', 'response_type', 'response_mode', 'scope', 'state', 'nonce',
  'code_challenge', 'code_challenge_method',
]);

// ---------------------------------------------------------------------------------------------
// Building blocks

type ErrorMap = z.core.$ZodErrorMap;

/** A message for every issue of a schema except a missing value, which keeps the generic "is required". */
function unlessMissing(message: string): ErrorMap {
  return (issue) => (issue.code === 'invalid_type' && issue.input === undefined ? undefined : message);
}

/** A message for a value of the wrong type (not for a missing one, nor for problems inside it). */
function wrongType(message: string): ErrorMap {
  return (issue) => (issue.code === 'invalid_type' && issue.input !== undefined ? message : undefined);
}

/** Runs a refinement even when other parts of the value failed, so every problem is reported at once. */
const always = { when: () => true };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function numberFromText(value: unknown): unknown {
  return typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
}

function booleanFromText(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const text = value.trim().toLowerCase();
  return text === 'true' ? true : text === 'false' ? false : value;
}

function integer(min: number, max: number) {
  const message = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(numberFromText, z.number({ error: unlessMissing(message) }).int().min(min).max(max));
}

function flag() {
  return z.preprocess(booleanFromText, z.boolean({ error: unlessMissing('must be true or false') }));
}

const text = z.string().min(1, { error: 'must not be empty' });

const slug = z.string().regex(/^[a-z0-9-]+$/, { error: 'must be lower-case letters, digits and "-"' });

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, {
  error: 'must be an HTTP header name such as X-User-Id',
}).refine((name) => !protectedHeaders.has(name.toLowerCase()), {
  error: 'is a header that HTTP or the gateway itself controls; choose another name',
});

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, {
  error: 'must be a scope name: printable characters without spaces, quotes or backslashes',
});

function url(check: (text: string, url: URL) => string | undefined, example: string) {
  return z.string().superRefine((value, ctx) => {
    const parsed = URL.canParse(value) ? new URL(value) : undefined;
    const problem = parsed === undefined ? `must be a URL such as ${example}` : check(value, parsed);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });
}

const publicUrl = url(publicUrlProblem, 'https://mcp.example.com').transform((value) => `${new URL(value).origin}/`);

const issuerUrl = url(issuerProblem, 'https://accounts.example.com');

const upstreamUrl = url(
  (_, parsed) => (parsed.protocol === 'http:' || parsed.protocol === 'https:' ? undefined : 'must be an http:// or https:// URL'),
  'http://127.0.0.1:3001/mcp',
);

const iconUrl = url(
  (_, parsed) => (['http:', 'https:', 'data:'].includes(parsed.protocol) ? undefined : 'must be an https:// or data: URL'),
  'https://example.com/logo.svg',
);

const redirectUri = url(
  (value) => (value.includes('#') ? 'must not have a fragment' : undefined),
  'https://app.example.com/callback',
);

const encryptionKey = z.string().superRefine((value, ctx) => {
  const problem = encryptionKeyProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
});

const email = z.string()
  .refine((value) => value === '*' || /^[^@\s]+@[^@\s]+$/.test(value), {
    error: 'must be an e-mail address, or "*" for anyone',
  })
  .transform((value) => value.toLowerCase());

const domain = z.string()
  .refine((value) => /^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(value.toLowerCase()), {
    error: 'must be a domain such as example.com (no @, no wildcard; for anyone, use users: ["*"])',
  })
  .transform((value) => value.toLowerCase());

/** A GitHub organization login: letters, digits and single hyphens; case-insensitive, so lower-cased. */
const githubOrg = z.string()
  .regex(/^[A-Za-z0-9](-?[A-Za-z0-9])*$/, { error: 'must be a GitHub organization login such as acme (letters, digits and -)' })
  .transform((value) => value.toLowerCase());

/** A GitHub team as `org/team-slug` (the slug as in the team's URL), lower-cased. */
const githubTeam = z.string()
  .regex(/^[A-Za-z0-9](-?[A-Za-z0-9])*\/[A-Za-z0-9_.-]+$/, { error: 'must be a GitHub team as org/team-slug, such as acme/platform (the slug as in the team\'s URL)' })
  .transform((value) => value.toLowerCase());

function list<T extends z.ZodType>(item: T) {
  return z.array(item).default(() => []);
}

/** Rejects repeated values of `key` among the array's items, at the repeat's own path. */
function uniqueBy(key: string, what: string) {
  return (items: unknown, ctx: z.core.$RefinementCtx<unknown>) => {
    if (!Array.isArray(items)) return;
    const seen = new Map<unknown, number>();
    items.forEach((item: unknown, index) => {
      const value = isRecord(item) ? item[key] : undefined;
      if (typeof value !== 'string') return;
      const first = seen.get(value);
      if (first === undefined) seen.set(value, index);
      else ctx.addIssue({ code: 'custom', path: [index, key], message: `${what} "${value}" is already used by item [${first}]`, input: value });
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Access rules

const rulesShape = {
  users: list(text),
  emails: list(email),
  domains: list(domain),
  groups: list(text),
  github_orgs: list(githubOrg),
  github_teams: list(githubTeam),
};

const nobodyAllowed =
  'lists nobody, so no one could sign in: list who may under users, emails, domains or groups, ' +
  'or use users: ["*"] for anyone who can sign in at the identity provider';

/** Whether every list is empty; undefined when a list is malformed (reported on its own). */
function namesNobody(rules: Record<string, unknown>): boolean | undefined {
  const lists = Object.keys(rulesShape).map((key) => rules[key] ?? []);
  if (!lists.every(Array.isArray)) return undefined;
  return lists.every((list) => list.length === 0);
}

/** `allow`, when present, must name someone: an empty allow list is almost certainly a mistake. */
function checkAllow(access: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (isRecord(access) && isRecord(access.allow) && namesNobody(access.allow) === true) {
    ctx.addIssue({ code: 'custom', path: ['allow'], message: nobodyAllowed, input: access.allow });
  }
}

const accessRules = z.strictObject(rulesShape);

const access = z.strictObject(
  {
    allow: z.strictObject(rulesShape, {
      error: (issue) => issue.code !== 'invalid_type'
        ? undefined
        : issue.input === undefined
          ? 'is required: list who may sign in under users, emails, domains or groups, or use users: ["*"] for anyone who can sign in at the identity provider'
          : 'must be a mapping of users, emails, domains and groups',
    }),
    deny: accessRules.optional(),
  },
  {
    error: (issue) => issue.code !== 'invalid_type'
      ? undefined
      : issue.input === undefined
        ? 'is required: say who may sign in, for example access: { allow: { domains: [example.com] } }'
        : 'must be a mapping with allow (and optionally deny)',
  },
).superRefine(checkAllow, always);

const serviceAccess = z.strictObject({
  allow: accessRules.optional(),
  deny: accessRules.optional(),
}).superRefine(checkAllow, always);

// ---------------------------------------------------------------------------------------------
// Identity providers

const authorizeParam = z.preprocess(
  (value) => (typeof value === 'number' || typeof value === 'boolean' ? String(value) : value),
  z.string(),
);

const oidcProvider = z.strictObject({
  type: z.literal('oidc'),
  id: slug,
  name: text.optional(),
  icon: iconUrl.optional(),
  issuer: issuerUrl,
  client_id: text,
  client_secret: text.optional(),
  scopes: z.array(scopeToken)
    .refine((scopes) => scopes.includes('openid'), { error: 'must include openid: the gateway signs users in with OpenID Connect' })
    .default(() => ['openid', 'email', 'profile']),
  groups_claim: text.default('groups'),
  extra_authorize_params: z.record(z.string(), authorizeParam)
    .superRefine((params: unknown, ctx) => {
      if (!isRecord(params)) return;
      for (const key of Object.keys(params)) {
        if (protocolParams.has(key)) ctx.addIssue({ code: 'custom', path: [key], message: 'is set by the gateway on every request and cannot be overridden', input: key });
      }
    }, always)
    .default(() => ({})),
});

const devProvider = z.strictObject({
  type: z.literal('dev'),
  id: slug,
  name: text.default('Dev sign-in'),
});

/** `type: github`: GitHub's OAuth 2.0 (no OIDC) plus its REST API; base_url/api_url for GitHub Enterprise Server. */
const githubProvider = z.strictObject({
  type: z.literal('github'),
  id: slug,
  name: text.optional(),
  icon: iconUrl.optional(),
  client_id: text,
  client_secret: text,
  base_url: issuerUrl.optional(),
  api_url: issuerUrl.optional(),
  scopes: list(scopeToken),
});

// The OpenID Connect presets: the oidc provider with one provider's defaults and quirks
// (src/identity/<type>.ts). They take the client registered there, and where the provider
// lives when not at its usual place (self-hosted, national clouds, local stand-ins in tests).

const presetShape = {
  id: slug,
  name: text.optional(),
  icon: iconUrl.optional(),
  client_id: text,
  client_secret: text,
  scopes: list(scopeToken),
};

/** A host name alone, as Okta and Auth0 name a tenant: dev-123.okta.com. */
function providerDomain(example: string) {
  return z.string().superRefine((value, ctx) => {
    const problem = /^[a-z][a-z0-9+.-]*:\/\//i.test(value)
      ? `must be the host name only, such as ${example}, without ${value.slice(0, value.indexOf(':') + 3)}`
      : hostName.test(value) && value.includes('.') ? undefined : `must be a host name such as ${example}`;
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });
}

/** An origin (scheme, host, port), https or loopback http: Entra's authority. */
const authorityUrl = url((value, parsed) => {
  const problem = issuerProblem(value, parsed);
  if (problem !== undefined) return problem;
  return parsed.pathname === '/' ? undefined : `must be an origin only, such as ${parsed.origin}, without a path: the tenant is set by tenant`;
}, 'https://login.microsoftonline.com');

const entraTenant = z.string().refine(
  (value) => ['common', 'organizations', 'consumers'].includes(value)
    || /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
    || (hostName.test(value) && value.includes('.')),
  { error: 'must be common, organizations, consumers, or one tenant\'s id (a GUID) or domain (contoso.onmicrosoft.com)' },
);

/** Exactly one of `domain` and `issuer`; `only_with_domain` keys make sense with `domain` alone. */
function domainOrIssuer(example: string, onlyWithDomain: readonly string[] = []) {
  return (entry: unknown, ctx: z.core.$RefinementCtx<unknown>): void => {
    if (!isRecord(entry)) return;
    if (entry.domain !== undefined && entry.issuer !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'cannot be set together with domain: set domain, or issuer for an issuer of another shape, not both', input: entry.issuer });
    } else if (entry.domain === undefined && entry.issuer === undefined) {
      ctx.addIssue({ code: 'custom', path: ['domain'], message: `is required (or issuer): the tenant's domain, such as ${example}`, input: undefined });
    }
    for (const key of onlyWithDomain) {
      if (entry[key] !== undefined && entry.issuer !== undefined) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'goes with domain; with issuer, the issuer already names the authorization server (https://{domain}/oauth2/{id})', input: entry[key] });
      }
    }
  };
}

const googleProvider = z.strictObject({
  type: z.literal('google'),
  ...presetShape,
  issuer: issuerUrl.optional(),
});

const microsoftProvider = z.strictObject({
  type: z.literal('microsoft'),
  ...presetShape,
  tenant: entraTenant,
  authority: authorityUrl.optional(),
  groups_claim: text.default('groups'),
});

const oktaProvider = z.strictObject({
  type: z.literal('okta'),
  ...presetShape,
  domain: providerDomain('dev-123.okta.com').optional(),
  authorization_server: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: 'must be an authorization server id such as default or aus1a2b3c4d5e6f7g8' }).optional(),
  issuer: issuerUrl.optional(),
  groups_claim: text.default('groups'),
}).superRefine(domainOrIssuer('dev-123.okta.com', ['authorization_server']), always);

const auth0Provider = z.strictObject({
  type: z.literal('auth0'),
  ...presetShape,
  domain: providerDomain('example.eu.auth0.com').optional(),
  issuer: issuerUrl.optional(),
  groups_claim: text.refine((claim) => claim !== 'groups' && claim !== 'roles', {
    error: 'is a claim name Auth0 reserves and drops from tokens: have an Action set a namespaced claim such as https://example.com/groups, and name that',
  }).optional(),
}).superRefine(domainOrIssuer('example.eu.auth0.com'), always);

const keycloakProvider = z.strictObject({
  type: z.literal('keycloak'),
  ...presetShape,
  url: issuerUrl,
  realm: z.string().regex(/^[A-Za-z0-9._~-]+$/, { error: 'must be a realm name as it appears in the realm\'s URLs (letters, digits, ".", "_", "-", "~"); for others use type: oidc with the issuer' }),
  groups_claim: text.default('groups'),
});

const identityProvider = z.discriminatedUnion('type', [
  oidcProvider, devProvider, githubProvider,
  googleProvider, microsoftProvider, oktaProvider, auth0Provider, keycloakProvider,
]);

const identityProviders = z.array(identityProvider)
  .min(1, { error: 'list at least one identity provider' })
  .superRefine(uniqueBy('id', 'id'), always);

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

/** `true` (or absent, when on by default) selects the defaults, `false` turns the feature off (null). */
function toggle(onByDefault: boolean) {
  return (value: unknown): unknown => {
    const resolved = value === undefined ? onByDefault : booleanFromText(value);
    return resolved === true ? {} : resolved === false ? null : resolved;
  };
}

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
  upstream: upstreamUrl,
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
  max_body_bytes: integer(1, 1024 ** 3).default(4 * 1024 * 1024),
}).superRefine((item, ctx) => {
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

const services = z.record(serviceName, service, { error: wrongType('must be a mapping of service names to services') })
  .superRefine(checkServices, always)
  .transform((entries) => Object.fromEntries(Object.entries(entries).map(([name, item]) => [
    name,
    { ...item, path: item.path ?? defaultServicePath(name), name: item.name ?? name },
  ])));

// ---------------------------------------------------------------------------------------------
// Clients

const authMethods = ['none', 'client_secret_post', 'client_secret_basic'] as const;

function checkAuthMethod(client: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (!isRecord(client) || typeof client.token_endpoint_auth_method !== 'string') return;
  const hasSecret = client.client_secret !== undefined;
  const method = client.token_endpoint_auth_method;
  if (method === 'none' && hasSecret) {
    ctx.addIssue({ code: 'custom', path: ['token_endpoint_auth_method'], message: 'is "none" but client_secret is set: remove the secret, or use client_secret_post or client_secret_basic', input: method });
  } else if (method !== 'none' && !hasSecret) {
    ctx.addIssue({ code: 'custom', path: ['token_endpoint_auth_method'], message: `is "${method}", which needs a client_secret`, input: method });
  }
}

const staticClient = z.strictObject({
  client_id: text.refine((id) => !/^https?:\/\//i.test(id), {
    error: 'must not be a URL: URL client IDs are client ID metadata documents (clients.cimd)',
  }),
  client_secret: text.optional(),
  name: text,
  redirect_uris: z.array(redirectUri).min(1, { error: 'list at least one redirect URI' }),
  token_endpoint_auth_method: z.enum(authMethods).optional(),
}).superRefine(checkAuthMethod, always).transform((client) => ({
  ...client,
  token_endpoint_auth_method: client.token_endpoint_auth_method ?? (client.client_secret === undefined ? 'none' : 'client_secret_post'),
}));

const clients = z.strictObject({
  registration: z.strictObject({ enabled: flag().default(true) }).prefault({}),
  cimd: z.strictObject({
    enabled: flag().default(true),
    allow_loopback: flag().default(false),
  }).prefault({}),
  static: list(staticClient).superRefine(uniqueBy('client_id', 'client_id'), always),
});

// ---------------------------------------------------------------------------------------------
// The whole file

const defaultStorePath = './data/gatehouse.db';

const redisUrl = url(
  (_, parsed) => (parsed.protocol === 'redis:' || parsed.protocol === 'rediss:' ? undefined : 'must be a redis:// or rediss:// (TLS) URL'),
  'redis://127.0.0.1:6379',
);

const postgresUrl = url(
  (_, parsed) => (parsed.protocol === 'postgres:' || parsed.protocol === 'postgresql:' ? undefined : 'must be a postgres:// URL'),
  'postgres://gatehouse@127.0.0.1:5432/gatehouse',
);

const hostPort = z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
  error: 'must be host:port, such as redis-1:26379 or [::1]:6379',
});

const hostPorts = z.array(hostPort).min(1, { error: 'must list at least one host:port' });

/** TLS to a store: on, off, or on with a private CA or (for tests) without verification. */
const storeTls = z.union([
  flag(),
  z.strictObject({ ca_file: text.optional(), reject_unauthorized: flag().optional() }),
], { error: 'must be true, false, or a mapping with ca_file and reject_unauthorized' });

const redisStore = z.strictObject({
  type: z.literal('redis'),
  url: redisUrl.optional(),
  password: text.optional(),
  key_prefix: text.default('gatehouse:'),
  tls: storeTls.optional(),
  sentinel: z.strictObject({ name: text, nodes: hostPorts }).optional(),
  cluster: z.strictObject({ nodes: hostPorts }).optional(),
}).superRefine((store, ctx) => {
  const given = (['url', 'sentinel', 'cluster'] as const).filter((key) => store[key] !== undefined);
  if (given.length === 1) return;
  ctx.addIssue({
    code: 'custom',
    path: given.length === 0 ? ['url'] : [given[1] as string],
    message: given.length === 0
      ? 'is required: a redis:// URL, or sentinel or cluster nodes'
      : `cannot be combined with ${given[0]}: give one of url, sentinel or cluster (password and tls apply to all three)`,
  });
}, always);

const postgresStore = z.strictObject({
  type: z.literal('postgres'),
  url: postgresUrl,
  pool_size: integer(1, 100).default(10),
  schema: z.string().regex(/^[a-z_][a-z0-9_]{0,29}$/, {
    error: 'must be a lower-case SQL name of at most 30 characters: letters, digits and _, not starting with a digit',
  }).default('gatehouse'),
  ssl: storeTls.optional(),
});

const hostName = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

const configShape = {
  public_url: publicUrl,
  listen: z.strictObject({
    host: z.string().refine((host) => isIP(host) !== 0 || hostName.test(host), {
      error: 'must be a host name or IP address, without scheme, port or brackets (e.g. 0.0.0.0, ::, 127.0.0.1)',
    }).default('127.0.0.1'),
    port: integer(0, 65_535).default(8080),
  }).prefault({}),
  trust_proxy: z.preprocess(
    (value) => {
      const resolved = numberFromText(booleanFromText(value));
      if (typeof resolved !== 'string') return resolved;
      return resolved.split(',').map((item) => item.trim()).filter((item) => item !== '');
    },
    z.union([z.boolean(), z.number().int().min(0), z.array(text)], {
      error: 'must be true, false, a number of proxy hops, or a list of proxy addresses or CIDR ranges',
    }),
  ).default(false),
  store: z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('memory') }),
    z.strictObject({ type: z.literal('sqlite'), path: text.default(defaultStorePath) }),
    redisStore,
    postgresStore,
  ]).prefault({ type: 'sqlite' }),
  secrets: z.strictObject(
    {
      encryption_key: encryptionKey,
      previous_encryption_keys: list(encryptionKey),
    },
    { error: wrongType('must be a mapping with encryption_key') },
  ),
  tokens: z.strictObject({
    access_ttl_seconds: integer(60, 86_400).default(3600),
    refresh_ttl_days: integer(1, 365).default(30),
    refresh_grace_seconds: integer(0, 600).default(60),
    code_ttl_seconds: integer(10, 600).default(60),
  }).prefault({}),
  identity_providers: identityProviders,
  access,
  services,
  clients: clients.prefault({}),
  log: z.strictObject({
    level: z.preprocess(
      (value) => (typeof value === 'string' ? value.toLowerCase() : value),
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    ).default('info'),
  }).prefault({}),
  dev: z.strictObject({ demo_port: integer(0, 65_535).default(0) }).optional(),
};

/** Keys allowed at the top of the file; also the first segment a GATEHOUSE_* override may have. */
export const topLevelKeys: readonly string[] = Object.keys(configShape);

/** Rules that tie one part of the file to another. */
function checkAcrossSections(config: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (!isRecord(config)) return;
  const host = isRecord(config.listen) ? config.listen.host : undefined;
  if (typeof host !== 'string' || isLoopbackHost(host)) return;
  if (Array.isArray(config.identity_providers)) {
    config.identity_providers.forEach((provider: unknown, index) => {
      if (isRecord(provider) && provider.type === 'dev') {
        ctx.addIssue({
          code: 'custom',
          path: ['identity_providers', index, 'type'],
          message: `the dev provider signs anyone in without a password and refuses to run on a non-loopback address (listen.host is ${host}); use a real identity provider, or listen on 127.0.0.1`,
          input: provider.type,
        });
      }
    });
  }
  const cimd = isRecord(config.clients) && isRecord(config.clients.cimd) ? config.clients.cimd : undefined;
  if (cimd?.allow_loopback === true) {
    ctx.addIssue({
      code: 'custom',
      path: ['clients', 'cimd', 'allow_loopback'],
      message: `may be true only when listen.host is a loopback address (it is ${host}): fetching client metadata from loopback is for local development`,
      input: true,
    });
  }
}

/**
 * `github_orgs` and `github_teams` match only people who signed in with a `github` provider:
 * without one they can never match, which is almost certainly a mistake.
 */
function checkGitHubRules(config: unknown, ctx: z.core.$RefinementCtx<unknown>): void {
  if (!isRecord(config) || !Array.isArray(config.identity_providers)) return;
  if (config.identity_providers.some((provider: unknown) => isRecord(provider) && provider.type === 'github')) return;
  const places: Array<[KeyPath, unknown]> = [[['access'], config.access]];
  if (isRecord(config.services)) {
    for (const [name, item] of Object.entries(config.services)) places.push([['services', name, 'access'], isRecord(item) ? item.access : undefined]);
  }
  for (const [path, access] of places) {
    if (!isRecord(access)) continue;
    for (const list of ['allow', 'deny']) {
      const rules = access[list];
      if (!isRecord(rules)) continue;
      for (const key of ['github_orgs', 'github_teams']) {
        if (Array.isArray(rules[key]) && rules[key].length > 0) {
          ctx.addIssue({ code: 'custom', path: [...path, list, key], message: 'matches only people who sign in with a GitHub identity provider, and none is configured: add one (type: github) or remove this rule', input: rules[key] });
        }
      }
    }
  }
}

/** Validates a whole configuration and fills in defaults. `issuer` is derived from `public_url`. */
export const configSchema = z.strictObject(configShape, {
  error: wrongType('the configuration must be a mapping of keys such as public_url, services and identity_providers'),
})
  .superRefine(checkAcrossSections, always)
  .superRefine(checkGitHubRules, always)
  .transform(({ public_url, ...rest }) => ({ public_url, issuer: public_url, ...rest }));

// ---------------------------------------------------------------------------------------------
// Reading the schema's structure (for override typing, unknown-key hints and the docs test)

interface LooseDef {
  type: string;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  out?: z.core.$ZodType;
  shape?: Record<string, z.core.$ZodType>;
  valueType?: z.core.$ZodType;
  element?: z.core.$ZodType;
  options?: z.core.$ZodType[];
  discriminator?: string;
  values?: unknown[];
}

function defOf(schema: z.core.$ZodType): LooseDef {
  return schema._zod.def as unknown as LooseDef;
}

const wrappers = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch', 'nonoptional']);

/** The schema that does the validating under defaults, optionals, preprocessing and transforms. */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (;;) {
    const def = defOf(current);
    if (wrappers.has(def.type) && def.innerType) current = def.innerType;
    else if (def.type === 'pipe' && def.in && def.out) current = defOf(def.in).type === 'transform' ? def.out : def.in;
    else return current;
  }
}

/** The options of a union, narrowed to the one whose discriminator matches `value` when possible. */
function unionOptions(def: LooseDef, value: unknown): z.core.$ZodType[] {
  const options = def.options ?? [];
  const key = def.discriminator;
  if (key === undefined || !isRecord(value)) return options;
  const matching = options.filter((option) => {
    const tag = defOf(option).shape?.[key];
    return tag !== undefined && (defOf(unwrap(tag)).values ?? []).includes(value[key]);
  });
  return matching.length > 0 ? matching : options;
}

/**
 * The schemas that may validate the value at `path`, each unwrapped. `value` is the document
 * (when known): it picks the right option of a discriminated union. Empty when nothing may
 * be there.
 */
export function schemasAt(path: KeyPath, value?: unknown, schema: z.core.$ZodType = configSchema): z.core.$ZodType[] {
  let current: Array<{ schema: z.core.$ZodType; value: unknown }> = [{ schema, value }];
  const expand = (entries: typeof current) => entries.flatMap((entry) => {
    const inner = unwrap(entry.schema);
    const def = defOf(inner);
    return def.type === 'union'
      ? unionOptions(def, entry.value).map((option) => ({ schema: unwrap(option), value: entry.value }))
      : [{ schema: inner, value: entry.value }];
  });
  for (const segment of path) {
    current = expand(current).flatMap(({ schema: inner, value: node }) => {
      const def = defOf(inner);
      const child = isRecord(node) ? node[String(segment)] : Array.isArray(node) ? node[Number(segment)] : undefined;
      if (def.type === 'object' && def.shape && Object.hasOwn(def.shape, String(segment))) {
        return [{ schema: def.shape[String(segment)] as z.core.$ZodType, value: child }];
      }
      if (def.type === 'record' && def.valueType) return [{ schema: def.valueType, value: child }];
      if (def.type === 'array' && def.element && /^\d+$/.test(String(segment))) return [{ schema: def.element, value: child }];
      return [];
    });
  }
  return expand(current).map((entry) => entry.schema);
}

/** The kind of value each schema at `path` takes: 'string', 'number', 'object', 'array', … */
export function kindsAt(path: KeyPath, value?: unknown): string[] {
  return schemasAt(path, value).map((schema) => defOf(schema).type);
}

/** The keys a mapping at `path` may have (none if it is not a fixed mapping). */
export function keysAt(path: KeyPath, value?: unknown): string[] {
  const keys = schemasAt(path, value).flatMap((schema) => Object.keys(defOf(schema).shape ?? {}));
  return [...new Set(keys)];
}

/**
 * Every key path the schema accepts, in document order: `listen.port`,
 * `identity_providers[].issuer`, `services.<name>.forward.identity_headers.email`.
 */
export function keyPaths(schema: z.core.$ZodType = configSchema): string[] {
  const paths = new Set<string>();
  const walk = (node: z.core.$ZodType, prefix: string, seen: Set<z.core.$ZodType>): void => {
    const inner = unwrap(node);
    if (seen.has(inner)) return;
    const def = defOf(inner);
    const nextSeen = new Set(seen).add(inner);
    if (def.type === 'object' && def.shape) {
      for (const [key, child] of Object.entries(def.shape)) {
        const path = prefix === '' ? key : `${prefix}.${key}`;
        paths.add(path);
        walk(child, path, nextSeen);
      }
    } else if (def.type === 'record' && def.valueType) {
      walk(def.valueType, `${prefix}.<name>`, nextSeen);
    } else if (def.type === 'array' && def.element) {
      walk(def.element, `${prefix}[]`, nextSeen);
    } else if (def.type === 'union') {
      for (const option of def.options ?? []) walk(option, prefix, nextSeen);
    }
  };
  walk(schema, '', new Set());
  return [...paths];
}

// ---------------------------------------------------------------------------------------------
// Types

type DeepReadonly<T> = T extends ReadonlyArray<infer Item>
  ? ReadonlyArray<DeepReadonly<Item>>
  : T extends object
    ? { readonly [Key in keyof T]: DeepReadonly<T[Key]> }
    : T;

/** The validated configuration, with defaults filled in; deeply frozen at run time. */
export type Config = DeepReadonly<z.output<typeof configSchema>>;
export type ServiceConfig = Config['services'][string];
export type IdentityProviderConfig = Config['identity_providers'][number];
export type OidcProviderConfig = Extract<IdentityProviderConfig, { type: 'oidc' }>;
export type DevProviderConfig = Extract<IdentityProviderConfig, { type: 'dev' }>;
export type GitHubProviderConfig = Extract<IdentityProviderConfig, { type: 'github' }>;
export type GoogleProviderConfig = Extract<IdentityProviderConfig, { type: 'google' }>;
export type MicrosoftProviderConfig = Extract<IdentityProviderConfig, { type: 'microsoft' }>;
export type OktaProviderConfig = Extract<IdentityProviderConfig, { type: 'okta' }>;
export type Auth0ProviderConfig = Extract<IdentityProviderConfig, { type: 'auth0' }>;
export type KeycloakProviderConfig = Extract<IdentityProviderConfig, { type: 'keycloak' }>;
/** Who a rule set names: user ids, e-mail addresses, e-mail domains, groups. `"*"` in users or emails is anyone. */
export type AccessRules = Config['access']['allow'];
export type AccessConfig = Config['access'];
export type StoreConfig = Config['store'];
export type StaticClientConfig = Config['clients']['static'][number];
