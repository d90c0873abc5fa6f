import { describe, expect, it } from 'vitest';
import { auth0Identity, auth0Issuer, auth0OidcOptions } from './auth0.ts';

describe('auth0Issuer', () => {
  it('ends the issuer with a slash, as Auth0 does', () => {
    expect(auth0Issuer({ domain: 'example.eu.auth0.com' })).toBe('https://example.eu.auth0.com/');
    expect(auth0Issuer({ issuer: 'https://login.example.com/' })).toBe('https://login.example.com/');
  });
});

describe('auth0Identity', () => {
  const claims = { sub: 'auth0|65f0', email: 'erin@example.com', email_verified: true, 'https://example.com/groups': ['mcp-users'], groups: ['ignored'] };

  it('reads groups from the namespaced claim', () => {
    expect(auth0Identity('auth0', claims, 'https://example.com/groups')).toEqual({
      provider: 'auth0', subject: 'auth0|65f0', email: 'erin@example.com', emailVerified: true, groups: ['mcp-users'],
    });
  });

  it('has no groups without groups_claim', () => {
    expect(auth0Identity('auth0', claims, undefined).groups).toEqual([]);
  });

  it('passes the claim name on', () => {
    expect(auth0OidcOptions({ id: 'a', clientId: 'c', clientSecret: 's', domain: 'x.auth0.com', groupsClaim: 'https://example.com/roles' }))
      .toMatchObject({ type: 'auth0', name: 'Auth0', issuer: 'https://x.auth0.com/', scopes: ['openid', 'email', 'profile'] });
  });
});
