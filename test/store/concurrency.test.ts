/**
 * Atomicity across store instances: several instances of one engine on the same data (for
 * Redis and Postgres each with its own connections, as separate gateway replicas would have)
 * race for one record or one counter. Memory has no shared data, so its races run on one
 * instance; the in-process atomicity is what it offers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createMemoryStore } from '../../src/store/memory-store.ts';
import { createPostgresStore } from '../../src/store/postgres-store.ts';
import { createRedisStore } from '../../src/store/redis-store.ts';
import { createSqliteStore } from '../../src/store/sqlite-store.ts';
import type { Store } from '../../src/store/store.ts';
import { DATABASE_URL, postgresNamespace, REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const INSTANCES = 4;
const redis = redisNamespace('race');
const postgres = postgresNamespace('race');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-race-'));
const runRedis = await shouldRun('redis');
const runPostgres = await shouldRun('postgres');

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (runRedis) await redis.cleanup();
  if (runPostgres) await postgres.cleanup();
});

/** Opens `INSTANCES` stores on one shared data set. */
type OpenShared = () => Promise<Store[]>;

const engines: Array<{ name: string; run: boolean; open: OpenShared }> = [
  {
    name: 'memory',
    run: true,
    open: async () => {
      const store = createMemoryStore({ sweepIntervalMs: 0 });
      return Array.from({ length: INSTANCES }, () => store);
    },
  },
  {
    name: 'sqlite',
    run: true,
    open: async () => {
      const path = join(dir, `${Math.random().toString(36).slice(2)}.db`);
      return Array.from({ length: INSTANCES }, () => createSqliteStore({ path, sweepIntervalMs: 0 }));
    },
  },
  {
    name: 'redis',
    run: runRedis,
    open: async () => {
      const keyPrefix = redis.prefix();
      return Promise.all(Array.from({ length: INSTANCES }, () => createRedisStore({ url: REDIS_URL, keyPrefix, sweepIntervalMs: 0 })));
    },
  },
  {
    name: 'postgres',
    run: runPostgres,
    open: async () => {
      const schema = postgres.schema();
      return Promise.all(Array.from({ length: INSTANCES }, () => createPostgresStore({ url: DATABASE_URL, schema, poolSize: 5, sweepIntervalMs: 0 })));
    },
  },
];

for (const engine of engines) {
  describe.skipIf(!engine.run)(`concurrent calls on ${engine.name} across ${INSTANCES} instances`, () => {
    async function withStores(use: (stores: Store[]) => Promise<void>): Promise<void> {
      const stores = await engine.open();
      try {
        await use(stores);
      } finally {
        await Promise.all([...new Set(stores)].map((store) => store.close()));
      }
    }

    it('lets exactly one of 20 parallel consumes win, and keeps its consumedAt', async () => {
      await withStores(async (stores) => {
        await stores[0]!.put('AuthorizationCode', 'code-1', { v: 1 }, { ttlSeconds: 60 });
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => stores[i % INSTANCES]!.consume('AuthorizationCode', 'code-1', 1000 + i)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        for (const store of stores) {
          expect((await store.get('AuthorizationCode', 'code-1'))?.consumedAt).toBe(1000 + winner);
        }
      });
    });

    it('lets exactly one of 20 parallel creates win, and every instance reads the winner’s value', async () => {
      await withStores(async (stores) => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => stores[i % INSTANCES]!.create('signing-keys', 'current', { from: i })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        for (const store of stores) {
          expect((await store.get('signing-keys', 'current'))?.value).toEqual({ from: results.indexOf(true) });
        }
      });
    });

    it('counts 200 parallel increments exactly', async () => {
      await withStores(async (stores) => {
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => stores[i % INSTANCES]!.increment('rate:shared', 60)));
        expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
        expect(await stores[1]!.increment('rate:shared', 60)).toBe(201);
      });
    });

    it('hands a record to exactly one of 20 parallel takes', async () => {
      await withStores(async (stores) => {
        await stores[0]!.put('Transaction', 't1', { state: 'x' });
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => stores[i % INSTANCES]!.take('Transaction', 't1')));
        expect(results.filter((record) => record !== undefined)).toStrictEqual([{ value: { state: 'x' } }]);
        for (const store of stores) expect(await store.get('Transaction', 't1')).toBeUndefined();
      });
    });

    it('leaves nothing of a grant when deleteByGrant races with reads', async () => {
      await withStores(async (stores) => {
        for (let i = 0; i < 20; i++) await stores[i % INSTANCES]!.put('AccessToken', `a${i}`, { i }, { grantId: 'g1' });
        await Promise.all([
          stores[0]!.deleteByGrant('g1'),
          ...Array.from({ length: 20 }, (_, i) => stores[i % INSTANCES]!.get('AccessToken', `a${i}`)),
          stores[1]!.deleteByGrant('g1'),
        ]);
        const left = await Promise.all(Array.from({ length: 20 }, (_, i) => stores[2]!.get('AccessToken', `a${i}`)));
        expect(left.filter((record) => record !== undefined)).toEqual([]);
      });
    });
  });
}
