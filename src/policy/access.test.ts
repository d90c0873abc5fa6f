import { describe, expect, it } from 'vitest';
import { decideAccess, matchingRule, usesGitHubMembership, type AccessPolicy, type Subject } from './access.ts';

function subject(overrides: Partial<Subject> = {}): Subject {
  return { accountId: 'corp:alice-1', email: 'alice@example.com', emailVerified: true, groups: [], ...overrides };
}

describe('decideAccess', () => {
  it('allows by verified email, case-insensitively', () => {
    const policy: AccessPolicy = { allow: { emails: ['Alice@Example.com'] } };
    expect(decideAccess(policy, subject())).toEqual({ allowed: true, rule: 'emails: alice@example.com' });
    expect(decideAccess(policy, subject({ email: 'ALICE@example.COM' }))).toEqual({ allowed: true, rule: 'emails: alice@example.com' });
    expect(decideAccess(policy, subject({ email: 'bob@example.com' })).allowed).toBe(false);
  });

  it('allows by the domain of a verified email, exactly (no subdomains, no suffix tricks)', () => {
    const policy: AccessPolicy = { allow: { domains: ['example.com'] } };
    expect(decideAccess(policy, subject({ email: 'bob@EXAMPLE.com' }))).toEqual({ allowed: true, rule: 'domains: example.com' });
    expect(decideAccess(policy, subject({ email: 'bob@evil-example.com' })).allowed).toBe(false);
    expect(decideAccess(policy, subject({ email: 'bob@sub.example.com' })).allowed).toBe(false);
    expect(decideAccess(policy, subject({ email: 'bob@example.com.evil.test' })).allowed).toBe(false);
    expect(decideAccess(policy, subject({ email: 'example.com@evil.test' })).allowed).toBe(false);
  });

  it('never lets an unverified email satisfy an email, domain or "emails: *" rule', () => {
    const unverified = subject({ emailVerified: false });
    for (const policy of [
      { allow: { emails: ['alice@example.com'] } },
      { allow: { domains: ['example.com'] } },
      { allow: { emails: ['*'] } },
    ] satisfies AccessPolicy[]) {
      const decision = decideAccess(policy, unverified);
      expect(decision).toMatchObject({ allowed: false, reason: 'no allow rule matched (email not verified)' });
      expect(decision.allowed === false && decision.userMessage).toMatch(/not verified/);
    }
  });

  it('applies deny rules to unverified emails too: a denied person cannot slip through by not verifying', () => {
    const unverified = subject({ emailVerified: false });
    const allow = { users: ['*'] };
    expect(decideAccess({ allow, deny: { emails: ['alice@example.com'] } }, unverified)).toMatchObject({ allowed: false, reason: 'deny rule emails: alice@example.com' });
    expect(decideAccess({ allow, deny: { domains: ['example.com'] } }, unverified)).toMatchObject({ allowed: false, reason: 'deny rule domains: example.com' });
    expect(decideAccess({ allow, deny: { domains: ['example.org'] } }, unverified)).toEqual({ allowed: true, rule: 'users: *' });
  });

  it('takes no domain from an email without an @', () => {
    expect(decideAccess({ allow: { domains: ['example.com'] } }, subject({ email: 'example.com' })).allowed).toBe(false);
  });

  it('lets deny win over any allow rule', () => {
    const policy: AccessPolicy = {
      allow: { users: ['*'], domains: ['example.com'], groups: ['eng'] },
      deny: { emails: ['alice@example.com'] },
    };
    expect(decideAccess(policy, subject({ groups: ['eng'] }))).toMatchObject({
      allowed: false,
      reason: 'deny rule emails: alice@example.com',
      userMessage: 'Your account is not allowed to use this gateway.',
    });
    expect(decideAccess(policy, subject({ email: 'bob@example.com', accountId: 'corp:bob' }))).toEqual({ allowed: true, rule: 'users: *' });
  });

  it('denies by group, by user id and by domain', () => {
    const allow = { users: ['*'] };
    expect(decideAccess({ allow, deny: { groups: ['contractors'] } }, subject({ groups: ['eng', 'contractors'] }))).toMatchObject({ allowed: false, reason: 'deny rule groups: contractors' });
    expect(decideAccess({ allow, deny: { users: ['corp:alice-1'] } }, subject())).toMatchObject({ allowed: false, reason: 'deny rule users: corp:alice-1' });
    expect(decideAccess({ allow, deny: { domains: ['example.com'] } }, subject())).toMatchObject({ allowed: false, reason: 'deny rule domains: example.com' });
    expect(decideAccess({ allow, deny: { users: ['*'] } }, subject())).toMatchObject({ allowed: false, reason: 'deny rule users: *' });
  });

  it('"users: *" allows anyone who signed in, with or without an email', () => {
    const policy: AccessPolicy = { allow: { users: ['*'] } };
    expect(decideAccess(policy, subject())).toEqual({ allowed: true, rule: 'users: *' });
    expect(decideAccess(policy, subject({ email: undefined, emailVerified: false }))).toEqual({ allowed: true, rule: 'users: *' });
    expect(decideAccess(policy, subject({ emailVerified: false }))).toEqual({ allowed: true, rule: 'users: *' });
  });

  it('"emails: *" allows anyone with a verified email, and no one without', () => {
    const policy: AccessPolicy = { allow: { emails: ['*'] } };
    expect(decideAccess(policy, subject())).toEqual({ allowed: true, rule: 'emails: *' });
    expect(decideAccess(policy, subject({ email: undefined, emailVerified: false }))).toMatchObject({ allowed: false, reason: 'no allow rule matched' });
  });

  it('allows by user id (the gateway account id, exactly)', () => {
    const policy: AccessPolicy = { allow: { users: ['corp:alice-1'] } };
    expect(decideAccess(policy, subject({ email: undefined, emailVerified: false }))).toEqual({ allowed: true, rule: 'users: corp:alice-1' });
    expect(decideAccess(policy, subject({ accountId: 'other:alice-1' })).allowed).toBe(false);
    expect(decideAccess(policy, subject({ accountId: 'corp:alice-10' })).allowed).toBe(false);
  });

  it('allows by group, exactly and case-sensitively', () => {
    const policy: AccessPolicy = { allow: { groups: ['eng'] } };
    expect(decideAccess(policy, subject({ groups: ['sales', 'eng'] }))).toEqual({ allowed: true, rule: 'groups: eng' });
    expect(decideAccess(policy, subject({ groups: ['ENG'] })).allowed).toBe(false);
    expect(decideAccess(policy, subject({ groups: ['engineering'] })).allowed).toBe(false);
    expect(decideAccess(policy, subject({ groups: [] })).allowed).toBe(false);
  });

  it('refuses when nothing matches, naming what was refused', () => {
    const decision = decideAccess({ allow: { domains: ['example.org'] } }, subject(), 'the calculator service');
    expect(decision).toEqual({
      allowed: false,
      reason: 'no allow rule matched',
      userMessage: 'Your account is not on the list of people allowed to use the calculator service. Ask the administrator for access.',
    });
  });

  it('refuses everyone under an empty policy', () => {
    expect(decideAccess({}, subject()).allowed).toBe(false);
    expect(decideAccess({ allow: {} }, subject()).allowed).toBe(false);
  });
});

