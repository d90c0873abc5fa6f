/**
 * Builds the configured identity providers: one factory per `type`, each a small module that
 * handles its provider's quirks.
 */
import type { Config, IdentityProviderConfig } from '../config/index.ts';
import { createDevProvider } from './dev.ts';
import { createOidcProvider } from './oidc.ts';
import type { IdentityProvider } from './provider.ts';

export interface ProviderContext {
  /** The gateway's listen host (the dev provider refuses non-loopback hosts). */
  listenHost: string;
  /** Reports a discovery failure; the provider retries by itself. */
  onDiscoveryError(providerId: string, issuer: string, error: unknown, attempt: number): void;
}

type Factory<T extends IdentityProviderConfig['type']> = (
  entry: Extract<IdentityProviderConfig, { type: T }>,
  context: ProviderContext,
) => IdentityProvider;

const FACTORIES: { [T in IdentityProviderConfig['type']]: Factory<T> } = {
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
};

export function createIdentityProviders(config: Pick<Config, 'identity_providers' | 'listen'>, onDiscoveryError: ProviderContext['onDiscoveryError']): Map<string, IdentityProvider> {
  const context: ProviderContext = { listenHost: config.listen.host, onDiscoveryError };
  const providers = new Map<string, IdentityProvider>();
  for (const entry of config.identity_providers) {
    const factory = FACTORIES[entry.type] as Factory<typeof entry.type>;
    const idp = factory(entry as never, context);
    providers.set(idp.id, idp);
  }
  return providers;
}
