import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SignInError, type IdentityProvider, type UpstreamTokens } from '../identity/index.ts';
import { createMemoryStore, createSealer, type Store } from '../store/index.ts';
import { createServiceCatalog } from './service-catalog.ts';
import {
  createUpstreamTokens, refreshDue, requestedServices, UPSTREAM_TOKEN_KIND, type UpstreamTokenOptions, type UpstreamTokenServiceDefinition,
} from './upstream-tokens.ts';

const ISSUER = 'https://gw.example.com/';
const ACCOUNT = 'corp:alice';
const keyA = randomBytes(32).toString('base64');
const keyB = randomBytes(32).toString('base64');

const definitions: Record<string, UpstreamTokenServiceDefinition> = {
  mail: { path: '/mail/mcp', forward: { upstream_token: 'X-Token' } },
  drive: { path: '/drive/mcp', forward: { upstream_token: 'X-Token' }, upstream_scopes: ['drive.readonly', 'drive.file'] },
  plain: { path: '/plain/mcp', default: true },
};
const services = createServiceCatalog(ISSUER, definitions);
const resource = (name: string) => `https://gw.example.com/${name}/mcp`;

/** A provider whose refresh answers what the test says, counting calls. */
function fakeProvider(answer: (refreshToken: string) => Promise<UpstreamTokens>) {
  const calls: string[] = [];
  const provider: IdentityProvider = {
    id: 'corp',
    type: 'oidc',
    name: 'Corp',
    begin: async () => ({ url: 'https://idp.example.com/authorize', secrets: {} }),
    complete: async () => { throw new Error('not used'); },
    refresh: async (refreshToken) => {
      calls.push(refreshToken);
      return answer(refreshToken);
    },
    readiness: () => ({ ready: true }),
    close: () => undefined,
  };
  return { provider, calls };
}

let stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.map((store) => store.close()));
  stores = [];
});

function setup(overrides: Partial<UpstreamTokenOptions> & { time?: { now: number } } = {}) {
  const store = overrides.store ?? createMemoryStore();
  stores.push(store);
  const warnings: Array<Record<string, unknown>> = [];
  const time = overrides.time ?? { now: 1_000_000_000_000 };
  const keeper = createUpstreamTokens({
    store,
    sealer: createSealer(keyA),
    services,
    identityProviders: new Map(),
    log: { warn: (details) => warnings.push(details), info: () => undefined },
    now: () => time.now,
    ...overrides,
  });
  return { keeper, store, warnings, time };
}

const seconds = (time: { now: number }) => Math.floor(time.now / 1000);

describe('requestedServices', () => {
  it('maps resource parameters to services, and none to the default service', () => {
    expect(requestedServices(services, resource('mail')).map((service) => service.id)).toEqual(['mail']);
    expect(requestedServices(services, [resource('mail'), resource('DRIVE/').replace('DRIVE/', 'drive')]).map((service) => service.id)).toEqual(['mail', 'drive']);
    expect(requestedServices(services, undefined).map((service) => service.id)).toEqual(['plain']);
    expect(requestedServices(services, 'https://elsewhere.example.com/mcp')).toEqual([]);
    expect(requestedServices(services, [42])).toEqual([]);
  });
});

describe('refreshDue', () => {
  it('refreshes 60 s before expiry, or half the lifetime before for short-lived tokens, never without expiry', () => {
    expect(refreshDue({ expiresAt: 4600 }, 1000, 4539)).toBe(false);
    expect(refreshDue({ expiresAt: 4600 }, 1000, 4540)).toBe(true);
    expect(refreshDue({ expiresAt: 1010 }, 1000, 1004)).toBe(false);
    expect(refreshDue({ expiresAt: 1010 }, 1000, 1005)).toBe(true);
    expect(refreshDue({}, 1000, 10_000_000)).toBe(false);
  });
});

