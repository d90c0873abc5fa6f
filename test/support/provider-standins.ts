/**
 * Local stand-ins for the identity providers the presets target: real oidc-provider instances
 * (upstream-idp.ts) with each provider's issuer shape, discovery paths and claim quirks, and
 * the gateway's `identity_providers` entry pointing at each through the preset's override keys.
 *
 *   Google     issuer at the origin; email_verified, hd (users carry them)
 *   Entra      /{tenant}/v2.0 for one tenant, /common/v2.0 and /organizations/v2.0 whose
 *              discovery states the `{tenantid}` template; ID tokens carry the tenant's own
 *              issuer; tid/oid (users carry them), no email_verified; no RFC 9207 `iss`; a
 *              `resource` parameter is refused
 *   Okta       a custom authorization server at /oauth2/default; thin ID tokens (claims at
 *              userinfo); groups with the `groups` scope
 *   Auth0      issuer with a trailing slash; groups in a namespaced claim (users carry it)
 *   Keycloak   /realms/test; groups (full paths) from a mapper, without a scope; realm roles
 *              in realm_access (users carry them)
 */
import { startUpstreamIdp, type UpstreamIdp, type UpstreamUser } from './upstream-idp.ts';

/** The Entra stand-in's own tenant, and another one. */
export const ENTRA_TENANT = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
export const ENTRA_OTHER_TENANT = 'a7c1e0d2-5b3f-4c8e-9d6a-1f2e3d4c5b6a';
/** Auth0 custom claims must be namespaced. */
export const AUTH0_GROUPS_CLAIM = 'https://gatehouse.test/groups';

export interface StandinOptions {
  /** The gateway's identity_providers[].id for it. */
  id: string;
  /** The gateway's callback URL for it: `<public_url>callback/<id>`. */
  redirectUri: string;
  users: Record<string, UpstreamUser>;
  /** Display name on the chooser. */
  name?: string;
  /** Scopes offered besides the OpenID ones (an API's, for upstream tokens). */
  scopes?: string[];
}

export interface Standin {
  idp: UpstreamIdp;
  /** The gateway's `identity_providers` entry for it. */
  entry: Record<string, unknown>;
}

const CLIENT_ID = 'gatehouse';

function client(options: StandinOptions, type: string) {
  return { client_id: CLIENT_ID, client_secret: `${type}-secret`, redirect_uris: [options.redirectUri] };
}

function entry(options: StandinOptions, type: string, where: Record<string, unknown>): Record<string, unknown> {
  return { type, id: options.id, ...(options.name ? { name: options.name } : {}), client_id: CLIENT_ID, client_secret: `${type}-secret`, ...where };
}

export async function startGoogleStandin(options: StandinOptions): Promise<Standin> {
  const idp = await startUpstreamIdp({ users: options.users, clients: [client(options, 'google')], scopes: options.scopes ?? [] });
  return { idp, entry: entry(options, 'google', { issuer: idp.issuer }) };
}

/** `tenant` is what the gateway is configured with (default `organizations`: the `{tenantid}` template). */
export async function startEntraStandin(options: StandinOptions & { tenant?: string }): Promise<Standin> {
  const template = (url: string) => `${url}/{tenantid}/v2.0`;
  const idp = await startUpstreamIdp({
    issuerPath: `/${ENTRA_TENANT}/v2.0`,
    aliases: [{ path: '/common/v2.0', discoveryIssuer: template }, { path: '/organizations/v2.0', discoveryIssuer: template }],
    authorizationResponseIss: false,
    refusedParameters: ['resource'],
    groupsScope: 'openid',
    users: options.users,
    clients: [client(options, 'microsoft')],
  });
  return { idp, entry: entry(options, 'microsoft', { tenant: options.tenant ?? 'organizations', authority: idp.url }) };
}

export async function startOktaStandin(options: StandinOptions): Promise<Standin> {
  const idp = await startUpstreamIdp({ issuerPath: '/oauth2/default', thinIdToken: true, users: options.users, clients: [client(options, 'okta')] });
  // A custom authorization server whose `groups` scope was created: named under scopes.
  return { idp, entry: entry(options, 'okta', { issuer: idp.issuer, scopes: ['groups'] }) };
}

export async function startAuth0Standin(options: StandinOptions): Promise<Standin> {
  const idp = await startUpstreamIdp({ issuerTrailingSlash: true, users: options.users, clients: [client(options, 'auth0')] });
  return { idp, entry: entry(options, 'auth0', { issuer: idp.issuer, groups_claim: AUTH0_GROUPS_CLAIM }) };
}

export async function startKeycloakStandin(options: StandinOptions): Promise<Standin> {
  const idp = await startUpstreamIdp({ issuerPath: '/realms/test', groupsScope: 'openid', users: options.users, clients: [client(options, 'keycloak')] });
  return { idp, entry: entry(options, 'keycloak', { url: idp.url, realm: 'test' }) };
}
