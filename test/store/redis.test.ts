/**
 * The Store contract against a real Redis, plus what only Redis does: native TTLs, index
 * cleanup after native expiry, and the configuration it is built from.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createStore } from '../../src/store/index.ts';
import { createRedisStore, parseNode } from '../../src/store/redis-store.ts';
import { StoreUnavailableError } from '../../src/store/store.ts';
import { describeStoreContract } from '../store-contract.ts';
import { REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const run = await shouldRun('redis');
const namespace = redisNamespace('redis');

afterAll(async () => {
  if (run) await namespace.cleanup();
});

describe.skipIf(!run)('redis', () => {
  describeStoreContract('redis', ({ now }) => createRedisStore({ url: REDIS_URL, keyPrefix: namespace.prefix(), now, sweepIntervalMs: 0 }));

  describe('redis store', () => {
    async function withRaw<T>(use: (raw: Redis) => Promise<T>): Promise<T> {
      const raw = new Redis(REDIS_URL);
      try {
        return await use(raw);
      } finally {
        raw.disconnect();
      }
    }

    it('is what createStore builds for type redis, under the configured key prefix as a hash tag', async () => {
      const prefix = namespace.prefix();
      const store = await createStore({ type: 'redis', url: REDIS_URL, key_prefix: prefix });
      expect(store.engine).toBe('redis');
      await store.put('Session', 's1', { v: 1 });
      await store.close();
      await withRaw(async (raw) => {
        expect(await raw.hget(`{${prefix}}r:Session:s1`, 'v')).toBe('{"v":1}');
      });
    });

    it('gives records and their indexes a native TTL no shorter than the record’s', async () => {
      const prefix = namespace.prefix();
      const store = await createRedisStore({ url: REDIS_URL, keyPrefix: prefix, sweepIntervalMs: 0 });
      await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 30, grantId: 'g1', uid: 'u1' });
      await store.put('Code', 'c2', { v: 2 }, { ttlSeconds: 300, grantId: 'g1' });
      await store.put('Code', 'forever', { v: 3 }, { uid: 'u1' });
      await withRaw(async (raw) => {
        const record = await raw.pttl(`{${prefix}}r:Code:c1`);
        expect(record).toBeGreaterThan(29_000);
        expect(record).toBeLessThanOrEqual(31_000 + 60_000);
        expect(await raw.pttl(`{${prefix}}g:g1`)).toBeGreaterThanOrEqual(await raw.pttl(`{${prefix}}r:Code:c2`));
        // A member without expiry keeps its index set forever.
        expect(await raw.pttl(`{${prefix}}u:Code:u1`)).toBe(-1);
        expect(await raw.pttl(`{${prefix}}r:Code:forever`)).toBe(-1);
      });
      await store.close();
    });

    it('sweeps index entries that records dropped by Redis left behind', async () => {
      const prefix = namespace.prefix();
      let nowMs = Date.now();
      const store = await createRedisStore({ url: REDIS_URL, keyPrefix: prefix, sweepIntervalMs: 0, now: () => nowMs });
      await store.put('Code', 'gone', { v: 1 }, { ttlSeconds: 10, grantId: 'g1', uid: 'u1', userCode: 'U-1' });
      await store.put('Code', 'kept', { v: 2 }, { ttlSeconds: 1000, grantId: 'g1' });
      await withRaw(async (raw) => {
        // What native expiry does: the record vanishes, its index entries stay.
        await raw.del(`{${prefix}}r:Code:gone`);
        expect(await raw.smembers(`{${prefix}}u:Code:u1`)).toEqual(['gone']);
        nowMs += 11_000;
        expect(await store.sweep()).toBe(0);
        expect(await raw.exists(`{${prefix}}u:Code:u1`, `{${prefix}}c:Code:U-1`)).toBe(0);
        expect(await raw.smembers(`{${prefix}}g:g1`)).toEqual([`{${prefix}}r:Code:kept`]);
        expect(await raw.zrange(`{${prefix}}k:Code`, '0', '-1')).toEqual(['kept']);
        expect(await raw.zcard(`{${prefix}}x`)).toBe(1);
      });
      expect((await store.get('Code', 'kept'))?.value).toEqual({ v: 2 });
      await store.close();
    });

    it('keeps kinds apart even when kinds and ids contain the separator', async () => {
      const store = await createRedisStore({ url: REDIS_URL, keyPrefix: namespace.prefix(), sweepIntervalMs: 0 });
      await store.put('a:b', 'c', { which: 1 });
      await store.put('a', 'b:c', { which: 2 });
      expect((await store.get('a:b', 'c'))?.value).toEqual({ which: 1 });
      expect((await store.get('a', 'b:c'))?.value).toEqual({ which: 2 });
      expect((await store.list('a', '')).map((record) => record.id)).toEqual(['b:c']);
      await store.close();
    });

    it('fails to open with StoreUnavailableError when nothing listens', async () => {
      const started = Date.now();
      await expect(createRedisStore({ url: 'redis://127.0.0.1:1', keyPrefix: namespace.prefix() }))
        .rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('reads host:port nodes for Sentinel and Cluster', () => {
      expect(parseNode('redis-1:26379')).toEqual({ host: 'redis-1', port: 26379 });
      expect(parseNode('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
      expect(() => parseNode('redis-1')).toThrow(/host:port/);
    });
  });
});