describe('storage', () => {
  it('seals the tokens: the record holds neither token in plain text, and load opens it', async () => {
    const { keeper, store, time } = setup();
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-secret-1', refreshToken: 'rt-secret-1', expiresAt: seconds(time) + 3600, scope: 'openid drive.readonly' });
    const raw = JSON.stringify((await store.get(UPSTREAM_TOKEN_KIND, ACCOUNT))?.value);
    expect(raw).not.toContain('at-secret-1');
    expect(raw).not.toContain('rt-secret-1');
    expect(raw).not.toContain('drive.readonly');
    expect(await keeper.load(ACCOUNT)).toMatchObject({
      accountId: ACCOUNT,
      providerId: 'corp',
      obtainedAt: seconds(time),
      tokens: { accessToken: 'at-secret-1', refreshToken: 'rt-secret-1', expiresAt: seconds(time) + 3600, scope: 'openid drive.readonly' },
    });
  });

  it('binds a record to its account: copied to another account, it does not open', async () => {
    const { keeper, store, warnings } = setup();
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-secret-1' });
    const record = await store.get(UPSTREAM_TOKEN_KIND, ACCOUNT);
    await store.put(UPSTREAM_TOKEN_KIND, 'corp:mallory', record!.value);
    expect(await keeper.load('corp:mallory')).toBeUndefined();
    expect(warnings).toEqual([expect.objectContaining({ event: 'upstream_token.unreadable', account: 'corp:mallory' })]);
    expect(JSON.stringify(warnings)).not.toContain('at-secret-1');
  });

  it('opens records sealed under a previous key after rotation, and re-seals them under the new key on refresh', async () => {
    const store = createMemoryStore();
    const time = { now: 1_000_000_000_000 };
    const before = setup({ store, time }).keeper;
    await before.save(ACCOUNT, 'corp', { accessToken: 'old-at', refreshToken: 'old-rt', expiresAt: seconds(time) + 3600 });
    const sealedBefore = (await store.get(UPSTREAM_TOKEN_KIND, ACCOUNT))?.value.sealed as string;

    const { provider } = fakeProvider(async () => ({ accessToken: 'new-at', expiresAt: seconds(time) + 3600 }));
    const rotated = setup({ store, time, sealer: createSealer(keyB, [keyA]), identityProviders: new Map([['corp', provider]]) }).keeper;
    expect((await rotated.load(ACCOUNT))?.tokens.accessToken).toBe('old-at');
    time.now += 3600_000;
    expect(await rotated.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'new-at' });
    const sealedAfter = (await store.get(UPSTREAM_TOKEN_KIND, ACCOUNT))?.value.sealed as string;
    expect(sealedAfter.split('.')[1]).not.toBe(sealedBefore.split('.')[1]);
    // Only the new key is needed now; without the old key the old record would not have opened.
    expect((await setup({ store, time, sealer: createSealer(keyB) }).keeper.load(ACCOUNT))?.tokens).toMatchObject({ accessToken: 'new-at', refreshToken: 'old-rt' });
    await store.put(UPSTREAM_TOKEN_KIND, ACCOUNT, { provider: 'corp', version: 'x', sealed: sealedBefore });
    expect(await setup({ store, time, sealer: createSealer(keyB) }).keeper.load(ACCOUNT)).toBeUndefined();
  });

  it('records the requested scopes when the provider does not say what it granted (RFC 6749 §5.1)', async () => {
    const { keeper } = setup();
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at' }, ['drive.readonly']);
    expect((await keeper.load(ACCOUNT))?.tokens.scope).toBe('drive.readonly');
  });
});

