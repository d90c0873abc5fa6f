/**
 * The presets from configuration to the generic oidc provider's options: the config schema's
 * rules for each preset's keys, and where each preset then finds its provider.
 */
import { describe, expect, it } from 'vitest';
import { buildConfig, type IdentityProviderConfig } from '../config/index.ts';
import { presetOidcOptions } from './registry.ts';

function providers(...identity_providers: Array<Record<string, unknown>>): readonly IdentityProviderConfig[] {
  return buildConfig({
    public_url: 'https://mcp.example.com',
    secrets: { encryption_key: Buffer.alloc(32, 7).toString('base64') },
    identity_providers,
    access: { allow: { users: ['*'] } },
    services: { demo: { upstream: 'http://127.0.0.1:3001/mcp' } },
  }, { source: 'test', env: {} }).identity_providers;
}

function problems(entry: Record<string, unknown>): string[] {
  try {
    providers(entry);
    return [];
  } catch (error) {
    return (error as Error).message.split('\n').slice(1).map((line) => line.replace(/^\s+- /, ''));
  }
}

const client = { client_id: 'gatehouse', client_secret: 'secret' };

describe('where each preset finds its provider', () => {
  it('google: accounts.google.com unless told otherwise', () => {
    const [standard, standin] = providers({ type: 'google', id: 'g', ...client }, { type: 'google', id: 'g2', ...client, issuer: 'http://127.0.0.1:9999' });
    expect(presetOidcOptions(standard!)).toMatchObject({ type: 'google', issuer: 'https://accounts.google.com' });
    expect(presetOidcOptions(standin!)).toMatchObject({ issuer: 'http://127.0.0.1:9999' });
  });

  it('microsoft: <authority>/<tenant>/v2.0, discovered there', () => {
    const [entra, gov] = providers(
      { type: 'microsoft', id: 'entra', ...client, tenant: 'organizations' },
      { type: 'microsoft', id: 'gov', ...client, tenant: 'contoso.onmicrosoft.us', authority: 'https://login.microsoftonline.us/' },
    );
    expect(presetOidcOptions(entra!)?.discovery?.url).toBe('https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration');
    expect(presetOidcOptions(gov!)?.discovery?.url).toBe('https://login.microsoftonline.us/contoso.onmicrosoft.us/v2.0/.well-known/openid-configuration');
  });

  it('okta: the org or a custom authorization server from domain, or the issuer as given', () => {
    const [org, custom, issuer] = providers(
      { type: 'okta', id: 'o1', ...client, domain: 'dev-123.okta.com' },
      { type: 'okta', id: 'o2', ...client, domain: 'dev-123.okta.com', authorization_server: 'default' },
      { type: 'okta', id: 'o3', ...client, issuer: 'https://login.example.com/oauth2/aus1' },
    );
    expect(presetOidcOptions(org!)?.issuer).toBe('https://dev-123.okta.com');
    expect(presetOidcOptions(custom!)?.issuer).toBe('https://dev-123.okta.com/oauth2/default');
    expect(presetOidcOptions(issuer!)?.issuer).toBe('https://login.example.com/oauth2/aus1');
  });

  it('auth0: https://<domain>/ with its trailing slash', () => {
    const [auth0] = providers({ type: 'auth0', id: 'a', ...client, domain: 'example.eu.auth0.com', groups_claim: 'https://example.com/groups' });
    expect(presetOidcOptions(auth0!)).toMatchObject({ issuer: 'https://example.eu.auth0.com/', groupsClaim: 'https://example.com/groups' });
  });

  it('keycloak: <url>/realms/<realm>', () => {
    const [keycloak] = providers({ type: 'keycloak', id: 'k', ...client, url: 'https://sso.example.com/auth/', realm: 'corp' });
    expect(presetOidcOptions(keycloak!)?.issuer).toBe('https://sso.example.com/auth/realms/corp');
  });

  it('is undefined for providers that are not presets', () => {
    const [oidc] = providers({ type: 'oidc', id: 'corp', issuer: 'https://sso.example.com', client_id: 'x' });
    expect(presetOidcOptions(oidc!)).toBeUndefined();
  });
});

describe('the schema\'s rules for preset keys', () => {
  it('requires the client secret: the gateway is a confidential web application', () => {
    expect(problems({ type: 'google', id: 'g', client_id: 'x' })).toEqual(['identity_providers[0].client_secret: is required']);
  });

  it('microsoft: a known tenant kind, id or domain, and an authority without a path', () => {
    expect(problems({ type: 'microsoft', id: 'm', ...client, tenant: 'contoso', authority: 'https://login.microsoftonline.com/common' })).toEqual([
      'identity_providers[0].tenant: must be common, organizations, consumers, or one tenant\'s id (a GUID) or domain (contoso.onmicrosoft.com)',
      'identity_providers[0].authority: must be an origin only, such as https://login.microsoftonline.com, without a path: the tenant is set by tenant',
    ]);
    expect(problems({ type: 'microsoft', id: 'm', ...client })).toEqual(['identity_providers[0].tenant: is required']);
    expect(problems({ type: 'microsoft', id: 'm', ...client, tenant: 'common', authority: 'http://login.example.com' })[0]).toMatch(/authority: must use https/);
    expect(problems({ type: 'microsoft', id: 'm', ...client, tenant: '72F988BF-86F1-41AF-91AB-2D7CD011DB47' })).toEqual([]);
  });

  it('okta and auth0: domain or issuer, not both, not neither; a host name for domain', () => {
    expect(problems({ type: 'okta', id: 'o', ...client })).toEqual(['identity_providers[0].domain: is required (or issuer): the tenant\'s domain, such as dev-123.okta.com']);
    expect(problems({ type: 'auth0', id: 'a', ...client, domain: 'https://example.auth0.com' })).toEqual([
      'identity_providers[0].domain: must be the host name only, such as example.eu.auth0.com, without https://',
    ]);
    expect(problems({ type: 'okta', id: 'o', ...client, domain: 'dev-123.okta.com', issuer: 'https://dev-123.okta.com' })).toEqual([
      'identity_providers[0].issuer: cannot be set together with domain: set domain, or issuer for an issuer of another shape, not both',
    ]);
    expect(problems({ type: 'okta', id: 'o', ...client, issuer: 'https://dev-123.okta.com', authorization_server: 'default' })[0]).toMatch(/^identity_providers\[0\]\.authorization_server: goes with domain/);
  });

  it('auth0: refuses the group claim names Auth0 drops', () => {
    for (const claim of ['groups', 'roles']) {
      expect(problems({ type: 'auth0', id: 'a', ...client, domain: 'x.auth0.com', groups_claim: claim })[0]).toMatch(/^identity_providers\[0\]\.groups_claim: is a claim name Auth0 reserves/);
    }
  });

  it('keycloak: url and realm required; the realm as in its URLs', () => {
    expect(problems({ type: 'keycloak', id: 'k', ...client })).toEqual(['identity_providers[0].url: is required', 'identity_providers[0].realm: is required']);
    expect(problems({ type: 'keycloak', id: 'k', ...client, url: 'https://sso.example.com', realm: 'my realm' })[0]).toMatch(/^identity_providers\[0\]\.realm: must be a realm name/);
  });

  it('refuses keys of other types, as for any provider', () => {
    expect(problems({ type: 'google', id: 'g', ...client, tenant: 'common' })[0]).toMatch(/^identity_providers\[0\]\.tenant: unknown key/);
  });
});
