/**
 * Accounts: the last identity each person signed in with, kept so tokens and identity
 * headers describe them without asking the upstream provider again.
 */
import { accountIdFor, type Identity } from '../identity/index.ts';
import type { Store } from '../store/index.ts';

const KIND = 'account';
const ACCOUNT_TTL_SECONDS = 400 * 86400;

export interface Account extends Identity {
  accountId: string;
  signedInAt: number;
}

export async function saveAccount(store: Store, identity: Identity): Promise<Account> {
  const account: Account = { ...identity, accountId: accountIdFor(identity), signedInAt: Date.now() };
  await store.put(KIND, account.accountId, { ...account }, { ttlSeconds: ACCOUNT_TTL_SECONDS });
  return account;
}

export async function loadAccount(store: Store, accountId: string): Promise<Account | undefined> {
  const record = await store.get(KIND, accountId);
  return record ? (record.value as unknown as Account) : undefined;
}

/** Standard claims for an account (ID tokens, introspection). */
export function accountClaims(account: Account): Record<string, unknown> {
  const claims: Record<string, unknown> = { email_verified: account.emailVerified };
  if (account.email) claims.email = account.email;
  if (account.name) claims.name = account.name;
  if (account.picture) claims.picture = account.picture;
  return claims;
}