describe('accessToken', () => {
  it('answers none without a record, and the stored token while it is fresh, without refreshing', async () => {
    const { provider, calls } = fakeProvider(async () => ({ accessToken: 'never' }));
    const { keeper, time } = setup({ identityProviders: new Map([['corp', provider]]) });
    expect(await keeper.accessToken(ACCOUNT)).toMatchObject({ ok: false, reason: 'none' });
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-1', refreshToken: 'rt-1', expiresAt: seconds(time) + 3600 });
    time.now += 3500_000;
    expect(await keeper.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'at-1' });
    expect(calls).toEqual([]);
  });

  it('refreshes once for concurrent requests, keeping the refresh token and scope the response leaves out', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const time = { now: 1_000_000_000_000 };
    const { provider, calls } = fakeProvider(async () => {
      await gate;
      return { accessToken: 'at-2', expiresAt: seconds(time) + 3600 };
    });
    const { keeper } = setup({ time, identityProviders: new Map([['corp', provider]]) });
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-1', refreshToken: 'rt-1', expiresAt: seconds(time) + 3600, scope: 'drive.readonly' });
    time.now += 3550_000;
    const pending = Promise.all([1, 2, 3, 4, 5].map(() => keeper.accessToken(ACCOUNT)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    release();
    expect(await pending).toEqual(Array(5).fill({ ok: true, accessToken: 'at-2' }));
    expect(calls).toEqual(['rt-1']);
    expect((await keeper.load(ACCOUNT))?.tokens).toMatchObject({ accessToken: 'at-2', refreshToken: 'rt-1', scope: 'drive.readonly' });
    // The next request reads the new generation: no second refresh.
    expect(await keeper.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'at-2' });
    expect(calls).toHaveLength(1);
  });

  it('refreshes once across processes sharing a store: the other uses a still-valid token, or waits for an expired one', async () => {
    const store = createMemoryStore();
    const time = { now: 1_000_000_000_000 };
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const a = fakeProvider(async () => {
      await gate;
      return { accessToken: 'at-from-a', refreshToken: 'rt-2', expiresAt: seconds(time) + 3600 };
    });
    const b = fakeProvider(async () => ({ accessToken: 'at-from-b', expiresAt: seconds(time) + 3600 }));
    const replicaA = setup({ store, time, identityProviders: new Map([['corp', a.provider]]) }).keeper;
    const replicaB = setup({ store, time, identityProviders: new Map([['corp', b.provider]]) }).keeper;

    await replicaA.save(ACCOUNT, 'corp', { accessToken: 'at-1', refreshToken: 'rt-1', expiresAt: seconds(time) + 3600 });
    time.now += 3550_000;
    const fromA = replicaA.accessToken(ACCOUNT);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await replicaB.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'at-1' });
    release();
    expect(await fromA).toEqual({ ok: true, accessToken: 'at-from-a' });

    // Expired: the other process waits for the refresh in progress and uses its result.
    let releaseAgain!: () => void;
    const gateAgain = new Promise<void>((resolve) => { releaseAgain = resolve; });
    const c = fakeProvider(async () => {
      await gateAgain;
      return { accessToken: 'at-from-c', expiresAt: seconds(time) + 3600 };
    });
    const replicaC = setup({ store, time, identityProviders: new Map([['corp', c.provider]]) }).keeper;
    time.now += 3700_000;
    const fromC = replicaC.accessToken(ACCOUNT);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const waiting = replicaB.accessToken(ACCOUNT);
    setTimeout(releaseAgain, 150);
    expect(await waiting).toEqual({ ok: true, accessToken: 'at-from-c' });
    expect(await fromC).toEqual({ ok: true, accessToken: 'at-from-c' });
    expect([a.calls, b.calls, c.calls]).toEqual([['rt-1'], [], ['rt-2']]);
  });

  it('tolerates a lost race: a refused refresh uses the generation another process stored meanwhile', async () => {
    const store = createMemoryStore();
    const time = { now: 1_000_000_000_000 };
    const winner = setup({ store, time }).keeper;
    const loser = fakeProvider(async () => {
      // Another process spent the refresh token first and stored its result.
      await winner.save(ACCOUNT, 'corp', { accessToken: 'at-winner', refreshToken: 'rt-2', expiresAt: seconds(time) + 3600 });
      throw new SignInError('corp refused a token refresh: invalid_grant', 'Sign in again.');
    });
    const { keeper, warnings } = setup({ store, time, identityProviders: new Map([['corp', loser.provider]]) });
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-1', refreshToken: 'rt-1', expiresAt: seconds(time) + 60 });
    time.now += 61_000;
    expect(await keeper.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'at-winner' });
    expect((await keeper.load(ACCOUNT))?.tokens.refreshToken).toBe('rt-2');
    expect(warnings).toEqual([]);
  });

  it('removes the record when the provider refuses the refresh', async () => {
    const { provider } = fakeProvider(async () => { throw new SignInError('corp refused a token refresh: grant revoked (invalid_grant)', 'Sign in again.'); });
    const { keeper, store, time, warnings } = setup({ identityProviders: new Map([['corp', provider]]) });
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-1', refreshToken: 'rt-1', expiresAt: seconds(time) + 3600 });
    time.now += 3590_000;
    expect(await keeper.accessToken(ACCOUNT)).toMatchObject({ ok: false, reason: 'refresh_refused' });
    expect(await store.get(UPSTREAM_TOKEN_KIND, ACCOUNT)).toBeUndefined();
    expect(warnings).toEqual([expect.objectContaining({ event: 'upstream_token.refresh_refused', account: ACCOUNT, reason: expect.stringContaining('invalid_grant') })]);
    expect(await keeper.signInNeeded(ACCOUNT, resource('mail'))).toBe(true);
  });

  it('keeps the record when the provider cannot be reached: the valid token still serves, an expired one fails, no retry while the lease lasts', async () => {
    const { provider, calls } = fakeProvider(async () => { throw new TypeError('fetch failed'); });
    const { keeper, store, time } = setup({ identityProviders: new Map([['corp', provider]]) });
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-1', refreshToken: 'rt-1', expiresAt: seconds(time) + 3600 });
    time.now += 3590_000;
    expect(await keeper.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'at-1' });
    time.now += 20_000;
    expect(await keeper.accessToken(ACCOUNT)).toMatchObject({ ok: false, reason: 'refresh_failed' });
    expect(calls).toEqual(['rt-1']);
    expect(await store.get(UPSTREAM_TOKEN_KIND, ACCOUNT)).toBeDefined();
  });

  it('fails once a token without a refresh token expires', async () => {
    const { provider, calls } = fakeProvider(async () => ({ accessToken: 'never' }));
    const { keeper, time } = setup({ identityProviders: new Map([['corp', provider]]) });
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at-1', expiresAt: seconds(time) + 3600 });
    time.now += 3590_000;
    expect(await keeper.accessToken(ACCOUNT)).toEqual({ ok: true, accessToken: 'at-1' });
    time.now += 20_000;
    expect(await keeper.accessToken(ACCOUNT)).toMatchObject({ ok: false, reason: 'expired' });
    expect(calls).toEqual([]);
  });
});

