/**
 * Configuration reload: a new configuration put in force while the gateway serves, without
 * dropping a connection.
 *
 * Reloadable: `services` (service-routes.ts keeps unchanged services' endpoints, with their
 * stdio processes and open streams, and drains replaced ones), `identity_providers`
 * (provider-reload.ts keeps unchanged providers, discovers new ones first), `access`, `cors`,
 * `rate_limits`, `reload` and `log.level`. Everything else is fixed when the gateway starts: the listening
 * socket, the issuer, the store, the secrets, the authorization server's clients and token
 * lifetimes, and whatever other sections configure. A reload that changes one of those
 * applies the rest and warns, naming those keys; they keep their running values until a
 * restart (refusing the whole file for them would leave the operator's other edits waiting).
 *
 * A configuration that cannot be put in force (an identity provider whose discovery fails, a
 * service endpoint that cannot be built) is refused whole: ConfigError, logged, and the
 * configuration in force stays. Reloads run one at a time.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { buildServiceCatalog, type ProtectedService, type ReloadableServiceCatalog } from '../authz/index.ts';
import { ConfigError, type AccessConfig, type Config, type ServiceConfig } from '../config/index.ts';
import type { IdentityProvider } from '../identity/index.ts';
import { prepareProviderUpdate, type ProviderUpdate } from '../identity/provider-reload.ts';
import type { ServiceChanges, ServiceRoutes } from '../proxy/service-routes.ts';

export interface ReloadResult {
  services: ServiceChanges;
  identityProviders: Pick<ProviderUpdate, 'added' | 'changed' | 'removed'>;
  access: boolean;
  cors: boolean;
  rateLimits: boolean;
  logLevel: boolean;
  /** Keys whose change needs a restart; their running values stay in force. */
  needsRestart: string[];
}

export interface ReloadParts {
  issuer: string;
  services: ReloadableServiceCatalog<ServiceConfig>;
  routes: ServiceRoutes<ProtectedService<ServiceConfig>>;
  /** The providers in force: updated in place. */
  identityProviders: Map<string, IdentityProvider>;
  /** Browser origins allowed on the MCP endpoints besides the gateway's own: updated in place. */
  allowedOrigins: Set<string>;
  /** Puts a new gateway-wide access policy in force. */
  setAccess(access: AccessConfig): void;
  /** Puts new rate limits in force (rate-limits.ts). */
  setRateLimits(limits: Config['rate_limits']): void;
  logger: Logger;
  /** Whether the dev provider's sign-in pages were set up at start. */
  devPages: boolean;
}

/** Top-level keys a reload puts in force; `log` is reloadable for its `level` only. */
const RELOADABLE = new Set(['services', 'identity_providers', 'access', 'cors', 'rate_limits', 'reload', 'log']);

/** The keys, as paths, whose change between `current` and `next` needs a restart. */
export function keysNeedingRestart(current: Config, next: Config): string[] {
  const keys = [...new Set([...Object.keys(current), ...Object.keys(next)])] as Array<keyof Config>;
  // `issuer` is `public_url` in another form: reported as public_url.
  const fixed = keys.filter((key) => !RELOADABLE.has(key) && key !== 'issuer' && !isDeepStrictEqual(current[key], next[key]));
  const logKeys = [...new Set([...Object.keys(current.log), ...Object.keys(next.log)])] as Array<keyof Config['log']>;
  const fixedLog = logKeys.filter((key) => key !== 'level' && !isDeepStrictEqual(current.log[key], next.log[key]));
  return [...fixed.map(String), ...fixedLog.map((key) => `log.${key}`)];
}

/** `next`'s reloadable parts over `current`'s fixed ones: the configuration in force after a reload. */
function inForce(current: Config, next: Config): Config {
  return {
    ...current,
    services: next.services,
    identity_providers: next.identity_providers,
    access: next.access,
    cors: next.cors,
    rate_limits: next.rate_limits,
    reload: next.reload,
    log: { ...current.log, level: next.log.level },
  };
}

/** The gateway's `reload(config, source)`: puts `config` in force, or throws ConfigError and changes nothing. */
export function createConfigReloader(initial: Config, parts: ReloadParts): (next: Config, source?: string) => Promise<ReloadResult> {
  let current = initial;
  let queue: Promise<unknown> = Promise.resolve();

  const apply = async (next: Config, source: string): Promise<ReloadResult> => {
    const needsRestart = keysNeedingRestart(current, next);
    const target = inForce(current, next);
    const providers = await prepareProviderUpdate(parts.identityProviders, current, target, {
      source,
      devPages: parts.devPages,
      onDiscoveryError: (provider, issuer, error, attempt) => {
        parts.logger.error({ provider, issuer, attempt, err: error }, 'identity provider discovery failed; retrying');
      },
    });
    const catalog = buildServiceCatalog(parts.issuer, target.services);
    let services: ServiceChanges;
    try {
      services = parts.routes.update(catalog.all());
    } catch (error) {
      providers.discard();
      parts.logger.error({ err: error }, 'a service endpoint could not be built');
      throw new ConfigError(source, [{ path: 'services', message: 'a service endpoint could not be built (details in the log)' }]);
    }
    // From here on nothing fails: the rest is swapping references.
    parts.services.replace(catalog);
    providers.commit();
    const result: ReloadResult = {
      services,
      identityProviders: { added: providers.added, changed: providers.changed, removed: providers.removed },
      access: !isDeepStrictEqual(current.access, target.access),
      cors: !isDeepStrictEqual(current.cors, target.cors),
      rateLimits: !isDeepStrictEqual(current.rate_limits, target.rate_limits),
      logLevel: current.log.level !== target.log.level,
      needsRestart,
    };
    if (result.access) parts.setAccess(target.access);
    if (result.rateLimits) parts.setRateLimits(target.rate_limits);
    if (result.cors) {
      parts.allowedOrigins.clear();
      for (const origin of target.cors.allowed_origins) parts.allowedOrigins.add(origin);
    }
    current = target;
    parts.logger.info({
      event: 'config.reloaded',
      services: result.services,
      identity_providers: result.identityProviders,
      access_changed: result.access,
      cors_changed: result.cors,
      rate_limits_changed: result.rateLimits,
    }, 'configuration reloaded');
    if (needsRestart.length > 0) {
      parts.logger.warn({ event: 'config.restart_needed', keys: needsRestart },
        `configuration reloaded, but these keys need a restart and keep their running values: ${needsRestart.join(', ')}`);
    }
    // Last, so that the lines above are written at the level they were requested under.
    if (result.logLevel) parts.logger.level = target.log.level;
    return result;
  };

  return (next, source = 'the new configuration') => {
    const run = queue.then(() => apply(next, source)).catch((error: unknown) => {
      if (error instanceof ConfigError) {
        parts.logger.error({ event: 'config.reload_refused', problems: error.problems }, `${error.format()}\nThe configuration in force stays.`);
      }
      throw error;
    });
    queue = run.catch(() => undefined);
    return run;
  };
}
