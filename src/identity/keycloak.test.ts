import { describe, expect, it } from 'vitest';
import { keycloakIdentity, keycloakIssuer, keycloakOidcOptions } from './keycloak.ts';

describe('keycloakIssuer', () => {
  it('is {url}/realms/{realm}', () => {
    expect(keycloakIssuer('https://sso.example.com', 'corp')).toBe('https://sso.example.com/realms/corp');
    expect(keycloakIssuer('https://sso.example.com/auth/', 'corp')).toBe('https://sso.example.com/auth/realms/corp');
  });
});

describe('keycloakIdentity', () => {
  it('drops the leading slash of group paths and adds the realm roles', () => {
    const identity = keycloakIdentity('kc', {
      sub: 'f4a1', email: 'frank@example.com', email_verified: true,
      groups: ['/eng/backend', '/mcp-users', 'plain', '/'],
      realm_access: { roles: ['offline_access', 'mcp-admin', 'mcp-users'] },
    }, 'groups');
    expect(identity.groups).toEqual(['eng/backend', 'mcp-users', 'plain', 'offline_access', 'mcp-admin']);
  });

  it('copes without groups or roles, and with malformed realm_access', () => {
    expect(keycloakIdentity('kc', { sub: 'f4a1' }, 'groups').groups).toEqual([]);
    expect(keycloakIdentity('kc', { sub: 'f4a1', realm_access: 'admin' }, 'groups').groups).toEqual([]);
    expect(keycloakIdentity('kc', { sub: 'f4a1', realm_access: { roles: 'a b' } }, 'groups').groups).toEqual(['a', 'b']);
  });

  it('builds its options from url and realm', () => {
    expect(keycloakOidcOptions({ id: 'kc', clientId: 'c', clientSecret: 's', url: 'http://127.0.0.1:8080', realm: 'test' }))
      .toMatchObject({ type: 'keycloak', name: 'Keycloak', issuer: 'http://127.0.0.1:8080/realms/test', groupsClaim: 'groups' });
  });
});