describe('sign-in decisions', () => {
  it('asks for a sign-in when a requested service forwards tokens and the stored one is missing, lacks a scope or cannot be renewed', async () => {
    const { provider } = fakeProvider(async () => ({ accessToken: 'never' }));
    const { keeper, time } = setup({ identityProviders: new Map([['corp', provider]]) });
    expect(await keeper.signInNeeded(ACCOUNT, resource('mail'))).toBe(true);
    expect(await keeper.signInNeeded(ACCOUNT, resource('plain'))).toBe(false);
    expect(await keeper.signInNeeded(ACCOUNT, undefined)).toBe(false);

    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at', refreshToken: 'rt', expiresAt: seconds(time) + 60, scope: 'openid drive.readonly' });
    expect(await keeper.signInNeeded(ACCOUNT, resource('mail'))).toBe(false);
    expect(await keeper.signInNeeded(ACCOUNT, resource('drive'))).toBe(true);
    expect(await keeper.signInNeeded(ACCOUNT, [resource('plain'), resource('drive')])).toBe(true);
    time.now += 120_000;
    expect(await keeper.signInNeeded(ACCOUNT, resource('mail'))).toBe(false);

    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at', expiresAt: seconds(time) + 60, scope: 'drive.readonly drive.file' });
    expect(await keeper.signInNeeded(ACCOUNT, resource('drive'))).toBe(false);
    time.now += 120_000;
    expect(await keeper.signInNeeded(ACCOUNT, resource('drive'))).toBe(true);
  });

  it('asks the provider for the service\'s scopes plus the upstream scopes the user already has', async () => {
    const { keeper } = setup();
    expect(await keeper.scopesForSignIn(undefined, resource('drive'))).toEqual(['drive.readonly', 'drive.file']);
    expect(await keeper.scopesForSignIn(ACCOUNT, resource('mail'))).toEqual([]);
    await keeper.save(ACCOUNT, 'corp', { accessToken: 'at', scope: 'openid email drive.file' });
    expect(await keeper.scopesForSignIn(ACCOUNT, resource('mail'))).toEqual(['drive.file']);
    expect(await keeper.scopesForSignIn(undefined, resource('plain'))).toEqual([]);
  });

  it('keeps nothing when no service forwards upstream tokens', async () => {
    const store = createMemoryStore();
    stores.push(store);
    const keeper = createUpstreamTokens({
      store,
      sealer: createSealer(keyA),
      services: createServiceCatalog(ISSUER, { plain: { path: '/plain/mcp' } }),
      identityProviders: new Map(),
    });
    expect(keeper.enabled).toBe(false);
    expect(keeper.keepsTokensOf('corp')).toBe(false);
    expect(await keeper.scopesForSignIn(ACCOUNT, resource('plain'))).toEqual([]);
    expect(await keeper.signInNeeded(ACCOUNT, resource('plain'))).toBe(false);
  });
});
