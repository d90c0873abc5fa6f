/**
 * Re-reading a person at their identity provider when the gateway's refresh token is used, so
 * access rules about what can change there (GitHub org and team membership) see the current
 * answer: a person removed from an org loses access at their client's next refresh, without
 * signing in again.
 *
 * Only providers that define `reload` take part (the `github` provider, when a rule names
 * GitHub orgs or teams); for them the sign-in kept the person's upstream token, sealed
 * (upstream-tokens.ts), which also refreshes an expiring GitHub App token first.
 *
 * The outcome for the refresh:
 * - re-read: the account is saved with the new membership; the caller applies the policy.
 * - the provider refuses the token (authorization revoked, token expired beyond refresh), or
 *   there is no stored token to ask with (signed in before the rule existed, encryption key
 *   removed): `undefined`, the refresh fails with `invalid_grant` and the person signs in again.
 *   Membership that cannot be checked grants nothing.
 * - the provider cannot be asked (outage, rate limit): the account as last read. Refusing would
 *   sign everyone out during a GitHub outage; the membership is as fresh as the last refresh
 *   that reached GitHub, and the next one re-reads it.
 */
import { SignInError, type IdentityProvider } from '../identity/index.ts';
import type { Store } from '../store/index.ts';
import { saveAccount, type Account } from './accounts.ts';
import type { UpstreamTokenKeeper } from './upstream-tokens.ts';

export interface AccountRefreshLog {
  warn(details: Record<string, unknown>, message: string): void;
  info(details: Record<string, unknown>, message: string): void;
}

export interface AccountRefreshOptions {
  store: Store;
  identityProviders: ReadonlyMap<string, IdentityProvider>;
  upstreamTokens: Pick<UpstreamTokenKeeper, 'accessToken'>;
  log: AccountRefreshLog;
  /** Called with each account saved anew (to drop cached copies). */
  onSaved?: ((accountId: string) => void) | undefined;
}

/** The account as it is now at its provider, or `undefined` when the refresh must fail. */
export type AccountRefresher = (account: Account) => Promise<Account | undefined>;

export function createAccountRefresher(options: AccountRefreshOptions): AccountRefresher {
  const { store, identityProviders, upstreamTokens, log } = options;
  return async (account) => {
    const idp = identityProviders.get(account.provider);
    if (!idp?.reload) return account;
    const details = { account: account.accountId, provider: idp.id };
    const token = await upstreamTokens.accessToken(account.accountId);
    if (!token.ok) {
      if (token.reason === 'refresh_failed') {
        log.warn({ event: 'account.reload_failed', ...details, reason: token.description }, 'could not renew the upstream token to re-read the account; keeping what was last read');
        return account;
      }
      log.warn({ event: 'account.reload_refused', ...details, reason: `upstream token ${token.reason}` }, 'no usable upstream token to re-read the account: the refresh is refused');
      return undefined;
    }
    let identity;
    try {
      ({ identity } = await idp.reload(account, { accessToken: token.accessToken }));
    } catch (error) {
      const reason = error instanceof Error ? error.message : 'unknown';
      if (error instanceof SignInError) {
        log.warn({ event: 'account.reload_refused', ...details, reason }, 'the identity provider no longer accepts the upstream token: the refresh is refused');
        return undefined;
      }
      log.warn({ event: 'account.reload_failed', ...details, reason }, 'could not re-read the account at the identity provider; keeping what was last read');
      return account;
    }
    const saved = await saveAccount(store, identity);
    options.onSaved?.(saved.accountId);
    log.info({ event: 'account.reloaded', ...details, github_orgs: saved.githubOrgs?.length, github_teams: saved.githubTeams?.length }, 'account re-read at the identity provider');
    return saved;
  };
}
