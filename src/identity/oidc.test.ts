import { describe, expect, it } from 'vitest';
import { describeDiscoveryError, identityFromClaims } from './oidc.ts';
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
