import { isIP } from 'node:net';
import { z } from 'zod';
import type { KeyPath } from '../config-error.ts';
import { access } from './access.ts';
import { clients } from './clients.ts';
import { cors } from './cors.ts';
import { forwardAuth } from './forward-auth.ts';
import { identityProviders } from './identity-providers.ts';
import { metrics } from './metrics.ts';
import {
  always, booleanFromText, encryptionKey, hostName, integer, isLoopbackHost, isRecord, list, numberFromText,
  publicUrl, text, wrongType,
} from './primitives.ts';
import { rateLimits } from './rate-limits.ts';
import { reload } from './reload.ts';
import { services } from './services.ts';
import { shutdown } from './shutdown.ts';
import { store } from './store.ts';
import { tracing } from './tracing.ts';

/*
 * The one configuration schema: types, defaults and validation. docs/configuration.md describes
 * every key in it (a test checks that). Values that came from `${VAR}` expansion are strings,
 * so numbers and booleans accept their text form.
 *
 * Each section lives in its own module; this one puts them together, checks rules that tie
 * sections to each other, and reads the schema's structure.
 */

export { isLoopbackHost } from './primitives.ts';
export { reservedPaths } from './services.ts';

// ---------------------------------------------------------------------------------------------
// The whole file

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
  store,
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
  forward_auth: forwardAuth.prefault({}),
  metrics: metrics.prefault({}),
  cors: cors.prefault({}),
  reload: reload.prefault({}),
  rate_limits: rateLimits.prefault({}),
  shutdown: shutdown.prefault({}),
  tracing: tracing.prefault({}),
  log: z.strictObject({
    level: z.preprocess(
      (value) => (typeof value === 'string' ? value.toLowerCase() : value),
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    ).default('info'),
    audit_file: text.optional(),
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
