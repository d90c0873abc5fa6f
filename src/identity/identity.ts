/**
 * A signed-in person, as every identity provider reports them after normalisation.
 */
export interface Identity {
  /** The provider's configured id (`identity_providers[].id`). */
  provider: string;
  /** The provider's stable subject identifier for this person. */
  subject: string;
  email?: string;
  /** Only a verified email satisfies an email or domain rule. */
  emailVerified: boolean;
  name?: string;
  picture?: string;
  groups: string[];
  /**
   * GitHub only, and only when an access rule names GitHub orgs or teams: the logins of the
   * organizations the person belongs to, lower-cased. Kept apart from `groups` so that a group
   * claim from another provider can never satisfy a `github_orgs` rule.
   */
  githubOrgs?: string[];
  /** GitHub only, as `githubOrgs`: the person's teams as `org/team-slug`, lower-cased. */
  githubTeams?: string[];
}

/**
 * The gateway's `sub` for an identity: stable per provider and subject, readable in logs and
 * identity headers. Changing a provider's configured id changes its users' subs.
 */
export function accountIdFor(identity: Pick<Identity, 'provider' | 'subject'>): string {
  return `${identity.provider}:${identity.subject}`;
}
