import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as client from 'openid-client';
import { describe, expect, it } from 'vitest';
import { createOidcProvider, describeDiscoveryError, identityFromClaims, signInScopes } from './oidc.ts';
import { SignInError } from './provider.ts';

const base = { sub: 'u-1', email: 'alice@example.com' };

describe('identityFromClaims', () => {
  it('maps the standard claims', () => {
    expect(identityFromClaims('corp', {
      ...base, email_verified: true, name: 'Alice Liddell', picture: 'https://example.com/a.png', groups: ['eng'],
    }, 'groups')).toEqual({
      provider: 'corp',
      subject: 'u-1',
      email: 'alice@example.com',
      emailVerified: true,
      name: 'Alice Liddell',
      picture: 'https://example.com/a.png',
      groups: ['eng'],
    });
  });

  it('lower-cases the email', () => {
    const identity = identityFromClaims('corp', { sub: 'u-1', email: 'Alice.Liddell@Example.COM', email_verified: true }, 'groups');
    expect(identity.email).toBe('alice.liddell@example.com');
    expect(identity.emailVerified).toBe(true);
  });

  describe('email_verified', () => {
    it.each([
      [true, true],
      ['true', true],
      [false, false],
      ['false', false],
      [1, false],
      ['yes', false],
      [undefined, false],
      [null, false],
    ])('%j → %s', (value, verified) => {
      const claims: Record<string, unknown> = { ...base };
      if (value !== undefined) claims.email_verified = value;
      expect(identityFromClaims('corp', claims, 'groups').emailVerified).toBe(verified);
    });

    it('is false when there is no email, whatever the claim says', () => {
      const identity = identityFromClaims('corp', { sub: 'u-1', email_verified: true }, 'groups');
      expect(identity.emailVerified).toBe(false);
      expect(identity).not.toHaveProperty('email');
      const empty = identityFromClaims('corp', { sub: 'u-1', email: '', email_verified: true }, 'groups');
      expect(empty.emailVerified).toBe(false);
      expect(empty).not.toHaveProperty('email');
    });

    it('ignores an email that is not a string', () => {
      const identity = identityFromClaims('corp', { sub: 'u-1', email: ['alice@example.com'], email_verified: true }, 'groups');
      expect(identity).not.toHaveProperty('email');
      expect(identity.emailVerified).toBe(false);
    });
  });

  describe('groups', () => {
    it('reads an array, keeping only strings', () => {
      expect(identityFromClaims('corp', { ...base, groups: ['eng', 42, null, 'ops'] }, 'groups').groups).toEqual(['eng', 'ops']);
    });

    it('reads a space- or comma-separated string', () => {
      expect(identityFromClaims('corp', { ...base, groups: 'eng ops' }, 'groups').groups).toEqual(['eng', 'ops']);
      expect(identityFromClaims('corp', { ...base, groups: 'eng, ops,,sales' }, 'groups').groups).toEqual(['eng', 'ops', 'sales']);
      expect(identityFromClaims('corp', { ...base, groups: 'eng' }, 'groups').groups).toEqual(['eng']);
    });

    it('is empty when absent, empty or of another type', () => {
      expect(identityFromClaims('corp', { ...base }, 'groups').groups).toEqual([]);
      expect(identityFromClaims('corp', { ...base, groups: '' }, 'groups').groups).toEqual([]);
      expect(identityFromClaims('corp', { ...base, groups: { eng: true } }, 'groups').groups).toEqual([]);
    });

    it('reads the configured claim and no other', () => {
      const claims = { ...base, groups: ['from-groups'], roles: ['admin'] };
      expect(identityFromClaims('corp', claims, 'roles').groups).toEqual(['admin']);
      expect(identityFromClaims('corp', { ...base, groups: ['eng'] }, 'roles').groups).toEqual([]);
    });
  });

  it('omits empty or non-string name and picture', () => {
    const identity = identityFromClaims('corp', { ...base, name: '', picture: 7 }, 'groups');
    expect(identity).not.toHaveProperty('name');
    expect(identity).not.toHaveProperty('picture');
  });

  it('takes a numeric subject as text', () => {
    expect(identityFromClaims('gh', { sub: 1234567 }, 'groups').subject).toBe('1234567');
  });

  it('refuses claims without a subject, instead of merging such users into one account', () => {
    for (const sub of [undefined, '', null, {}]) {
      expect(() => identityFromClaims('corp', { email: 'alice@example.com', sub }, 'groups')).toThrow(SignInError);
    }
  });
});

describe('describeDiscoveryError', () => {
  it('follows the causes, which hold what an operator can act on', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4444'), { code: 'ECONNREFUSED' });
    expect(describeDiscoveryError(new TypeError('fetch failed', { cause: refused }))).toBe('fetch failed: connect ECONNREFUSED 127.0.0.1:4444');
  });

  it('does not repeat a message, and copes with non-errors', () => {
    expect(describeDiscoveryError(new Error('timeout', { cause: new Error('timeout') }))).toBe('timeout');
    expect(describeDiscoveryError('plain')).toBe('plain');
    expect(describeDiscoveryError(new Error(''))).toBe('unknown error');
  });
});

describe('signInScopes', () => {
  const configuration = (scopesSupported?: string[]) => new client.Configuration({
    issuer: 'https://idp.example.com',
    authorization_endpoint: 'https://idp.example.com/authorize',
    ...(scopesSupported ? { scopes_supported: scopesSupported } : {}),
  }, 'gatehouse');

  it('adds the extra scopes, and offline_access with them when discovery lists it (OIDC Core §11)', () => {
    expect(signInScopes(configuration(['openid', 'offline_access']), ['openid', 'email'], ['drive.readonly', 'email']))
      .toEqual(['openid', 'email', 'drive.readonly', 'offline_access']);
  });

  it('adds no offline_access without extra scopes, or when the provider does not list it', () => {
    expect(signInScopes(configuration(['openid', 'offline_access']), ['openid', 'email'], [])).toEqual(['openid', 'email']);
    expect(signInScopes(configuration(['openid', 'offline_access']), ['openid'], undefined)).toEqual(['openid']);
    expect(signInScopes(configuration(['openid', 'email']), ['openid'], ['drive.readonly'])).toEqual(['openid', 'drive.readonly']);
    expect(signInScopes(configuration(), ['openid'], ['drive.readonly'])).toEqual(['openid', 'drive.readonly']);
  });
});

describe('refresh', () => {
  it('rejects with SignInError only when the provider answers with an error, not when it cannot be reached', async () => {
    let tokenAnswer: 'error' | 'hang-up' = 'error';
    const server = createServer((req, res) => {
      const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: origin, authorization_endpoint: `${origin}/authorize`, token_endpoint: `${origin}/token`, jwks_uri: `${origin}/jwks` }));
      } else if (tokenAnswer === 'error') {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'grant revoked' }));
      } else {
        req.socket.destroy();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const provider = createOidcProvider({ id: 'corp', issuer, clientId: 'gatehouse', clientSecret: 'secret', scopes: ['openid'], groupsClaim: 'groups' });
    try {
      for (let i = 0; i < 50 && !provider.readiness().ready; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      const refused = await provider.refresh!('rt-1').catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(SignInError);
      expect((refused as Error).message).toContain('invalid_grant');
      tokenAnswer = 'hang-up';
      const unreachable = await provider.refresh!('rt-1').catch((error: unknown) => error);
      expect(unreachable).toBeInstanceOf(Error);
      expect(unreachable).not.toBeInstanceOf(SignInError);
    } finally {
      provider.close();
      await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
    }
  });
});
