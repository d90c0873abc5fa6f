export { createAuthorizationServer, type AuthorizationServerOptions } from './provider.ts';
export { loadSigningKeys, type SigningKeys } from './signing-keys.ts';
export { buildServiceCatalog, createServiceCatalog, BASELINE_SCOPE, type ProtectedService, type ReloadableServiceCatalog, type ServiceCatalog, type ServiceDefinition } from './service-catalog.ts';
export { canonicalResource } from './resource-uri.ts';
export { checkRedirectUri, redirectUriMatches, isLoopbackHost } from './redirect-uri.ts';
export { loadAccount, saveAccount, accountClaims, type Account } from './accounts.ts';
export { registerSignInRoutes } from './sign-in.ts';
export { registerConsentRoutes, showConsent, clientRedirectSource } from './consent-routes.ts';
export type { InteractionContext } from './interaction-context.ts';
export { mountAuthorizationServer } from './mount.ts';
export {
  createUpstreamTokens, UPSTREAM_TOKEN_KIND, type UpstreamAccessToken, type UpstreamTokenKeeper, type StoredUpstreamTokens,
} from './upstream-tokens.ts';
