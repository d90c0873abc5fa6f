/**
 * `type: okta`: Okta (https://developer.okta.com/docs/concepts/auth-servers/), the generic `oidc`
 * provider plus Okta's quirks:
 *
 * - Two kinds of authorization server with different issuers: the org authorization server,
 *   `https://{domain}`, and custom ones, `https://{domain}/oauth2/{id}` (`default` is the one
 *   every org has). `domain` plus the optional `authorization_server` id builds the issuer;
 *   `issuer` may be given instead.
 * - Okta returns a "thin" ID token when an access token comes with it, as it always does in
 *   the authorization code flow: only base claims and a few scope-dependent ones; the rest,
 *   `email_verified` and groups among them, are at the UserInfo endpoint (Okta support, "Okta
 *   Groups or Attribute Missing from ID Token"). The preset reads UserInfo after each sign-in.
 * - Groups come in a `groups` claim only when one is configured ("Customize tokens returned
 *   from Okta with a groups claim"): on the org authorization server in the app's sign-on
 *   settings, released with the `groups` scope, which the preset then asks for; on a custom
 *   authorization server as a claim of that server, released with a scope of your choosing
 *   (the `default` server has no `groups` scope until you add one: asking for a scope the
 *   server lacks fails the sign-in, so the preset does not ask for it there; add it under
 *   `scopes` once created).
 */
import { identityFromClaims, type OidcProviderOptions } from './oidc.ts';
import { presetBase, presetScopes, type PresetOptions } from './preset.ts';

const OKTA_SCOPES = ['openid', 'email', 'profile'];

export interface OktaProviderOptions extends PresetOptions {
  /** The Okta domain, e.g. dev-123.okta.com; or `issuer`. */
  domain?: string | undefined;
  /** A custom authorization server's id (`default`, `aus…`); absent: the org authorization server. With `domain` only. */
  authorizationServer?: string | undefined;
  /** The issuer itself, instead of `domain`. */
  issuer?: string | undefined;
  /** Default `groups`. */
  groupsClaim?: string | undefined;
}

/** The issuer of an Okta authorization server. */
export function oktaIssuer(options: Pick<OktaProviderOptions, 'domain' | 'authorizationServer' | 'issuer'>): string {
  if (options.issuer !== undefined) return options.issuer;
  if (options.domain === undefined) throw new Error('okta needs domain or issuer');
  const org = `https://${options.domain}`;
  return options.authorizationServer === undefined ? org : `${org}/oauth2/${encodeURIComponent(options.authorizationServer)}`;
}

/** Whether an issuer is an org authorization server's: no path. */
export function isOktaOrgServer(issuer: string): boolean {
  return new URL(issuer).pathname.replace(/\/+$/, '') === '';
}

export function oktaOidcOptions(options: OktaProviderOptions): OidcProviderOptions {
  const issuer = oktaIssuer(options);
  const groupsClaim = options.groupsClaim ?? 'groups';
  const own = isOktaOrgServer(issuer) ? [...OKTA_SCOPES, 'groups'] : OKTA_SCOPES;
  return {
    ...presetBase(options, 'okta', 'Okta'),
    issuer,
    scopes: presetScopes(own, options.scopes),
    groupsClaim,
    userinfo: true,
    toIdentity: (claims) => identityFromClaims(options.id, claims, groupsClaim),
  };
}
