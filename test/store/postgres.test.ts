/**
 * The Store contract against a real Postgres, plus what only Postgres does: versioned
 * migrations (safe when replicas start together), the sweep deleting rows, the schema setting.
 */
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createStore } from '../../src/store/index.ts';
import { createPostgresStore } from '../../src/store/postgres-store.ts';
import { StoreUnavailableError } from '../../src/store/store.ts';
import { describeStoreContract } from '../store-contract.ts';
import { DATABASE_URL, postgresNamespace, shouldRun } from '../support/stores.ts';

const run = await shouldRun('postgres');
const namespace = postgresNamespace('pg');

afterAll(async () => {
  if (run) await namespace.cleanup();
});

async function withRaw<T>(use: (raw: pg.Client) => Promise<T>): Promise<T> {
  const raw = new pg.Client({ connectionString: DATABASE_URL });
  await raw.connect();
  try {
    return await use(raw);
  } finally {
    await raw.end();
  }
}

describe.skipIf(!run)('postgres', () => {
  describeStoreContract('postgres', ({ now }) => createPostgresStore({ url: DATABASE_URL, schema: namespace.schema(), now, sweepIntervalMs: 0, poolSize: 4 }));

  describe('postgres store', () => {
    it('is what createStore builds for type postgres, in the configured schema', async () => {
      const schema = namespace.schema();
      const store = await createStore({ type: 'postgres', url: DATABASE_URL, schema, pool_size: 2 });
      expect(store.engine).toBe('postgres');
      await store.put('Session', 's1', { v: 1 });
      await store.close();
      await withRaw(async (raw) => {
        const { rows } = await raw.query(`SELECT kind, id, value::text AS value FROM ${schema}.records`);
        expect(rows).toEqual([{ kind: 'Session', id: 's1', value: '{"v":1}' }]);
      });
    });

    it('migrates once when several replicas start at the same moment, and records the version', async () => {
      const schema = namespace.schema();
      const stores = await Promise.all(Array.from({ length: 5 }, () => createPostgresStore({ url: DATABASE_URL, schema, sweepIntervalMs: 0, poolSize: 1 })));
      await stores[0]!.put('Code', 'c1', { v: 1 });
      expect((await stores[4]!.get('Code', 'c1'))?.value).toEqual({ v: 1 });
      await Promise.all(stores.map((store) => store.close()));
      await withRaw(async (raw) => {
        const { rows } = await raw.query(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`);
        expect(rows).toEqual([{ version: 1 }]);
      });
    });

    it('refuses a schema newer than it knows, and an unsafe schema name', async () => {
      const schema = namespace.schema();
      await (await createPostgresStore({ url: DATABASE_URL, schema, sweepIntervalMs: 0 })).close();
      await withRaw((raw) => raw.query(`INSERT INTO ${schema}.schema_migrations (version) VALUES (99)`));
      await expect(createPostgresStore({ url: DATABASE_URL, schema, sweepIntervalMs: 0 })).rejects.toThrow(/version 99, newer than this gateway supports \(1\)/);
      await expect(createPostgresStore({ url: DATABASE_URL, schema: 'Robert"); DROP TABLE x' })).rejects.toThrow(/schema must match/);
    });

    it('sweeps expired rows on its own timer, and deletes them for good', async () => {
      const schema = namespace.schema();
      let nowMs = Date.UTC(2031, 0, 1);
      const store = await createPostgresStore({ url: DATABASE_URL, schema, now: () => nowMs, sweepIntervalMs: 20 });
      await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 1 });
      await store.put('Code', 'c2', { v: 2 }, { ttlSeconds: 100 });
      await store.increment('k', 1);
      nowMs += 2000;
      const count = () => withRaw(async (raw) => (await raw.query(`SELECT (SELECT count(*) FROM ${schema}.records)::int AS records, (SELECT count(*) FROM ${schema}.counters)::int AS counters`)).rows[0]);
      const deadline = Date.now() + 2000;
      while ((await count()).records !== 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await count()).toEqual({ records: 1, counters: 0 });
      await store.close();
    });

    it('fails to open with StoreUnavailableError when nothing listens', async () => {
      const started = Date.now();
      await expect(createPostgresStore({ url: 'postgres://postgres@127.0.0.1:1/test', schema: namespace.schema() }))
        .rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('passes SQL and data errors through unchanged (a 500, not a 503)', async () => {
      const store = await createPostgresStore({ url: DATABASE_URL, schema: namespace.schema(), sweepIntervalMs: 0 });
      // A kind with a NUL byte is not valid text for Postgres: the request is wrong, not the store.
      const error = await store.put('bad\u0000kind', 'x', {}).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(StoreUnavailableError);
      await store.close();
    });
  });
});
