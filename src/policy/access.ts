/**
 * Access rules: who may sign in, and who may reach a service. Pure functions.
 *
 * A person is allowed when any `allow` list matches them and no `deny` list does: deny wins.
 * Only a verified email satisfies an email or domain `allow` rule. A `deny` rule matches any
 * email the provider reports, verified or not: failing closed costs nothing (whoever claims a
 * denied address is refused), while ignoring unverified emails would let a denied person
 * through `users: ["*"]` merely by leaving their address unverified.
 */

export interface AccessRules {
  users?: readonly string[] | undefined;
  emails?: readonly string[] | undefined;
  domains?: readonly string[] | undefined;
  groups?: readonly string[] | undefined;
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
  return undefined;
}

export function decideAccess(policy: AccessPolicy, subject: Subject, what = 'this gateway'): AccessDecision {
  const denied = matchingRule(policy.deny, subject, true);
  if (denied) {
    return { allowed: false, reason: `deny rule ${denied}`, userMessage: `Your account is not allowed to use ${what}.` };
  }
  const allowed = matchingRule(policy.allow, subject);
  if (allowed) return { allowed: true, rule: allowed };
  const unverified = subject.email !== undefined && !subject.emailVerified;
  return {
    allowed: false,
    reason: unverified ? 'no allow rule matched (email not verified)' : 'no allow rule matched',
    userMessage: unverified
      ? `Your email address is not verified at your identity provider, so it cannot grant access to ${what}.`
      : `Your account is not on the list of people allowed to use ${what}. Ask the administrator for access.`,
  };
}
