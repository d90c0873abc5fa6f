/**
 * `type: auth0`: Auth0 (https://auth0.com/docs/authenticate/protocols/openid-connect-protocol),
 * the generic `oidc` provider plus Auth0's quirks:
 *
 * - The issuer is `https://{domain}/`, with a trailing slash, and ID tokens carry it so;
 *   `domain` builds it with the slash. (A configured `issuer` without it still works: a URL
 *   with an empty path and one with `/` are the same to discovery.)
 * - Auth0 has no groups claim of its own. Roles or groups reach the ID token through an Action
 *   (`api.idToken.setCustomClaim`), and Auth0 silently drops custom claims named `groups` or
 *   `roles` ("Create Custom Claims": restricted claims), so `groups_claim` must name a
 *   namespaced claim such as `https://example.com/groups`. Without `groups_claim`, no groups.
 */
import type { Identity } from './identity.ts';
import { identityFromClaims, type OidcProviderOptions } from './oidc.ts';
import { presetBase, presetScopes, type PresetOptions } from './preset.ts';

const AUTH0_SCOPES = ['openid', 'email', 'profile'];

export interface Auth0ProviderOptions extends PresetOptions {
  /** The tenant's domain, e.g. example.eu.auth0.com, or a custom domain; or `issuer`. */
  domain?: string | undefined;
  /** The issuer itself, instead of `domain`. */
  issuer?: string | undefined;
  /** The (namespaced) claim an Action puts the user's groups or roles in. */
  groupsClaim?: string | undefined;
}

export function auth0Issuer(options: Pick<Auth0ProviderOptions, 'domain' | 'issuer'>): string {
  if (options.issuer !== undefined) return options.issuer;
  if (options.domain === undefined) throw new Error('auth0 needs domain or issuer');
  return `https://${options.domain}/`;
}

export function auth0Identity(provider: string, claims: Record<string, unknown>, groupsClaim: string | undefined): Identity {
  const identity = identityFromClaims(provider, claims, groupsClaim ?? 'groups');
  if (groupsClaim === undefined) identity.groups = [];
  return identity;
}

export function auth0OidcOptions(options: Auth0ProviderOptions): OidcProviderOptions {
  return {
    ...presetBase(options, 'auth0', 'Auth0'),
    issuer: auth0Issuer(options),
    scopes: presetScopes(AUTH0_SCOPES, options.scopes),
    groupsClaim: options.groupsClaim ?? 'groups',
    toIdentity: (claims) => auth0Identity(options.id, claims, options.groupsClaim),
  };
}
