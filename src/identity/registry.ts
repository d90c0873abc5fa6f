/**
 * Builds the configured identity providers: one factory per `type`, each a small module that
 * handles its provider's quirks.
 */
import type { Config, IdentityProviderConfig } from '../config/index.ts';
import { usesGitHubMembership } from '../policy/index.ts';
import { auth0OidcOptions } from './auth0.ts';
import { createDevProvider } from './dev.ts';
import { createGitHubProvider } from './github.ts';
import { googleOidcOptions } from './google.ts';
import { keycloakOidcOptions } from './keycloak.ts';
import { microsoftOidcOptions } from './microsoft.ts';
import { createOidcProvider, type OidcProviderOptions } from './oidc.ts';
import { oktaOidcOptions } from './okta.ts';
import type { PresetOptions } from './preset.ts';
import type { IdentityProvider } from './provider.ts';

export interface ProviderContext {
  /** The gateway's listen host (the dev provider refuses non-loopback hosts). */
  listenHost: string;
  /** Reports a discovery failure; the provider retries by itself. */
  onDiscoveryError(providerId: string, issuer: string, error: unknown, attempt: number): void;
  /** Whether any access rule (global or a service's) names GitHub orgs or teams. */
  githubMembership: boolean;
}

type Factory<T extends IdentityProviderConfig['type']> = (
  entry: Extract<IdentityProviderConfig, { type: T }>,
  context: ProviderContext,
) => IdentityProvider;

type PresetType = 'google' | 'microsoft' | 'okta' | 'auth0' | 'keycloak';
type PresetEntry<T extends PresetType = PresetType> = Extract<IdentityProviderConfig, { type: T }>;

function preset(entry: PresetEntry): PresetOptions {
  return { id: entry.id, name: entry.name, icon: entry.icon, clientId: entry.client_id, clientSecret: entry.client_secret, scopes: entry.scopes };
}

/** The OpenID Connect presets: the generic oidc provider with each one's defaults and quirks. */
const PRESETS: { [T in PresetType]: (entry: PresetEntry<T>) => OidcProviderOptions } = {
  google: (entry) => googleOidcOptions({ ...preset(entry), issuer: entry.issuer }),
  microsoft: (entry) => microsoftOidcOptions({ ...preset(entry), tenant: entry.tenant, authority: entry.authority, groupsClaim: entry.groups_claim }),
  okta: (entry) => oktaOidcOptions({ ...preset(entry), domain: entry.domain, authorizationServer: entry.authorization_server, issuer: entry.issuer, groupsClaim: entry.groups_claim }),
  auth0: (entry) => auth0OidcOptions({ ...preset(entry), domain: entry.domain, issuer: entry.issuer, groupsClaim: entry.groups_claim }),
  keycloak: (entry) => keycloakOidcOptions({ ...preset(entry), url: entry.url, realm: entry.realm, groupsClaim: entry.groups_claim }),
};

/** The generic oidc provider's options for a preset's entry (`check-config` discovers with them too); undefined for other types. */
export function presetOidcOptions(entry: IdentityProviderConfig): OidcProviderOptions | undefined {
  const build = (PRESETS as Partial<Record<string, (entry: PresetEntry) => OidcProviderOptions>>)[entry.type];
  return build?.(entry as PresetEntry);
}

function createPresetProvider(entry: PresetEntry, context: ProviderContext): IdentityProvider {
  const options = presetOidcOptions(entry) as OidcProviderOptions;
  return createOidcProvider({ ...options, onDiscoveryError: (error, attempt) => context.onDiscoveryError(options.id, options.issuer, error, attempt) });
}

const FACTORIES: { [T in IdentityProviderConfig['type']]: Factory<T> } = {
  google: createPresetProvider,
  microsoft: createPresetProvider,
  okta: createPresetProvider,
  auth0: createPresetProvider,
  keycloak: createPresetProvider,
  dev: (entry, context) => createDevProvider({ id: entry.id, name: entry.name, listenHost: context.listenHost }),
  oidc: (entry, context) => createOidcProvider({
    id: entry.id,
    name: entry.name,
    icon: entry.icon,
    issuer: entry.issuer,
    clientId: entry.client_id,
    clientSecret: entry.client_secret,
    scopes: entry.scopes,
    groupsClaim: entry.groups_claim,
    extraAuthorizeParams: entry.extra_authorize_params,
    onDiscoveryError: (error, attempt) => context.onDiscoveryError(entry.id, entry.issuer, error, attempt),
  }),
  github: (entry, context) => createGitHubProvider({
    id: entry.id,
    name: entry.name,
    icon: entry.icon,
    clientId: entry.client_id,
    clientSecret: entry.client_secret,
    baseUrl: entry.base_url,
    apiUrl: entry.api_url,
    scopes: entry.scopes,
    readMembership: context.githubMembership,
  }),
};

export function createIdentityProviders(
  config: Pick<Config, 'identity_providers' | 'listen'> & Partial<Pick<Config, 'access' | 'services'>>,
  onDiscoveryError: ProviderContext['onDiscoveryError'],
): Map<string, IdentityProvider> {
  const githubMembership = usesGitHubMembership([config.access, ...Object.values(config.services ?? {}).map((service) => service.access)]);
  const context: ProviderContext = { listenHost: config.listen.host, onDiscoveryError, githubMembership };
  const providers = new Map<string, IdentityProvider>();
  for (const entry of config.identity_providers) {
    const factory = FACTORIES[entry.type] as Factory<typeof entry.type>;
    const idp = factory(entry as never, context);
    providers.set(idp.id, idp);
  }
  return providers;
}
