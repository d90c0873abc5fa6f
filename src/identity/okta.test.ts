import { describe, expect, it } from 'vitest';
import { isOktaOrgServer, oktaIssuer, oktaOidcOptions } from './okta.ts';

describe('oktaIssuer', () => {
  it('builds the org and custom authorization servers\' issuers from the domain', () => {
    expect(oktaIssuer({ domain: 'dev-123.okta.com' })).toBe('https://dev-123.okta.com');
    expect(oktaIssuer({ domain: 'dev-123.okta.com', authorizationServer: 'default' })).toBe('https://dev-123.okta.com/oauth2/default');
    expect(oktaIssuer({ domain: 'dev-123.okta.com', authorizationServer: 'aus1a2b3c4' })).toBe('https://dev-123.okta.com/oauth2/aus1a2b3c4');
    expect(oktaIssuer({ issuer: 'https://login.example.com/oauth2/default' })).toBe('https://login.example.com/oauth2/default');
  });

  it('tells the org authorization server apart', () => {
    expect(isOktaOrgServer('https://dev-123.okta.com')).toBe(true);
    expect(isOktaOrgServer('https://dev-123.okta.com/')).toBe(true);
    expect(isOktaOrgServer('https://dev-123.okta.com/oauth2/default')).toBe(false);
  });
});

describe('oktaOidcOptions', () => {
  it('reads userinfo (thin ID tokens) and asks for groups on the org authorization server only', () => {
    const org = oktaOidcOptions({ id: 'okta', clientId: 'c', clientSecret: 's', domain: 'dev-123.okta.com' });
    expect(org).toMatchObject({ type: 'okta', name: 'Okta', issuer: 'https://dev-123.okta.com', userinfo: true, groupsClaim: 'groups' });
    expect(org.scopes).toEqual(['openid', 'email', 'profile', 'groups']);
    const custom = oktaOidcOptions({ id: 'okta', clientId: 'c', clientSecret: 's', domain: 'dev-123.okta.com', authorizationServer: 'default' });
    expect(custom.scopes).toEqual(['openid', 'email', 'profile']);
    expect(oktaOidcOptions({ id: 'okta', clientId: 'c', clientSecret: 's', issuer: 'https://dev-123.okta.com/oauth2/default', scopes: ['groups'] }).scopes)
      .toEqual(['openid', 'email', 'profile', 'groups']);
  });

  it('reads the configured groups claim', () => {
    const options = oktaOidcOptions({ id: 'okta', clientId: 'c', clientSecret: 's', domain: 'dev-123.okta.com', groupsClaim: 'okta_groups' });
    expect(options.toIdentity?.({ sub: '00u1', okta_groups: ['Everyone', 'mcp'], groups: ['x'] }).groups).toEqual(['Everyone', 'mcp']);
  });
});
