/**
 * `type: microsoft`: Microsoft Entra ID through the Microsoft identity platform's v2.0
 * endpoints (https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc), the generic
 * `oidc` provider plus Entra's quirks:
 *
 * - Where it lives: `<authority>/<tenant>/v2.0`, the tenant being `common` (work, school and
 *   personal accounts), `organizations` (work and school), `consumers` (personal), or one
 *   tenant's id or domain. The authority is https://login.microsoftonline.com, or a national
 *   cloud's (https://login.microsoftonline.us, https://login.chinacloudapi.cn).
 * - Multi-tenant discovery states the issuer `<authority>/{tenantid}/v2.0`, a template, and a
 *   tenant given by domain resolves to the tenant id: discovery is read at its URL and its
 *   issuer checked against what that tenant may state (`entraIssuerProblem`). Each ID token
 *   then carries its own tenant's issuer, which must equal the template with the token's `tid`
 *   put in, `tid` being a GUID ("Validate the issuer" in Microsoft's access token reference:
 *   check that `tid` is a GUID and that issuer and `tid` match). Nothing looser is accepted:
 *   a token whose `iss` names another tenant than its `tid` is refused (`entraIssuerRule`).
 * - The subject is `<tid>/<oid>`: `oid` is the user's object id in the tenant, the same for
 *   every app and shown in the Entra admin center; Microsoft interprets every claim, `sub`
 *   included, within the tenant, so the tenant is part of the subject ("Migrate away from
 *   using email claims for user identification or authorization").
 * - `email` is not verified by Entra: it is the user's `mail` attribute, which a tenant's admin
 *   sets freely, and single-tenant apps still receive unverified addresses (Microsoft Graph
 *   "Manage application authenticationBehaviors": `removeUnverifiedEmailClaim`). It counts as
 *   verified only with the optional claim `xms_edov` true, "the user's email domain owner has
 *   been verified" (optional claims reference). `preferred_username` (the UPN, or a guest's
 *   external name) is never taken for the email.
 * - Groups: the `groups` claim (group object ids) when the app registration's "groups claim"
 *   is configured, and the `roles` claim (app roles assigned to the user or their groups).
 *   Both end up in `groups`. Past 200 groups Entra leaves the claim out ("groups overage",
 *   `_claim_names`); the gateway does not call Microsoft Graph, so such users have only their
 *   roles: assign groups to the application, or use app roles, to stay below it.
 * - Entra refuses the RFC 8707 `resource` parameter (AADSTS901002 on v2.0 endpoints); the
 *   gateway never sends it, this preset has no way to add authorization parameters, and the
 *   MCP client's own `resource` never leaves the gateway.
 */
import type { Identity } from './identity.ts';
import { identityFromClaims, type OidcProviderOptions } from './oidc.ts';
import { claimList, presetBase, presetScopes, type PresetOptions } from './preset.ts';
import { SignInError } from './provider.ts';

export const ENTRA_AUTHORITY = 'https://login.microsoftonline.com';
/** The tenant of personal Microsoft accounts, which `consumers` resolves to. */
export const ENTRA_CONSUMERS_TENANT_ID = '9188040d-6c67-4c5b-b112-36a304b66dad';
const MULTI_TENANT = new Set(['common', 'organizations']);
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TENANT_PLACEHOLDER = '{tenantid}';
const ENTRA_SCOPES = ['openid', 'email', 'profile'];

export interface MicrosoftProviderOptions extends PresetOptions {
  /** common | organizations | consumers | a tenant id | a tenant domain. */
  tenant: string;
  /** Default https://login.microsoftonline.com; an origin, without a trailing slash. */
  authority?: string | undefined;
  /** Default `groups`; `roles` is always read too. */
  groupsClaim?: string | undefined;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

export function entraDiscoveryUrl(authority: string, tenant: string): string {
  return `${trimSlash(authority)}/${encodeURIComponent(tenant)}/v2.0/.well-known/openid-configuration`;
}

/** Why `issuer` is not what discovery for `tenant` at `authority` may state, or undefined. */
export function entraIssuerProblem(authority: string, tenant: string, issuer: string): string | undefined {
  const prefix = `${trimSlash(authority)}/`;
  const suffix = '/v2.0';
  const expected = MULTI_TENANT.has(tenant)
    ? `${prefix}${TENANT_PLACEHOLDER}${suffix}`
    : tenant === 'consumers' ? `${prefix}${ENTRA_CONSUMERS_TENANT_ID}${suffix}`
      : GUID.test(tenant) ? `${prefix}${tenant.toLowerCase()}${suffix}`
        : `${prefix}<the tenant id of ${tenant}>${suffix}`;
  if (!issuer.startsWith(prefix) || !issuer.endsWith(suffix)) return `expected ${expected}, got ${issuer}`;
  const middle = issuer.slice(prefix.length, -suffix.length);
  const matches = MULTI_TENANT.has(tenant)
    ? middle === TENANT_PLACEHOLDER
    : tenant === 'consumers' ? middle === ENTRA_CONSUMERS_TENANT_ID
      : GUID.test(tenant) ? middle.toLowerCase() === tenant.toLowerCase()
        : GUID.test(middle);
  return matches ? undefined : `expected ${expected}, got ${issuer}`;
}

/**
 * The issuer an Entra ID token must carry: the discovered one, or, for a `{tenantid}` template,
 * the template with the token's `tid`, which must be a GUID.
 */
export function entraIssuerRule(discovered: string, claims: Record<string, unknown>): string | undefined {
  if (!discovered.includes(TENANT_PLACEHOLDER)) return discovered;
  const tid = claims.tid;
  if (typeof tid !== 'string' || !GUID.test(tid)) return undefined;
  return discovered.replace(TENANT_PLACEHOLDER, tid);
}

function isTrue(value: unknown): boolean {
  return value === true || value === 'true' || value === 1 || value === '1';
}

/** Entra's claims normalised: subject `<tid>/<oid>`, groups and app roles, email verified only by `xms_edov`. */
export function entraIdentity(provider: string, claims: Record<string, unknown>, groupsClaim: string): Identity {
  const identity = identityFromClaims(provider, claims, groupsClaim);
  const { tid, oid } = claims;
  if (typeof tid !== 'string' || !GUID.test(tid) || typeof oid !== 'string' || !GUID.test(oid)) {
    throw new SignInError(`${provider} returned no tenant id (tid) or object id (oid) for the signed-in user`, 'The identity provider did not say who you are.');
  }
  identity.subject = `${tid.toLowerCase()}/${oid.toLowerCase()}`;
  identity.groups = [...new Set([...identity.groups, ...claimList(claims.roles)])];
  identity.emailVerified = identity.email !== undefined && isTrue(claims.xms_edov);
  return identity;
}

export function microsoftOidcOptions(options: MicrosoftProviderOptions): OidcProviderOptions {
  const authority = trimSlash(options.authority ?? ENTRA_AUTHORITY);
  const groupsClaim = options.groupsClaim ?? 'groups';
  return {
    ...presetBase(options, 'microsoft', 'Microsoft'),
    issuer: `${authority}/${options.tenant}/v2.0`,
    discovery: {
      url: entraDiscoveryUrl(authority, options.tenant),
      checkIssuer: (issuer) => entraIssuerProblem(authority, options.tenant, issuer),
    },
    scopes: presetScopes(ENTRA_SCOPES, options.scopes),
    groupsClaim,
    idTokenIssuer: entraIssuerRule,
    toIdentity: (claims) => entraIdentity(options.id, claims, groupsClaim),
  };
}
