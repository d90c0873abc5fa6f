/**
 * Access rules: who may sign in, and who may reach a service. Pure functions.
 *
 * A person is allowed when any `allow` list matches them and no `deny` list does: deny wins.
 * Only a verified email satisfies an email or domain `allow` rule. A `deny` rule matches any
 * email the provider reports, verified or not: failing closed costs nothing (whoever claims a
 * denied address is refused), while ignoring unverified emails would let a denied person
 * through `users: ["*"]` merely by leaving their address unverified.
 *
 * `github_orgs` and `github_teams` match only the membership the `github` identity provider
 * read from GitHub's API (`Subject.githubOrgs` / `githubTeams`); no other provider sets those
 * fields, and `groups` never satisfies them, so another provider's `groups` claim cannot pose
 * as GitHub membership.
 */

export interface AccessRules {
  users?: readonly string[] | undefined;
  emails?: readonly string[] | undefined;
  domains?: readonly string[] | undefined;
  groups?: readonly string[] | undefined;
  /** GitHub organization logins, lower-case. */
  github_orgs?: readonly string[] | undefined;
  /** GitHub teams as `org/team-slug`, lower-case. */
  github_teams?: readonly string[] | undefined;
}

export interface AccessPolicy {
  allow?: AccessRules | undefined;
  deny?: AccessRules | undefined;
}

export interface Subject {
  /** The gateway's account id (`provider:subject`). */
  accountId: string;
  email?: string | undefined;
  emailVerified: boolean;
  groups: readonly string[];
  /** Set only for GitHub identities whose membership was read (lower-case org logins). */
  githubOrgs?: readonly string[] | undefined;
  /** Set only for GitHub identities whose membership was read (`org/team-slug`, lower-case). */
  githubTeams?: readonly string[] | undefined;
}

export type AccessDecision =
  | { allowed: true; rule: string }
  | { allowed: false; reason: string; userMessage: string };

const ANYONE = '*';

/**
 * The first rule in `rules` that matches `subject`, described for the audit log. Email and
 * domain rules see only a verified email unless `anyEmail` is set (for deny rules).
 */
export function matchingRule(rules: AccessRules | undefined, subject: Subject, anyEmail = false): string | undefined {
  if (!rules) return undefined;
  const email = subject.emailVerified || anyEmail ? subject.email?.toLowerCase() : undefined;
  const at = email?.lastIndexOf('@') ?? -1;
  const domain = email !== undefined && at > 0 ? email.slice(at + 1) : undefined;
  if (rules.users?.includes(ANYONE)) return 'users: *';
  if (rules.users?.includes(subject.accountId)) return `users: ${subject.accountId}`;
  if (email && rules.emails?.includes(ANYONE)) return 'emails: *';
  if (email && rules.emails?.some((entry) => entry.toLowerCase() === email)) return `emails: ${email}`;
  if (domain && rules.domains?.some((entry) => entry.toLowerCase() === domain)) return `domains: ${domain}`;
  const group = subject.groups.find((name) => rules.groups?.includes(name));
  if (group !== undefined) return `groups: ${group}`;
  // GitHub logins and team slugs are case-insensitive; both sides are compared lower-cased.
  const org = subject.githubOrgs?.find((name) => includesFolded(rules.github_orgs, name));
  if (org !== undefined) return `github_orgs: ${org.toLowerCase()}`;
  const team = subject.githubTeams?.find((name) => includesFolded(rules.github_teams, name));
  if (team !== undefined) return `github_teams: ${team.toLowerCase()}`;
  return undefined;
}

function includesFolded(list: readonly string[] | undefined, value: string): boolean {
  const folded = value.toLowerCase();
  return list?.some((entry) => entry.toLowerCase() === folded) ?? false;
}

/**
 * Whether any of the policies names GitHub orgs or teams: only then does the `github` provider
 * ask for `read:org` and read membership at sign-in (and again at each token refresh).
 */
export function usesGitHubMembership(policies: ReadonlyArray<AccessPolicy | undefined>): boolean {
  return policies.some((policy) => [policy?.allow, policy?.deny].some((rules) =>
    (rules?.github_orgs?.length ?? 0) > 0 || (rules?.github_teams?.length ?? 0) > 0));
}

export function decideAccess(policy: AccessPolicy, subject: Subject, what = 'this gateway'): AccessDecision {
  const denied = matchingRule(policy.deny, subject, true);
  if (denied) {
    return { allowed: false, reason: `deny rule ${denied}`, userMessage: `Your account is not allowed to use ${what}.` };
  }
  const allowed = matchingRule(policy.allow, subject);
  if (allowed) return { allowed: true, rule: allowed };
  const unverified = subject.email !== undefined && !subject.emailVerified;
  if (unverified) {
    return {
      allowed: false,
      reason: 'no allow rule matched (email not verified)',
      userMessage: `Your email address is not verified at your identity provider, so it cannot grant access to ${what}.`,
    };
  }
  const githubRules = (policy.allow?.github_orgs?.length ?? 0) > 0 || (policy.allow?.github_teams?.length ?? 0) > 0;
  if (githubRules && subject.githubOrgs !== undefined) {
    // Names no org or team: which ones grant access is the operator's business, not the visitor's.
    return {
      allowed: false,
      reason: 'no allow rule matched (not in an allowed GitHub organization or team)',
      userMessage: `Your GitHub account is not a member of an organization or team allowed to use ${what}. ` +
        'If you are a member, an organization owner may need to approve this application for the organization on GitHub; otherwise ask the administrator for access.',
    };
  }
  return {
    allowed: false,
    reason: 'no allow rule matched',
    userMessage: `Your account is not on the list of people allowed to use ${what}. Ask the administrator for access.`,
  };
}
