import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SignInError, type Identity, type IdentityProvider } from '../identity/index.ts';
import { createMemoryStore } from '../store/index.ts';
import { loadAccount, saveAccount } from './accounts.ts';
import { createAccountRefresher } from './account-refresh.ts';
import type { UpstreamAccessToken } from './upstream-tokens.ts';

const store = createMemoryStore();
afterEach(async () => {
  await store.delete('account', 'gh:1');
});
afterAll(async () => {
  await store.close();
});

const identity: Identity = { provider: 'gh', subject: '1', email: 'a@example.com', emailVerified: true, groups: [], githubOrgs: ['acme'], githubTeams: [] };

function setup(options: { token: UpstreamAccessToken; reload?: IdentityProvider['reload'] }) {
  const events: string[] = [];
  const forgotten: string[] = [];
  const idp = { id: 'gh', reload: options.reload } as unknown as IdentityProvider;
  const refresher = createAccountRefresher({
    store,
    identityProviders: new Map([['gh', idp]]),
    upstreamTokens: { accessToken: async () => options.token },
    log: { warn: (details) => events.push(String(details.event)), info: (details) => events.push(String(details.event)) },
    onSaved: (accountId) => forgotten.push(accountId),
  });
  return { refresher, events, forgotten };
}

const ok: UpstreamAccessToken = { ok: true, accessToken: 'gho_x' };

describe('createAccountRefresher', () => {
  it('saves the re-read membership and drops the cached account', async () => {
    const account = await saveAccount(store, identity);
    let seen: string | undefined;
    const { refresher, events, forgotten } = setup({
      token: ok,
      reload: async (previous, tokens) => {
        seen = tokens.accessToken;
        return { identity: { ...previous, githubOrgs: [] } };
      },
    });
    const refreshed = await refresher(account);
    expect(seen).toBe('gho_x');
    expect(refreshed?.githubOrgs).toEqual([]);
    expect((await loadAccount(store, 'gh:1'))?.githubOrgs).toEqual([]);
    expect(forgotten).toEqual(['gh:1']);
    expect(events).toEqual(['account.reloaded']);
  });

  it('refuses when the provider no longer accepts the token, or there is none to ask with', async () => {
    const account = await saveAccount(store, identity);
    const revoked = setup({ token: ok, reload: async () => { throw new SignInError('revoked', 'Sign in again.'); } });
    expect(await revoked.refresher(account)).toBeUndefined();
    expect(revoked.events).toEqual(['account.reload_refused']);
    for (const reason of ['none', 'expired', 'refresh_refused'] as const) {
      const missing = setup({ token: { ok: false, reason, description: '' }, reload: async () => { throw new Error('not called'); } });
      expect(await missing.refresher(account)).toBeUndefined();
    }
    expect((await loadAccount(store, 'gh:1'))?.githubOrgs).toEqual(['acme']);
  });

  it('keeps the account as last read when the provider cannot be asked', async () => {
    const account = await saveAccount(store, identity);
    const outage = setup({ token: ok, reload: async () => { throw new Error('fetch failed'); } });
    expect(await outage.refresher(account)).toBe(account);
    expect(outage.events).toEqual(['account.reload_failed']);
    const renewal = setup({ token: { ok: false, reason: 'refresh_failed', description: 'unreachable' }, reload: async () => { throw new Error('not called'); } });
    expect(await renewal.refresher(account)).toBe(account);
    expect(outage.forgotten).toEqual([]);
  });

  it('leaves accounts of providers without reload alone', async () => {
    const account = await saveAccount(store, identity);
    const { refresher, events } = setup({ token: { ok: false, reason: 'none', description: '' } });
    expect(await refresher(account)).toBe(account);
    expect(events).toEqual([]);
  });
});
