/**
 * Token grants whose ID token carries an issuer other than the discovered one, in the ways a
 * provider documents, validated by openid-client all the same.
 *
 * OpenID Connect Core §3.1.3.7 (step 2) has the ID token's `iss` equal the issuer found by
 * discovery, exactly; openid-client checks exactly that. Two providers depart from it:
 * - Microsoft Entra's multi-tenant endpoints (`common`, `organizations`) publish a template,
 *   `https://login.microsoftonline.com/{tenantid}/v2.0`; each ID token carries its own tenant's
 *   issuer and that tenant's id in `tid`.
 * - Google documents `accounts.google.com`, without the scheme, as a legacy `iss` beside
 *   `https://accounts.google.com` (OIDC Core §15.6.2).
 * openid-client copes with the first only at the login.microsoftonline.com origin (not in
 * sovereign clouds, not against a local stand-in) and with the second not at all. So a grant
 * for such a provider runs in three steps:
 *   1. the grant runs against the provider and stops as soon as the token endpoint answers;
 *   2. the provider's rule reads the ID token's claims (not verified yet, used only to choose)
 *      and names the one issuer this token must carry, or refuses;
 *   3. the grant runs again on the recorded answer, with that issuer as the server's: openid-
 *      client validates the ID token in full (signature, `iss`, `aud`, `azp`, `exp`, nonce).
 * The provider sees one token request; the second run reads the recorded response.
 */
import { decodeJwt } from 'jose';
import * as client from 'openid-client';

/**
 * Given the discovered issuer and an ID token's claims (not yet verified), the exact issuer
 * that token must carry; undefined refuses the token.
 */
export type IdTokenIssuerRule = (discoveredIssuer: string, unverifiedClaims: Record<string, unknown>) => string | undefined;

interface RecordedResponse {
  status: number;
  statusText: string;
  headers: Array<[string, string]>;
  body: string;
}

/** Thrown inside openid-client to end the first run once the token response is recorded. */
class TokenResponseRecorded extends Error {}

function isTokenRequest(url: string, init: client.CustomFetchOptions, tokenEndpoint: string): boolean {
  return init.method === 'POST' && URL.canParse(url) && new URL(url).href === new URL(tokenEndpoint).href;
}

/** The issuer `rule` expects for the ID token in a token response; the discovered one without an ID token. */
function expectedIssuer(recorded: RecordedResponse, discovered: string, rule: IdTokenIssuerRule): string {
  let idToken: unknown;
  try {
    idToken = (JSON.parse(recorded.body) as { id_token?: unknown }).id_token;
  } catch {
    return discovered; // Not JSON: openid-client reports it on the replay.
  }
  if (typeof idToken !== 'string') return discovered;
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(idToken);
  } catch {
    return discovered; // Not a JWT: openid-client reports it on the replay.
  }
  const expected = rule(discovered, claims);
  if (expected === undefined) {
    throw new Error(`ID token refused: its issuer ${JSON.stringify(claims.iss)} is not one ${discovered} issues`);
  }
  return expected;
}

export interface IssuerRuleGrant {
  rule: IdTokenIssuerRule;
  /** The provider's configuration, as discovered. */
  base: client.Configuration;
  /** A configuration like `base` (client, authentication, transport) over other server metadata. */
  configure(metadata: client.ServerMetadata): client.Configuration;
  /** Keeps the provider's keys between sign-ins: each run uses a fresh configuration. */
  jwks: { cache?: client.ExportedJWKSCache | undefined };
}

/**
 * Runs `grant` (an authorization-code or refresh grant on the configuration it is given) in
 * the three steps above. `replay` is true for the second run: the authorization response was
 * checked in the first (`state`, and `iss` against the discovered issuer, RFC 9207 §2.4), so
 * the caller drops the response's `iss` parameter, which is the discovered issuer, not the
 * token's.
 */
export async function grantWithIssuerRule<T>(
  setup: IssuerRuleGrant,
  grant: (config: client.Configuration, replay: boolean) => Promise<T>,
): Promise<T> {
  // The helpers serverMetadata() adds (supportsPKCE) are not enumerable: the spread is the plain metadata.
  const metadata = { ...setup.base.serverMetadata() } as client.ServerMetadata;
  const tokenEndpoint = metadata.token_endpoint;
  if (tokenEndpoint === undefined) throw new Error(`${metadata.issuer} publishes no token endpoint`);

  let recorded: RecordedResponse | undefined;
  const first = setup.configure(metadata);
  first[client.customFetch] = async (url, init) => {
    const response = await fetch(url, init as RequestInit);
    if (!isTokenRequest(url, init, tokenEndpoint)) return response;
    recorded = { status: response.status, statusText: response.statusText, headers: [...response.headers], body: await response.text() };
    throw new TokenResponseRecorded('token response recorded');
  };
  try {
    return await grant(first, false);
  } catch (error) {
    if (recorded === undefined) throw error; // Failed before the token request: nothing to replay.
  }

  const answer = recorded;
  const replay = setup.configure({ ...metadata, issuer: expectedIssuer(answer, metadata.issuer, setup.rule), authorization_response_iss_parameter_supported: false });
  replay[client.customFetch] = async (url, init) => (isTokenRequest(url, init, tokenEndpoint)
    ? new Response(answer.body, { status: answer.status, statusText: answer.statusText, headers: answer.headers })
    : fetch(url, init as RequestInit));
  if (setup.jwks.cache) client.setJwksCache(replay, setup.jwks.cache);
  try {
    return await grant(replay, true);
  } finally {
    setup.jwks.cache = client.getJwksCache(replay) ?? setup.jwks.cache;
  }
}
