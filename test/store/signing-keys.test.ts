/**
 * Signing keys shared by replicas: created once when several start together on an empty store
 * (Store.create), rotated while they run (the new set reaches every replica through the store's
 * event and a re-read), retired keys published until their tokens have expired.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader } from 'jose';
import { loadSigningKeys, retentionSeconds, rotateSigningKeys, type SigningKeys } from '../../src/authz/signing-keys.ts';
import { createMemoryStore } from '../../src/store/memory-store.ts';
import { createPostgresStore } from '../../src/store/postgres-store.ts';
import { createRedisStore } from '../../src/store/redis-store.ts';
import { createSqliteStore } from '../../src/store/sqlite-store.ts';
import { createSealer, type Store } from '../../src/store/index.ts';
import { GatehouseError } from '../../src/errors/index.ts';
import { startDemoServer } from '../../src/demo/index.ts';
import { freePort, startTestGateway, testEncryptionKey } from '../support/gateway.ts';
import { callMcp, eventually, redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { DATABASE_URL, postgresNamespace, REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const redis = redisNamespace('keys');
const postgres = postgresNamespace('keys');
const runRedis = await shouldRun('redis');
const runPostgres = await shouldRun('postgres');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-keys-'));

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (runRedis) await redis.cleanup();
  if (runPostgres) await postgres.cleanup();
});

const kids = (keys: SigningKeys) => keys.publicJwks.keys.map((key) => key.kid);

const engines: Array<{ name: string; run: boolean; open: (count: number) => Promise<Store[]>; gatewayStore?: () => Record<string, unknown> }> = [
  {
    name: 'memory',
    run: true,
    open: async (count) => {
      const store = createMemoryStore({ sweepIntervalMs: 0 });
      return Array.from({ length: count }, () => store);
    },
  },
  {
    name: 'sqlite',
    run: true,
    open: async (count) => {
      const path = join(dir, `${Math.random().toString(36).slice(2)}.db`);
      return Array.from({ length: count }, () => createSqliteStore({ path, sweepIntervalMs: 0 }));
    },
  },
  {
    name: 'redis',
    run: runRedis,
    open: async (count) => {
      const keyPrefix = redis.prefix();
      return Promise.all(Array.from({ length: count }, () => createRedisStore({ url: REDIS_URL, keyPrefix, sweepIntervalMs: 0 })));
    },
    gatewayStore: () => ({ type: 'redis', url: REDIS_URL, key_prefix: redis.prefix() }),
  },
  {
    name: 'postgres',
    run: runPostgres,
    open: async (count) => {
      const schema = postgres.schema();
      return Promise.all(Array.from({ length: count }, () => createPostgresStore({ url: DATABASE_URL, schema, poolSize: 2, sweepIntervalMs: 0 })));
    },
    gatewayStore: () => ({ type: 'postgres', url: DATABASE_URL, schema: postgres.schema(), pool_size: 3 }),
  },
];

for (const engine of engines) {
  describe.skipIf(!engine.run)(`signing keys on ${engine.name}`, () => {
    async function withStores(count: number, use: (stores: Store[]) => Promise<void>): Promise<void> {
      const stores = await engine.open(count);
      try {
        await use(stores);
      } finally {
        await Promise.all([...new Set(stores)].map((store) => store.close()));
      }
    }

    it('gives ten replicas starting together on an empty store one and the same key set', async () => {
      await withStores(10, async (stores) => {
        const sealer = createSealer(testEncryptionKey());
        const sets = await Promise.all(stores.map((store) => loadSigningKeys(store, sealer, { refreshIntervalMs: 0 })));
        const first = kids(sets[0]!);
        expect(first).toHaveLength(2);
        for (const set of sets) expect(kids(set)).toEqual(first);
        await Promise.all(sets.map((set) => set.close()));
      });
    });

    it('rotates: every replica follows, the retired keys verify only and stay published until their tokens expired', async () => {
      await withStores(3, async (stores) => {
        const sealer = createSealer(testEncryptionKey());
        let nowMs = Date.now();
        const sets = await Promise.all(stores.map((store) => loadSigningKeys(store, sealer, { refreshIntervalMs: 0, now: () => nowMs })));
        const before = kids(sets[0]!);
        const changed = sets.map(() => 0);
        sets.forEach((set, i) => set.onChange(() => changed[i]!++));

        const result = await rotateSigningKeys(stores[1]!, sealer, { retainSeconds: 600, now: nowMs });
        expect(result.retired).toEqual(before);
        expect(result.added).toHaveLength(2);
        // The event reaches the replicas sharing the store (memory and SQLite: those of this process).
        expect(await eventually(async () => changed.every((count) => count === 1), 2000, 20)).toBe(true);
        for (const set of sets) {
          expect(kids(set)).toEqual([...result.added, ...before]);
          expect(set.privateJwks.keys.map((key) => key.key_ops)).toEqual([undefined, undefined, ['verify'], ['verify']]);
          expect(set.publicJwks.keys.every((key) => key.d === undefined)).toBe(true);
        }

        // A second rotation later drops what the first retired once its tokens have expired.
        nowMs += 601_000;
        const second = await rotateSigningKeys(stores[0]!, sealer, { retainSeconds: 600, now: nowMs });
        expect(second.dropped).toEqual(before);
        expect(second.retired).toEqual(result.added);
        expect(await eventually(async () => kids(sets[2]!).length === 4 && !kids(sets[2]!).includes(before[0]), 2000, 20)).toBe(true);
        await Promise.all(sets.map((set) => set.close()));
      });
    });

    it('lets one of two simultaneous rotations run and refuses the other', async () => {
      await withStores(2, async (stores) => {
        const sealer = createSealer(testEncryptionKey());
        const results = await Promise.allSettled(stores.map((store) => rotateSigningKeys(store, sealer, { retainSeconds: 60 })));
        expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
        const refused = results.find((result) => result.status === 'rejected') as PromiseRejectedResult;
        expect(refused.reason).toBeInstanceOf(GatehouseError);
        expect(refused.reason.code).toBe('KEYS_ROTATION_BUSY');
        // The lock is released: the next rotation runs.
        await expect(rotateSigningKeys(stores[0]!, sealer, { retainSeconds: 60 })).resolves.toMatchObject({ dropped: [] });
      });
    });
  });
}

describe('retention', () => {
  it('covers the longest-lived token the gateway signs, plus clock skew', () => {
    expect(retentionSeconds(600)).toBe(3600 + 300);
    expect(retentionSeconds(86_400)).toBe(86_400 + 300);
  });
});

describe('the key set status (for /ready)', () => {
  it('counts signing and published keys, and says when and how the last re-read went', async () => {
    const store = createMemoryStore({ sweepIntervalMs: 0 });
    const sealer = createSealer(testEncryptionKey());
    let now = 1_000_000;
    const keys = await loadSigningKeys(store, sealer, { refreshIntervalMs: 0, now: () => now });
    expect(keys.status()).toEqual({ signing: 2, published: 2, readAt: 1_000_000, refreshError: undefined });
    await rotateSigningKeys(store, sealer, { retainSeconds: 3600, now: 1_000_000 });
    now = 1_005_000;
    expect(await keys.refresh()).toBe(true);
    expect(keys.status()).toEqual({ signing: 2, published: 4, readAt: 1_005_000, refreshError: undefined });
    await store.close();
    now = 1_010_000;
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await expect(keys.refresh()).rejects.toThrow();
    // The keys in force stay, and the failure is named by its code.
    expect(keys.status()).toEqual({ signing: 2, published: 4, readAt: 1_005_000, refreshError: 'STORE_UNAVAILABLE' });
    await keys.close();
  });
});

describe('a key set stored before rotation existed', () => {
  it('is read as the current keys', async () => {
    const store = createMemoryStore({ sweepIntervalMs: 0 });
    const sealer = createSealer(testEncryptionKey());
    const fresh = await loadSigningKeys(store, sealer, { refreshIntervalMs: 0 });
    const legacy = fresh.privateJwks.keys;
    await store.put('signing-keys', 'current', { sealed: sealer.seal(JSON.stringify(legacy), 'gatehouse signing keys') });
    const reread = await loadSigningKeys(store, sealer, { refreshIntervalMs: 0 });
    expect(reread.privateJwks.keys).toEqual(legacy);
    await fresh.close();
    await reread.close();
    await store.close();
  });
});

for (const engine of engines.filter((candidate) => candidate.gatewayStore)) {
  describe.skipIf(!engine.run)(`gateways on ${engine.name}`, () => {
    it('publish identical /jwks when three start together on an empty store, and all follow a rotation', async () => {
      const demo = await startDemoServer({ port: 0 });
      const shared = {
        identity_providers: [{ id: 'dev', type: 'dev' }],
        access: { allow: { users: ['*'] } },
        services: { demo: { upstream: demo.url, scopes: ['tools.read'] } },
        store: engine.gatewayStore!(),
        secrets: { encryption_key: testEncryptionKey() },
      };
      // Replicas: one public URL (the issuer), each listening on its own port.
      const port = await freePort();
      const publicUrl = `http://127.0.0.1:${port}`;
      const gateways = await Promise.all([port, undefined, undefined].map((own) => startTestGateway({ ...shared, public_url: publicUrl }, own ? { port: own } : {})));
      try {
        const jwks = async () => Promise.all(gateways.map(async (gateway) => (await fetch(`${gateway.origin}/jwks`)).json() as Promise<{ keys: Array<{ kid: string }> }>));
        const published = await jwks();
        expect(published[0]!.keys).toHaveLength(2);
        expect(published[1]).toEqual(published[0]);
        expect(published[2]).toEqual(published[0]);

        const flow = await runCodeFlow(gateways[0]!);
        const before = await redeem(gateways[0]!, flow);
        expect(before.status).toBe(200);

        const sealer = createSealer(shared.secrets.encryption_key);
        const rotation = await rotateSigningKeys(gateways[1]!.store, sealer, { retainSeconds: 600 });
        expect(await eventually(async () => (await jwks()).every((set) => set.keys.length === 4), 2000, 20)).toBe(true);
        const after = await jwks();
        expect(after[0]!.keys.map((key) => key.kid)).toEqual([...rotation.added, ...rotation.retired]);
        expect(after[1]).toEqual(after[0]);
        expect(after[2]).toEqual(after[0]);

        // New tokens are signed with the new ES256 key on any replica; the old token still works.
        const flow2 = await runCodeFlow(gateways[2]!);
        const token = await redeem(gateways[2]!, flow2);
        expect(rotation.added).toContain(decodeProtectedHeader(String(token.body.access_token)).kid);
        for (const gateway of gateways) {
          expect((await callMcp(gateway, '/demo/mcp', String(token.body.access_token))).status).toBe(200);
          expect((await callMcp(gateway, '/demo/mcp', String(before.body.access_token))).status).toBe(200);
        }
      } finally {
        await Promise.all(gateways.map((gateway) => gateway.close()));
        await demo.close();
      }
    });
  });
}
