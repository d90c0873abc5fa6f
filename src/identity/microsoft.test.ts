import { describe, expect, it } from 'vitest';
import { ENTRA_CONSUMERS_TENANT_ID, entraDiscoveryUrl, entraIdentity, entraIssuerProblem, entraIssuerRule, microsoftOidcOptions } from './microsoft.ts';
import { SignInError } from './provider.ts';

const AUTHORITY = 'https://login.microsoftonline.com';
const TID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const OTHER_TID = 'b3c1a2d4-0000-4000-8000-123456789abc';
const OID = '00000000-0000-0000-66f3-3332eca7ea81';
const TEMPLATE = `${AUTHORITY}/{tenantid}/v2.0`;

describe('entraIssuerRule', () => {
  it('puts the token\'s tid into the {tenantid} template', () => {
    expect(entraIssuerRule(TEMPLATE, { iss: `${AUTHORITY}/${TID}/v2.0`, tid: TID })).toBe(`${AUTHORITY}/${TID}/v2.0`);
  });

  it('expects the tid\'s issuer even when the token names another tenant: openid-client then refuses it', () => {
    expect(entraIssuerRule(TEMPLATE, { iss: `${AUTHORITY}/${TID}/v2.0`, tid: OTHER_TID })).toBe(`${AUTHORITY}/${OTHER_TID}/v2.0`);
  });

  it('refuses a token whose tid is missing or not a GUID', () => {
    for (const tid of [undefined, '', 'contoso.onmicrosoft.com', `${TID}/v2.0`, '{tenantid}', 42]) {
      expect(entraIssuerRule(TEMPLATE, { iss: `${AUTHORITY}/${TID}/v2.0`, tid })).toBeUndefined();
    }
  });

  it('keeps a concrete discovered issuer (one tenant, consumers)', () => {
    expect(entraIssuerRule(`${AUTHORITY}/${TID}/v2.0`, { tid: OTHER_TID })).toBe(`${AUTHORITY}/${TID}/v2.0`);
  });
});

describe('entraIssuerProblem (discovery)', () => {
  it('accepts what each kind of tenant states', () => {
    expect(entraIssuerProblem(AUTHORITY, 'common', TEMPLATE)).toBeUndefined();
    expect(entraIssuerProblem(AUTHORITY, 'organizations', TEMPLATE)).toBeUndefined();
    expect(entraIssuerProblem(AUTHORITY, 'consumers', `${AUTHORITY}/${ENTRA_CONSUMERS_TENANT_ID}/v2.0`)).toBeUndefined();
    expect(entraIssuerProblem(AUTHORITY, TID.toUpperCase(), `${AUTHORITY}/${TID}/v2.0`)).toBeUndefined();
    expect(entraIssuerProblem(AUTHORITY, 'contoso.onmicrosoft.com', `${AUTHORITY}/${TID}/v2.0`)).toBeUndefined();
  });

  it('refuses anything else', () => {
    expect(entraIssuerProblem(AUTHORITY, 'common', `${AUTHORITY}/${TID}/v2.0`)).toBe(`expected ${TEMPLATE}, got ${AUTHORITY}/${TID}/v2.0`);
    expect(entraIssuerProblem(AUTHORITY, TID, TEMPLATE)).toMatch(/^expected .*\/72f988bf/);
    expect(entraIssuerProblem(AUTHORITY, TID, `${AUTHORITY}/${OTHER_TID}/v2.0`)).toBeDefined();
    expect(entraIssuerProblem(AUTHORITY, 'consumers', TEMPLATE)).toBeDefined();
    expect(entraIssuerProblem(AUTHORITY, 'contoso.onmicrosoft.com', TEMPLATE)).toBeDefined();
    expect(entraIssuerProblem(AUTHORITY, 'common', `https://evil.example/{tenantid}/v2.0`)).toBeDefined();
    expect(entraIssuerProblem(AUTHORITY, 'common', `${AUTHORITY}/{tenantid}/v1.0`)).toBeDefined();
  });
});

describe('entraIdentity', () => {
  const claims = { sub: 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ', tid: TID, oid: OID, name: 'Alice', email: 'Alice@Contoso.com' };

  it('makes the subject <tid>/<oid> and leaves the email unverified without xms_edov', () => {
    expect(entraIdentity('entra', claims, 'groups')).toEqual({
      provider: 'entra', subject: `${TID}/${OID}`, email: 'alice@contoso.com', emailVerified: false, name: 'Alice', groups: [],
    });
  });

  it('ignores email_verified: Entra does not verify email', () => {
    expect(entraIdentity('entra', { ...claims, email_verified: true }, 'groups').emailVerified).toBe(false);
  });

  it('counts the email as verified with xms_edov', () => {
    for (const value of [true, 'true', 1, '1']) expect(entraIdentity('entra', { ...claims, xms_edov: value }, 'groups').emailVerified).toBe(true);
    for (const value of [false, 'false', 0, 'yes']) expect(entraIdentity('entra', { ...claims, xms_edov: value }, 'groups').emailVerified).toBe(false);
    expect(entraIdentity('entra', { ...claims, email: undefined, xms_edov: true }, 'groups').emailVerified).toBe(false);
  });

  it('never takes preferred_username for the email', () => {
    const identity = entraIdentity('entra', { ...claims, email: undefined, preferred_username: 'alice@contoso.com' }, 'groups');
    expect(identity).not.toHaveProperty('email');
  });

  it('puts groups and app roles together', () => {
    const groupId = 'f0a3b2c1-0000-4000-8000-000000000001';
    expect(entraIdentity('entra', { ...claims, groups: [groupId], roles: ['MCP.User', 'MCP.Admin'] }, 'groups').groups).toEqual([groupId, 'MCP.User', 'MCP.Admin']);
    expect(entraIdentity('entra', { ...claims, roles: ['MCP.User'] }, 'groups').groups).toEqual(['MCP.User']);
  });

  it('refuses claims without a tenant or object id', () => {
    expect(() => entraIdentity('entra', { ...claims, oid: undefined }, 'groups')).toThrow(SignInError);
    expect(() => entraIdentity('entra', { ...claims, tid: 'contoso' }, 'groups')).toThrow(SignInError);
  });
});

describe('microsoftOidcOptions', () => {
  it('discovers at <authority>/<tenant>/v2.0 and never sets authorization parameters', () => {
    const options = microsoftOidcOptions({ id: 'entra', clientId: 'app', clientSecret: 's', tenant: 'organizations' });
    expect(options).toMatchObject({ type: 'microsoft', name: 'Microsoft', issuer: `${AUTHORITY}/organizations/v2.0`, scopes: ['openid', 'email', 'profile'] });
    expect(options.discovery?.url).toBe(`${AUTHORITY}/organizations/v2.0/.well-known/openid-configuration`);
    expect(options.discovery?.checkIssuer(TEMPLATE)).toBeUndefined();
    expect(options.authorizeParams).toBeUndefined();
    expect(options.extraAuthorizeParams).toBeUndefined();
    expect(entraDiscoveryUrl('https://login.microsoftonline.us/', TID)).toBe(`https://login.microsoftonline.us/${TID}/v2.0/.well-known/openid-configuration`);
  });
});
