export { accountIdFor, type Identity } from './identity.ts';
export { SignInError, type IdentityProvider, type SignInResult, type SignInStart, type UpstreamTokens } from './provider.ts';
export { createOidcProvider, describeDiscoveryError, discoverOidcIssuer, identityFromClaims, type OidcProviderOptions } from './oidc.ts';
export { createDevProvider, devIdentityFromForm, DEV_SIGN_IN_PATH } from './dev.ts';
export { createIdentityProviders, presetOidcOptions, type ProviderContext } from './registry.ts';
export { createGitHubProvider, githubApiUrl, identityFromGitHub, membershipFromGitHub, nextPageUrl, GitHubApiError, type GitHubMembership, type GitHubProviderOptions } from './github.ts';
