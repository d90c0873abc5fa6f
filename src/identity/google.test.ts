import { describe, expect, it } from 'vitest';
import { googleAuthorizeParams, googleIdentity, googleIssuerRule, googleOidcOptions, GOOGLE_ISSUER } from './google.ts';

describe('googleIssuerRule', () => {
  it('expects the discovered issuer, or the same without https:// when the token says so', () => {
    expect(googleIssuerRule(GOOGLE_ISSUER, { iss: 'https://accounts.google.com' })).toBe('https://accounts.google.com');
    expect(googleIssuerRule(GOOGLE_ISSUER, { iss: 'accounts.google.com' })).toBe('accounts.google.com');
  });

  it('accepts no other form: the discovered issuer stays expected, and openid-client refuses the token', () => {
    expect(googleIssuerRule(GOOGLE_ISSUER, { iss: 'http://accounts.google.com' })).toBe(GOOGLE_ISSUER);
    expect(googleIssuerRule(GOOGLE_ISSUER, { iss: 'evil.example/accounts.google.com' })).toBe(GOOGLE_ISSUER);
    expect(googleIssuerRule(GOOGLE_ISSUER, {})).toBe(GOOGLE_ISSUER);
    // A stand-in on plain http has no scheme-less form.
    expect(googleIssuerRule('http://127.0.0.1:4000', { iss: '127.0.0.1:4000' })).toBe('http://127.0.0.1:4000');
  });
});

describe('googleIdentity', () => {
  const base = { sub: '1045', name: 'Alice', picture: 'https://lh3.googleusercontent.com/a', email_verified: true };

  it('counts a Workspace address (hd set) as verified', () => {
    expect(googleIdentity('google', { ...base, email: 'Alice@Example.com', hd: 'example.com' })).toEqual({
      provider: 'google', subject: '1045', email: 'alice@example.com', emailVerified: true, name: 'Alice', picture: 'https://lh3.googleusercontent.com/a', groups: [],
    });
  });

  it('counts a Gmail address as verified', () => {
    expect(googleIdentity('google', { ...base, email: 'alice@gmail.com' }).emailVerified).toBe(true);
  });

  it('does not count another address without hd: Google is not authoritative for it', () => {
    const identity = googleIdentity('google', { ...base, email: 'alice@example.com' });
    expect(identity.email).toBe('alice@example.com');
    expect(identity.emailVerified).toBe(false);
    expect(googleIdentity('google', { ...base, email: 'alice@example.com', hd: '' }).emailVerified).toBe(false);
  });

  it('needs email_verified even with hd or for Gmail', () => {
    expect(googleIdentity('google', { ...base, email_verified: false, email: 'alice@example.com', hd: 'example.com' }).emailVerified).toBe(false);
    expect(googleIdentity('google', { ...base, email_verified: false, email: 'alice@gmail.com' }).emailVerified).toBe(false);
  });

  it('has no groups, whatever a claim says', () => {
    expect(googleIdentity('google', { ...base, email: 'a@gmail.com', groups: ['admins'] }).groups).toEqual([]);
  });
});

describe('googleAuthorizeParams', () => {
  it('asks for offline access only when the sign-in asks for extra scopes', () => {
    expect(googleAuthorizeParams({ extraScopes: [] })).toEqual({});
    expect(googleAuthorizeParams({ extraScopes: ['https://www.googleapis.com/auth/drive.readonly'] })).toEqual({
      access_type: 'offline', prompt: 'consent', include_granted_scopes: 'true',
    });
  });
});

describe('googleOidcOptions', () => {
  it('defaults to accounts.google.com with the preset scopes, configured ones added once', () => {
    const options = googleOidcOptions({ id: 'g', clientId: 'id', clientSecret: 's', scopes: ['email', 'https://www.googleapis.com/auth/calendar.readonly'] });
    expect(options).toMatchObject({ id: 'g', type: 'google', name: 'Google', issuer: 'https://accounts.google.com', clientId: 'id', clientSecret: 's' });
    expect(options.scopes).toEqual(['openid', 'email', 'profile', 'https://www.googleapis.com/auth/calendar.readonly']);
    expect(options.discovery).toBeUndefined();
    expect(googleOidcOptions({ id: 'g', name: 'Acme', clientId: 'id', clientSecret: 's', issuer: 'http://127.0.0.1:9' })).toMatchObject({ name: 'Acme', issuer: 'http://127.0.0.1:9' });
  });
});
