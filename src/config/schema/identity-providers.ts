import { z } from 'zod';
import {
  always, hostName, iconUrl, isRecord, issuerProblem, issuerUrl, list, scopeToken, slug, text, uniqueBy, url,
} from './primitives.ts';

/*
 * Upstream identity providers (`identity_providers`): oidc, dev and github, and the OpenID
 * Connect presets google, microsoft, okta, auth0 and keycloak.
 */

/** Parameters the gateway sets on every authorization request to the identity provider. */
const protocolParams = new Set([
  'client_id', 'redirect_uri', 'response_type', 'response_mode', 'scope', 'state', 'nonce',
  'code_challenge', 'code_challenge_method',
]);

// ---------------------------------------------------------------------------------------------
// Identity providers

const authorizeParam = z.preprocess(
  (value) => (typeof value === 'number' || typeof value === 'boolean' ? String(value) : value),
  z.string(),
);

const oidcProvider = z.strictObject({
  type: z.literal('oidc'),
  id: slug,
  name: text.optional(),
  icon: iconUrl.optional(),
  issuer: issuerUrl,
  client_id: text,
  client_secret: text.optional(),
  scopes: z.array(scopeToken)
    .refine((scopes) => scopes.includes('openid'), { error: 'must include openid: the gateway signs users in with OpenID Connect' })
    .default(() => ['openid', 'email', 'profile']),
  groups_claim: text.default('groups'),
  extra_authorize_params: z.record(z.string(), authorizeParam)
    .superRefine((params: unknown, ctx) => {
      if (!isRecord(params)) return;
      for (const key of Object.keys(params)) {
        if (protocolParams.has(key)) ctx.addIssue({ code: 'custom', path: [key], message: 'is set by the gateway on every request and cannot be overridden', input: key });
      }
    }, always)
    .default(() => ({})),
});

const devProvider = z.strictObject({
  type: z.literal('dev'),
  id: slug,
  name: text.default('Dev sign-in'),
});

/** `type: github`: GitHub's OAuth 2.0 (no OIDC) plus its REST API; base_url/api_url for GitHub Enterprise Server. */
const githubProvider = z.strictObject({
  type: z.literal('github'),
  id: slug,
  name: text.optional(),
  icon: iconUrl.optional(),
  client_id: text,
  client_secret: text,
  base_url: issuerUrl.optional(),
  api_url: issuerUrl.optional(),
  scopes: list(scopeToken),
});

// The OpenID Connect presets: the oidc provider with one provider's defaults and quirks
// (src/identity/<type>.ts). They take the client registered there, and where the provider
// lives when not at its usual place (self-hosted, national clouds, local stand-ins in tests).

const presetShape = {
  id: slug,
  name: text.optional(),
  icon: iconUrl.optional(),
  client_id: text,
  client_secret: text,
  scopes: list(scopeToken),
};

/** A host name alone, as Okta and Auth0 name a tenant: dev-123.okta.com. */
function providerDomain(example: string) {
  return z.string().superRefine((value, ctx) => {
    const problem = /^[a-z][a-z0-9+.-]*:\/\//i.test(value)
      ? `must be the host name only, such as ${example}, without ${value.slice(0, value.indexOf(':') + 3)}`
      : hostName.test(value) && value.includes('.') ? undefined : `must be a host name such as ${example}`;
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });
}

/** An origin (scheme, host, port), https or loopback http: Entra's authority. */
const authorityUrl = url((value, parsed) => {
  const problem = issuerProblem(value, parsed);
  if (problem !== undefined) return problem;
  return parsed.pathname === '/' ? undefined : `must be an origin only, such as ${parsed.origin}, without a path: the tenant is set by tenant`;
}, 'https://login.microsoftonline.com');

const entraTenant = z.string().refine(
  (value) => ['common', 'organizations', 'consumers'].includes(value)
    || /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
    || (hostName.test(value) && value.includes('.')),
  { error: 'must be common, organizations, consumers, or one tenant\'s id (a GUID) or domain (contoso.onmicrosoft.com)' },
);

/** Exactly one of `domain` and `issuer`; `only_with_domain` keys make sense with `domain` alone. */
function domainOrIssuer(example: string, onlyWithDomain: readonly string[] = []) {
  return (entry: unknown, ctx: z.core.$RefinementCtx<unknown>): void => {
    if (!isRecord(entry)) return;
    if (entry.domain !== undefined && entry.issuer !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'cannot be set together with domain: set domain, or issuer for an issuer of another shape, not both', input: entry.issuer });
    } else if (entry.domain === undefined && entry.issuer === undefined) {
      ctx.addIssue({ code: 'custom', path: ['domain'], message: `is required (or issuer): the tenant's domain, such as ${example}`, input: undefined });
    }
    for (const key of onlyWithDomain) {
      if (entry[key] !== undefined && entry.issuer !== undefined) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'goes with domain; with issuer, the issuer already names the authorization server (https://{domain}/oauth2/{id})', input: entry[key] });
      }
    }
  };
}

const googleProvider = z.strictObject({
  type: z.literal('google'),
  ...presetShape,
  issuer: issuerUrl.optional(),
});

const microsoftProvider = z.strictObject({
  type: z.literal('microsoft'),
  ...presetShape,
  tenant: entraTenant,
  authority: authorityUrl.optional(),
  groups_claim: text.default('groups'),
});

const oktaProvider = z.strictObject({
  type: z.literal('okta'),
  ...presetShape,
  domain: providerDomain('dev-123.okta.com').optional(),
  authorization_server: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: 'must be an authorization server id such as default or aus1a2b3c4d5e6f7g8' }).optional(),
  issuer: issuerUrl.optional(),
  groups_claim: text.default('groups'),
}).superRefine(domainOrIssuer('dev-123.okta.com', ['authorization_server']), always);

const auth0Provider = z.strictObject({
  type: z.literal('auth0'),
  ...presetShape,
  domain: providerDomain('example.eu.auth0.com').optional(),
  issuer: issuerUrl.optional(),
  groups_claim: text.refine((claim) => claim !== 'groups' && claim !== 'roles', {
    error: 'is a claim name Auth0 reserves and drops from tokens: have an Action set a namespaced claim such as https://example.com/groups, and name that',
  }).optional(),
}).superRefine(domainOrIssuer('example.eu.auth0.com'), always);

const keycloakProvider = z.strictObject({
  type: z.literal('keycloak'),
  ...presetShape,
  url: issuerUrl,
  realm: z.string().regex(/^[A-Za-z0-9._~-]+$/, { error: 'must be a realm name as it appears in the realm\'s URLs (letters, digits, ".", "_", "-", "~"); for others use type: oidc with the issuer' }),
  groups_claim: text.default('groups'),
});

const identityProvider = z.discriminatedUnion('type', [
  oidcProvider, devProvider, githubProvider,
  googleProvider, microsoftProvider, oktaProvider, auth0Provider, keycloakProvider,
]);

export const identityProviders = z.array(identityProvider)
  .min(1, { error: 'list at least one identity provider' })
  .superRefine(uniqueBy('id', 'id'), always);
