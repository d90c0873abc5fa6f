/**
 * The catalog of protected services: each configured MCP server with its public resource URL,
 * which is also the audience of its tokens (RFC 8707, RFC 9068).
 */
import { canonicalResource, serviceResourceUrl } from './resource-uri.ts';

/** Scope offered by a service that configures none: a token must carry some granted scope. */
export const BASELINE_SCOPE = 'mcp';

export interface ServiceDefinition {
  path: string;
  name?: string | undefined;
  scopes?: readonly string[] | undefined;
  default?: boolean | undefined;
}

export interface ProtectedService<D extends ServiceDefinition = ServiceDefinition> {
  /** The configuration key. */
  id: string;
  displayName: string;
  path: string;
  /** Canonical public URL of the MCP endpoint: the `resource` and token `aud`. */
  resourceUrl: string;
  scopes: string[];
  definition: D;
}

export interface ServiceCatalog<D extends ServiceDefinition = ServiceDefinition> {
  all(): ReadonlyArray<ProtectedService<D>>;
  byId(id: string): ProtectedService<D> | undefined;
  /** The service whose resource URL equals `uri` after canonicalisation. */
  byResource(uri: string): ProtectedService<D> | undefined;
  /** The service a request path belongs to: its path, with or without a trailing slash. */
  byPath(path: string): ProtectedService<D> | undefined;
  /** The only service, or the one marked default; describes the root protected-resource metadata. */
  defaultService(): ProtectedService<D> | undefined;
  /** Every scope any service offers, for authorization-server metadata. */
  allScopes(): string[];
}

/** A catalog whose services a configuration reload replaces (ops/config-reload.ts). */
export interface ReloadableServiceCatalog<D extends ServiceDefinition = ServiceDefinition> extends ServiceCatalog<D> {
  /**
   * Serves what `next` serves from now on. Everything that holds this catalog (the authorization
   * server's resource indicators, metadata, consent, ForwardAuth) sees the new services at once.
   */
  replace(next: ServiceCatalog<D>): void;
}

/** The catalog of `definitions`; `replace` swaps in another one. */
export function createServiceCatalog<D extends ServiceDefinition>(
  issuer: string,
  definitions: Record<string, D>,
): ReloadableServiceCatalog<D> {
  let current = buildServiceCatalog(issuer, definitions);
  return {
    all: () => current.all(),
    byId: (id) => current.byId(id),
    byResource: (uri) => current.byResource(uri),
    byPath: (path) => current.byPath(path),
    defaultService: () => current.defaultService(),
    allScopes: () => current.allScopes(),
    replace: (next) => { current = next; },
  };
}

/** A fixed catalog of `definitions`. */
export function buildServiceCatalog<D extends ServiceDefinition>(
  issuer: string,
  definitions: Record<string, D>,
): ServiceCatalog<D> {
  const services = Object.entries(definitions).map(([id, definition]): ProtectedService<D> => ({
    id,
    displayName: definition.name ?? id,
    path: definition.path,
    resourceUrl: serviceResourceUrl(issuer, definition.path),
    scopes: definition.scopes && definition.scopes.length > 0 ? [...definition.scopes] : [BASELINE_SCOPE],
    definition,
  }));
  const byResource = new Map(services.map((service) => [service.resourceUrl, service]));
  const byPath = new Map(services.map((service) => [service.path, service]));
  const fallback = services.length === 1 ? services[0] : services.find((service) => service.definition.default);
  const scopes = [...new Set(services.flatMap((service) => service.scopes))];

  return {
    all: () => services,
    byId: (id) => services.find((service) => service.id === id),
    byResource: (uri) => {
      const canonical = canonicalResource(uri);
      return canonical === undefined ? undefined : byResource.get(canonical);
    },
    byPath: (path) => byPath.get(path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path),
    defaultService: () => fallback,
    allScopes: () => scopes,
  };
}
