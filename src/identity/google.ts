/**
 * `type: google`: Google's OpenID Connect provider
 * (https://developers.google.com/identity/openid-connect/openid-connect), the generic `oidc`
 * provider plus Google's quirks:
 *
 * - The ID token's `iss` is `https://accounts.google.com`, or `accounts.google.com` without the
 *   scheme for legacy implementations (Google's OpenID Connect reference, "Discovery document":
 *   `issuer`; OIDC Core §15.6.2). Both are accepted, nothing else (`googleIssuerRule`).
 * - `email_verified` alone does not make Google authoritative for an address: a Google account
 *   can be opened with any existing address, verified once by a link, whose mailbox may since
 *   have changed hands. Google's guide ("Obtaining user profile information") names the cases
 *   where it is authoritative: an `@gmail.com` address, or `email_verified` with `hd` set (a
 *   Google Workspace or Cloud Identity account). Only those count as verified here, so only
 *   they satisfy an email or domain rule.
 * - `hd` (the Workspace domain) is read for that rule and otherwise not kept.
 * - A refresh token needs `access_type=offline`, and is issued again on a later sign-in only
 *   with `prompt=consent` (Google's "Using OAuth 2.0 for Web Server Applications": "Refresh an
 *   access token (offline access)"); `include_granted_scopes=true` keeps the scopes granted
 *   before ("Incremental authorization"). They are sent only when the sign-in asks for extra
 *   scopes, that is when a service wants the user's Google token; a plain sign-in stays one
 *   click, without a consent screen each time. Google publishes no `offline_access` scope.
 * - Google's ID tokens carry no groups.
 */
import type { Identity } from './identity.ts';
import { identityFromClaims, type OidcProviderOptions } from './oidc.ts';
import { presetBase, presetScopes, type PresetOptions } from './preset.ts';

export const GOOGLE_ISSUER = 'https://accounts.google.com';
const GOOGLE_SCOPES = ['openid', 'email', 'profile'];

export interface GoogleProviderOptions extends PresetOptions {
  /** Default https://accounts.google.com; another only for a stand-in. */
  issuer?: string | undefined;
}

/**
 * The issuer a Google ID token must carry: the discovered one, or the same without `https://`
 * when that is what the token says.
 */
export function googleIssuerRule(discovered: string, claims: Record<string, unknown>): string {
  const schemeless = discovered.startsWith('https://') ? discovered.slice('https://'.length) : undefined;
  return schemeless !== undefined && claims.iss === schemeless ? schemeless : discovered;
}

/** Google's claims normalised; the email counts as verified only where Google is authoritative for it. */
export function googleIdentity(provider: string, claims: Record<string, unknown>): Identity {
  const identity = { ...identityFromClaims(provider, claims, 'groups'), groups: [] };
  const workspace = typeof claims.hd === 'string' && claims.hd !== '';
  const gmail = identity.email?.endsWith('@gmail.com') === true;
  identity.emailVerified = identity.emailVerified && (gmail || workspace);
  return identity;
}

/** Offline access, only when the sign-in asks for more than identity. */
export function googleAuthorizeParams({ extraScopes }: { extraScopes: readonly string[] }): Record<string, string> {
  return extraScopes.length > 0 ? { access_type: 'offline', prompt: 'consent', include_granted_scopes: 'true' } : {};
}

export function googleOidcOptions(options: GoogleProviderOptions): OidcProviderOptions {
  return {
    ...presetBase(options, 'google', 'Google'),
    issuer: options.issuer ?? GOOGLE_ISSUER,
    scopes: presetScopes(GOOGLE_SCOPES, options.scopes),
    groupsClaim: 'groups',
    authorizeParams: googleAuthorizeParams,
    idTokenIssuer: googleIssuerRule,
    toIdentity: (claims) => googleIdentity(options.id, claims),
  };
}
