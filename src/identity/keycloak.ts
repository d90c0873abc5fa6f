/**
 * `type: keycloak`: Keycloak (https://www.keycloak.org/docs/latest/server_admin/), the generic
 * `oidc` provider plus Keycloak's quirks:
 *
 * - The issuer is `{url}/realms/{realm}`: `url` is the server's base URL (with `/auth` on
 *   Keycloak 16 and older, or where the server is configured with that context path).
 * - Groups come from a "Group Membership" mapper, which writes full group paths by default:
 *   `/eng/backend`. The leading `/` is dropped, so a top-level group `/eng` is `eng`, as with
 *   "Full group path" off, and a subgroup is `eng/backend`: access rules name groups as
 *   `eng` or `eng/backend`. Membership of a subgroup is not membership of its parent (as in
 *   Keycloak), so `eng/backend` does not match `eng`.
 * - Realm roles are in `realm_access.roles` (the "realm roles" mapper of the `roles` client
 *   scope; in the ID token only once "Add to ID token" is turned on for it). They are added to
 *   the groups, so a rule may name a realm role too.
 */
import type { Identity } from './identity.ts';
import { identityFromClaims, type OidcProviderOptions } from './oidc.ts';
import { claimList, presetBase, presetScopes, type PresetOptions } from './preset.ts';

const KEYCLOAK_SCOPES = ['openid', 'email', 'profile'];

export interface KeycloakProviderOptions extends PresetOptions {
  /** The server's base URL, e.g. https://sso.example.com (https://sso.example.com/auth before Keycloak 17). */
  url: string;
  realm: string;
  /** Default `groups`. */
  groupsClaim?: string | undefined;
}

export function keycloakIssuer(url: string, realm: string): string {
  return `${url.replace(/\/+$/, '')}/realms/${encodeURIComponent(realm)}`;
}

/** Keycloak's claims normalised: group paths without their leading `/`, plus the realm roles. */
export function keycloakIdentity(provider: string, claims: Record<string, unknown>, groupsClaim: string): Identity {
  const identity = identityFromClaims(provider, claims, groupsClaim);
  const groups = identity.groups.map((group) => group.replace(/^\//, '')).filter(Boolean);
  const realmAccess = claims.realm_access;
  const roles = typeof realmAccess === 'object' && realmAccess !== null ? claimList((realmAccess as { roles?: unknown }).roles) : [];
  identity.groups = [...new Set([...groups, ...roles])];
  return identity;
}

export function keycloakOidcOptions(options: KeycloakProviderOptions): OidcProviderOptions {
  const groupsClaim = options.groupsClaim ?? 'groups';
  return {
    ...presetBase(options, 'keycloak', 'Keycloak'),
    issuer: keycloakIssuer(options.url, options.realm),
    scopes: presetScopes(KEYCLOAK_SCOPES, options.scopes),
    groupsClaim,
    toIdentity: (claims) => keycloakIdentity(options.id, claims, groupsClaim),
  };
}