describe('matchingRule', () => {
  it('is undefined without rules', () => {
    expect(matchingRule(undefined, subject())).toBeUndefined();
  });
});

describe('GitHub org and team rules', () => {
  const github = (overrides: Partial<Subject> = {}) => subject({ accountId: 'gh:1001', email: undefined, emailVerified: false, githubOrgs: ['acme', 'other'], githubTeams: ['acme/platform'], ...overrides });

  it('allows a member of a listed org or team, without regard to case', () => {
    expect(decideAccess({ allow: { github_orgs: ['acme'] } }, github())).toEqual({ allowed: true, rule: 'github_orgs: acme' });
    expect(decideAccess({ allow: { github_orgs: ['ACME'] } }, github({ githubOrgs: ['Acme'] }))).toEqual({ allowed: true, rule: 'github_orgs: acme' });
    expect(decideAccess({ allow: { github_teams: ['acme/platform'] } }, github())).toEqual({ allowed: true, rule: 'github_teams: acme/platform' });
    expect(decideAccess({ allow: { github_teams: ['acme/security'] } }, github()).allowed).toBe(false);
    expect(decideAccess({ allow: { github_teams: ['other/platform'] } }, github()).allowed).toBe(false);
  });

  it('refuses a non-member with a message about GitHub membership that names no org', () => {
    const decision = decideAccess({ allow: { github_orgs: ['secret-org'] } }, github({ githubOrgs: [], githubTeams: [] }), 'the wiki');
    expect(decision).toMatchObject({ allowed: false, reason: 'no allow rule matched (not in an allowed GitHub organization or team)' });
    expect(decision.allowed === false && decision.userMessage).toMatch(/^Your GitHub account is not a member of an organization or team allowed to use the wiki\. /);
    expect(decision.allowed === false && decision.userMessage).not.toContain('secret-org');
  });

  it('is matched only by membership read from GitHub: groups from another provider never count', () => {
    const oidc = subject({ accountId: 'corp:alice', groups: ['acme', 'acme/platform'] });
    expect(decideAccess({ allow: { github_orgs: ['acme'], github_teams: ['acme/platform'] } }, oidc)).toMatchObject({ allowed: false, reason: 'no allow rule matched' });
    expect(decideAccess({ allow: { groups: ['acme'] } }, github({ groups: [] })).allowed).toBe(false);
  });

  it('lets a deny org or team rule win over every allow rule', () => {
    const allow = { users: ['*'], github_orgs: ['acme'] };
    expect(decideAccess({ allow, deny: { github_orgs: ['other'] } }, github())).toMatchObject({ allowed: false, reason: 'deny rule github_orgs: other' });
    expect(decideAccess({ allow, deny: { github_teams: ['acme/platform'] } }, github())).toMatchObject({ allowed: false, reason: 'deny rule github_teams: acme/platform' });
    expect(decideAccess({ allow, deny: { github_teams: ['acme/contractors'] } }, github())).toEqual({ allowed: true, rule: 'users: *' });
  });
});

describe('usesGitHubMembership', () => {
  it('is true only when some allow or deny list names an org or a team', () => {
    expect(usesGitHubMembership([{ allow: { users: ['*'] } }, undefined])).toBe(false);
    expect(usesGitHubMembership([{ allow: { users: ['*'], github_orgs: [] } }])).toBe(false);
    expect(usesGitHubMembership([{ allow: { users: ['*'] } }, { deny: { github_teams: ['acme/interns'] } }])).toBe(true);
    expect(usesGitHubMembership([{ allow: { github_orgs: ['acme'] } }])).toBe(true);
  });
});
