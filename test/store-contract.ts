/**
 * The contract every Store engine passes, one test (or more) per rule in src/store/store.ts.
 * Each engine's test file calls `describeStoreContract` with a factory that returns an empty
 * store driven by the given clock, so expiry can be tested without waiting.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { epochSeconds, StoreUnavailableError, type Store } from '../src/store/store.ts';

export type MakeStore = (opts: { now: () => number }) => Promise<Store> | Store;

/** A whole second, so `ttlSeconds` boundaries fall exactly on clock advances. */
const START_MS = Date.UTC(2030, 0, 1, 12, 0, 0);
const T0 = epochSeconds(START_MS);

export function describeStoreContract(name: string, makeStore: MakeStore): void {
  describe(`Store contract: ${name}`, () => {
    let nowMs = START_MS;
    let store: Store;
    const advance = (seconds: number): void => {
      nowMs += seconds * 1000;
    };

    beforeEach(async () => {
      nowMs = START_MS;
      store = await makeStore({ now: () => nowMs });
    });

    afterEach(async () => {
      // Some tests close the store themselves; a second close may reject, which is fine here.
      await store.close().catch(() => undefined);
    });

    describe('put and get', () => {
      it('round-trips a JSON value without bookkeeping fields when none apply', async () => {
        const value = { a: 1, nested: { list: [1, 'two', null, true] }, text: 'héllo ✓ 😀' };
        await store.put('Session', 's1', value);
        expect(await store.get('Session', 's1')).toStrictEqual({ value });
      });

      it('resolves undefined for a missing record and keeps kinds apart', async () => {
        await store.put('Session', 'same-id', { kind: 'Session' });
        await store.put('Grant', 'same-id', { kind: 'Grant' });
        expect(await store.get('Session', 'missing')).toBeUndefined();
        expect(await store.get('Other', 'same-id')).toBeUndefined();
        expect((await store.get('Grant', 'same-id'))?.value).toEqual({ kind: 'Grant' });
      });

      it('stores a copy: later mutation of the input or the output changes nothing', async () => {
        const value = { list: [1] };
        await store.put('Session', 's1', value);
        value.list.push(2);
        const first = await store.get('Session', 's1');
        (first?.value.list as number[]).push(3);
        expect((await store.get('Session', 's1'))?.value).toEqual({ list: [1] });
      });

      it('reports expiresAt as now + ttlSeconds, and treats ttl 0 as no expiry', async () => {
        await store.put('Code', 'ttl', { v: 1 }, { ttlSeconds: 60 });
        await store.put('Code', 'zero', { v: 2 }, { ttlSeconds: 0 });
        expect(await store.get('Code', 'ttl')).toStrictEqual({ value: { v: 1 }, expiresAt: T0 + 60 });
        advance(10 * 365 * 24 * 3600);
        expect(await store.get('Code', 'zero')).toStrictEqual({ value: { v: 2 } });
      });

      it('replacing keeps nothing of the old record: value, indexes, expiry, consumed mark', async () => {
        const old = { ttlSeconds: 30, grantId: 'g-old', uid: 'u-old', userCode: 'C-OLD' };
        await store.put('Code', 'c1', { version: 1 }, old);
        expect(await store.consume('Code', 'c1', T0)).toBe(true);
        await store.put('Code', 'c1', { version: 2 });

        advance(31);
        expect(await store.get('Code', 'c1')).toStrictEqual({ value: { version: 2 } });
        expect(await store.findByIndex('Code', 'uid', 'u-old')).toBeUndefined();
        expect(await store.findByIndex('Code', 'userCode', 'C-OLD')).toBeUndefined();
        await store.deleteByGrant('g-old');
        expect(await store.get('Code', 'c1')).toStrictEqual({ value: { version: 2 } });
        expect(await store.consume('Code', 'c1', T0 + 31)).toBe(true);
      });

      it('replacing takes the new expiry, counted from the time of the new put', async () => {
        await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 10 });
        advance(5);
        await store.put('Code', 'c1', { v: 2 }, { ttlSeconds: 10 });
        advance(9);
        expect(await store.get('Code', 'c1')).toStrictEqual({ value: { v: 2 }, expiresAt: T0 + 15 });
        advance(1);
        expect(await store.get('Code', 'c1')).toBeUndefined();
      });
    });

    describe('create', () => {
      it('creates a missing record and reports true, with indexes and expiry as put gives them', async () => {
        expect(await store.create('Code', 'c1', { v: 1 }, { ttlSeconds: 60, grantId: 'g1', uid: 'u1' })).toBe(true);
        expect(await store.get('Code', 'c1')).toStrictEqual({ value: { v: 1 }, expiresAt: T0 + 60 });
        expect(await store.findByIndex('Code', 'uid', 'u1')).toStrictEqual({ id: 'c1', value: { v: 1 }, expiresAt: T0 + 60 });
        await store.deleteByGrant('g1');
        expect(await store.get('Code', 'c1')).toBeUndefined();
      });

      it('leaves a live record untouched and reports false, whatever its expiry or consumed mark', async () => {
        await store.put('signing-keys', 'current', { keys: 'first' });
        expect(await store.create('signing-keys', 'current', { keys: 'second' })).toBe(false);
        await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 10, uid: 'u1' });
        await store.consume('Code', 'c1', T0);
        advance(9);
        expect(await store.create('Code', 'c1', { v: 2 }, { ttlSeconds: 100, uid: 'u2' })).toBe(false);
        expect(await store.get('signing-keys', 'current')).toStrictEqual({ value: { keys: 'first' } });
        expect(await store.get('Code', 'c1')).toStrictEqual({ value: { v: 1 }, consumedAt: T0, expiresAt: T0 + 10 });
        expect(await store.findByIndex('Code', 'uid', 'u2')).toBeUndefined();
      });

      it('replaces an expired record, keeping nothing of it', async () => {
        await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 10, grantId: 'g-old', uid: 'u-old' });
        await store.consume('Code', 'c1', T0);
        advance(10);
        expect(await store.create('Code', 'c1', { v: 2 }, { ttlSeconds: 10 })).toBe(true);
        expect(await store.get('Code', 'c1')).toStrictEqual({ value: { v: 2 }, expiresAt: T0 + 20 });
        expect(await store.findByIndex('Code', 'uid', 'u-old')).toBeUndefined();
        await store.deleteByGrant('g-old');
        expect((await store.get('Code', 'c1'))?.value).toEqual({ v: 2 });
      });

      it('lets exactly one of 50 concurrent calls create the record, and keeps the winner’s value', async () => {
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.create('signing-keys', 'current', { i })));
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await store.get('signing-keys', 'current'))?.value).toEqual({ i: results.indexOf(true) });
      });
    });

    describe('expiry on read', () => {
      it('returns the record until expiresAt and never from expiresAt on', async () => {
        await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 60 });
        advance(59.999);
        expect((await store.get('Code', 'c1'))?.value).toEqual({ v: 1 });
        nowMs = START_MS + 60_000;
        expect(await store.get('Code', 'c1')).toBeUndefined();
        advance(3600);
        expect(await store.get('Code', 'c1')).toBeUndefined();
      });
    });

    describe('findByIndex', () => {
      beforeEach(async () => {
        await store.put('Session', 's1', { n: 1 }, { uid: 'uid-1' });
        await store.put('DeviceCode', 'd1', { n: 2 }, { userCode: 'ABCD-EFGH', ttlSeconds: 600 });
      });

      it('finds a record by uid and by userCode, with its id', async () => {
        expect(await store.findByIndex('Session', 'uid', 'uid-1')).toStrictEqual({ id: 's1', value: { n: 1 } });
        expect(await store.findByIndex('DeviceCode', 'userCode', 'ABCD-EFGH')).toStrictEqual({
          id: 'd1',
          value: { n: 2 },
          expiresAt: T0 + 600,
        });
      });

      it('misses on an unknown key, another kind, or the other index', async () => {
        expect(await store.findByIndex('Session', 'uid', 'uid-2')).toBeUndefined();
        expect(await store.findByIndex('Grant', 'uid', 'uid-1')).toBeUndefined();
        expect(await store.findByIndex('Session', 'userCode', 'uid-1')).toBeUndefined();
        expect(await store.findByIndex('DeviceCode', 'uid', 'ABCD-EFGH')).toBeUndefined();
      });

      it('misses once the record is expired or deleted', async () => {
        advance(600);
        expect(await store.findByIndex('DeviceCode', 'userCode', 'ABCD-EFGH')).toBeUndefined();
        await store.delete('Session', 's1');
        expect(await store.findByIndex('Session', 'uid', 'uid-1')).toBeUndefined();
      });
    });

    describe('consume', () => {
      it('lets exactly one of 50 concurrent calls win and keeps the winner’s consumedAt', async () => {
        await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 60 });
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.consume('Code', 'c1', T0 + i)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect(await store.get('Code', 'c1')).toStrictEqual({
          value: { v: 1 },
          consumedAt: T0 + winner,
          expiresAt: T0 + 60,
        });
      });

      it('keeps the first consumedAt when consumed again later', async () => {
        await store.put('Code', 'c1', { v: 1 });
        expect(await store.consume('Code', 'c1', T0 + 1)).toBe(true);
        advance(5);
        expect(await store.consume('Code', 'c1', T0 + 5)).toBe(false);
        expect((await store.get('Code', 'c1'))?.consumedAt).toBe(T0 + 1);
      });

      it('resolves false on a missing or expired record', async () => {
        expect(await store.consume('Code', 'missing', T0)).toBe(false);
        await store.put('Code', 'c1', { v: 1 }, { ttlSeconds: 10 });
        advance(10);
        expect(await store.consume('Code', 'c1', T0 + 10)).toBe(false);
        nowMs = START_MS;
        expect((await store.get('Code', 'c1'))?.consumedAt).toBeUndefined();
      });
    });

    describe('delete', () => {
      it('removes the record and ignores a miss', async () => {
        await store.put('Session', 's1', { v: 1 });
        await store.put('Session', 's2', { v: 2 });
        await store.delete('Session', 's1');
        await store.delete('Session', 'missing');
        expect(await store.get('Session', 's1')).toBeUndefined();
        expect((await store.get('Session', 's2'))?.value).toEqual({ v: 2 });
      });
    });

    describe('take', () => {
      it('returns the record once and removes it', async () => {
        await store.put('Transaction', 't1', { state: 'x' }, { ttlSeconds: 60 });
        await store.consume('Transaction', 't1', T0 + 1);
        expect(await store.take('Transaction', 't1')).toStrictEqual({
          value: { state: 'x' },
          consumedAt: T0 + 1,
          expiresAt: T0 + 60,
        });
        expect(await store.take('Transaction', 't1')).toBeUndefined();
        expect(await store.get('Transaction', 't1')).toBeUndefined();
      });

      it('hands the record to at most one of 50 concurrent calls', async () => {
        await store.put('Transaction', 't1', { state: 'x' });
        const results = await Promise.all(Array.from({ length: 50 }, () => store.take('Transaction', 't1')));
        const winners = results.filter((record) => record !== undefined);
        expect(winners).toStrictEqual([{ value: { state: 'x' } }]);
      });

      it('resolves undefined on a missing or expired record', async () => {
        expect(await store.take('Transaction', 'missing')).toBeUndefined();
        await store.put('Transaction', 't1', { state: 'x' }, { ttlSeconds: 10 });
        advance(10);
        expect(await store.take('Transaction', 't1')).toBeUndefined();
      });
    });

    describe('deleteByGrant', () => {
      it('removes the grant’s records of every kind and nothing else', async () => {
        await store.put('AccessToken', 'a1', { v: 1 }, { grantId: 'g1' });
        await store.put('RefreshToken', 'r1', { v: 2 }, { grantId: 'g1', uid: 'u1' });
        await store.put('AccessToken', 'a2', { v: 3 }, { grantId: 'g2' });
        await store.put('AccessToken', 'a3', { v: 4 });
        await store.deleteByGrant('g1');
        await store.deleteByGrant('never-used');
        expect(await store.get('AccessToken', 'a1')).toBeUndefined();
        expect(await store.get('RefreshToken', 'r1')).toBeUndefined();
        expect(await store.findByIndex('RefreshToken', 'uid', 'u1')).toBeUndefined();
        expect((await store.get('AccessToken', 'a2'))?.value).toEqual({ v: 3 });
        expect((await store.get('AccessToken', 'a3'))?.value).toEqual({ v: 4 });
      });
    });

    describe('list', () => {
      const ids = (records: Array<{ id: string }>): string[] => records.map((record) => record.id);

      beforeEach(async () => {
        for (const id of ['user:1:b', 'user:10:c', 'user:1:a', 'user:2:x', 'user:1:c']) {
          await store.put('consent', id, { id });
        }
        await store.put('other', 'user:1:z', { id: 'user:1:z' });
      });

      it('returns the kind’s records with the prefix, in id order, with values', async () => {
        const listed = await store.list('consent', 'user:1:');
        expect(ids(listed)).toEqual(['user:1:a', 'user:1:b', 'user:1:c']);
        expect(listed[0]).toStrictEqual({ id: 'user:1:a', value: { id: 'user:1:a' } });
        // Code point order: '0' sorts before ':'.
        expect(ids(await store.list('consent', 'user:1'))).toEqual(['user:10:c', 'user:1:a', 'user:1:b', 'user:1:c']);
        expect(ids(await store.list('consent', ''))).toHaveLength(5);
        expect(await store.list('consent', 'nobody:')).toEqual([]);
      });

      it('applies the limit after ordering and after skipping expired records', async () => {
        await store.put('consent', 'user:1:0', { id: 'user:1:0' }, { ttlSeconds: 5 });
        expect(ids(await store.list('consent', 'user:1:', 2))).toEqual(['user:1:0', 'user:1:a']);
        advance(5);
        expect(ids(await store.list('consent', 'user:1:', 2))).toEqual(['user:1:a', 'user:1:b']);
      });

      it('treats the prefix literally and case-sensitively', async () => {
        for (const id of ['a_b', 'axb', 'a%b', 'a*b', 'a?b', 'a[b]', 'A_b']) await store.put('lit', id, {});
        expect(ids(await store.list('lit', 'a_'))).toEqual(['a_b']);
        expect(ids(await store.list('lit', 'a%'))).toEqual(['a%b']);
        expect(ids(await store.list('lit', 'a*'))).toEqual(['a*b']);
        expect(ids(await store.list('lit', 'a?'))).toEqual(['a?b']);
        expect(ids(await store.list('lit', 'a['))).toEqual(['a[b]']);
      });

      it('returns at most 1000 records by default', async () => {
        for (let i = 0; i < 1001; i++) await store.put('many', `m${String(i).padStart(4, '0')}`, {});
        const listed = await store.list('many', 'm');
        expect(listed).toHaveLength(1000);
        expect(listed.at(-1)?.id).toBe('m0999');
      });
    });

    describe('increment', () => {
      it('is exact under 200 concurrent calls', async () => {
        const results = await Promise.all(Array.from({ length: 200 }, () => store.increment('rate:ip', 60)));
        expect([...results].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
        expect(await store.increment('rate:ip', 60)).toBe(201);
      });

      it('counts each key on its own', async () => {
        expect(await store.increment('a', 60)).toBe(1);
        expect(await store.increment('a', 60)).toBe(2);
        expect(await store.increment('b', 60)).toBe(1);
      });

      it('starts over once the fixed window from the first increment has passed', async () => {
        expect(await store.increment('k', 60)).toBe(1);
        advance(30);
        expect(await store.increment('k', 60)).toBe(2);
        advance(29);
        expect(await store.increment('k', 60)).toBe(3);
        advance(1);
        expect(await store.increment('k', 60)).toBe(1);
        advance(59);
        expect(await store.increment('k', 60)).toBe(2);
      });
    });

    describe('sweep', () => {
      it('removes expired records for good and keeps live ones', async () => {
        await store.put('Code', 'short1', { v: 1 }, { ttlSeconds: 10 });
        await store.put('Code', 'short2', { v: 2 }, { ttlSeconds: 10, uid: 'u' });
        await store.put('Code', 'long', { v: 3 }, { ttlSeconds: 100 });
        await store.put('Code', 'forever', { v: 4 });
        expect(await store.sweep()).toBe(0);
        advance(10);
        const removed = await store.sweep();
        // Engines with native expiry (redis) may report 0; the others count what they removed.
        expect(removed).toBe(store.engine === 'redis' ? 0 : 2);
        // Turning the clock back shows the rows are physically gone, not just hidden by expiry.
        nowMs = START_MS;
        expect(await store.get('Code', 'short1')).toBeUndefined();
        expect(await store.findByIndex('Code', 'uid', 'u')).toBeUndefined();
        expect((await store.get('Code', 'long'))?.value).toEqual({ v: 3 });
        expect((await store.get('Code', 'forever'))?.value).toEqual({ v: 4 });
      });
    });

    describe('ping and close', () => {
      it('pings while open', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('rejects with StoreUnavailableError once closed', async () => {
        await store.put('Session', 's1', { v: 1 });
        await store.close();
        await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(store.get('Session', 's1')).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(store.put('Session', 's2', {})).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(store.create('Session', 's3', {})).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(store.increment('k', 60)).rejects.toBeInstanceOf(StoreUnavailableError);
      });
    });

    describe('values', () => {
      it('come back exactly as given: key order, U+0000, lone surrogates', async () => {
        const value = { zebra: 1, apple: 'nul \u0000 here', lone: '\ud800', nested: { b: 1, a: 2 } };
        await store.put('Session', 's1', value);
        const read = (await store.get('Session', 's1'))?.value;
        expect(read).toStrictEqual(value);
        expect(JSON.stringify(read)).toBe(JSON.stringify(value));
      });
    });

    describe('subscribe and publish', () => {
      /** Subscribes and collects what arrives. */
      async function listen(channel: string) {
        const received: string[] = [];
        const unsubscribe = await events().subscribe(channel, (message) => received.push(message));
        return { received, unsubscribe };
      }

      function events(): Required<Pick<Store, 'subscribe' | 'publish'>> {
        if (!store.subscribe || !store.publish) throw new Error(`${name} has no subscribe/publish`);
        return { subscribe: store.subscribe.bind(store), publish: store.publish.bind(store) };
      }

      it('delivers messages in order to every subscriber of the channel, and to no other', async () => {
        const first = await listen('revocations');
        const second = await listen('revocations');
        const other = await listen('keys');
        for (const message of ['a', 'b', 'ü ✓', '']) await events().publish('revocations', message);
        expect(await until(() => first.received.length === 4 && second.received.length === 4)).toBe(true);
        expect(first.received).toEqual(['a', 'b', 'ü ✓', '']);
        expect(second.received).toEqual(['a', 'b', 'ü ✓', '']);
        expect(other.received).toEqual([]);
      });

      it('stops delivering after unsubscribe, which may be called twice', async () => {
        const gone = await listen('revocations');
        const marker = await listen('keys');
        await gone.unsubscribe();
        await gone.unsubscribe();
        await events().publish('revocations', 'late');
        // One publisher's messages arrive in order, so once the marker is in, 'late' would be too.
        await events().publish('keys', 'marker');
        expect(await until(() => marker.received.length === 1)).toBe(true);
        expect(gone.received).toEqual([]);
      });

      it('keeps delivering to the others when a handler throws', async () => {
        await events().subscribe('revocations', () => {
          throw new Error('bad handler');
        });
        const good = await listen('revocations');
        await events().publish('revocations', 'x');
        await events().publish('revocations', 'y');
        expect(await until(() => good.received.length === 2)).toBe(true);
      });

      it('refuses odd channel names and oversized messages with RangeError', async () => {
        await expect(events().subscribe('has space', () => undefined)).rejects.toBeInstanceOf(RangeError);
        await expect(events().publish('x'.repeat(33), 'm')).rejects.toBeInstanceOf(RangeError);
        await expect(events().publish('ok', 'm'.repeat(4097))).rejects.toBeInstanceOf(RangeError);
        await expect(events().publish('ok', 'm'.repeat(4096))).resolves.toBeUndefined();
      });

      it('rejects with StoreUnavailableError once closed', async () => {
        const { subscribe, publish } = events();
        await store.close();
        await expect(subscribe('revocations', () => undefined)).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(publish('revocations', 'm')).rejects.toBeInstanceOf(StoreUnavailableError);
      });
    });
  });
}

/** Polls `check` (every 5 ms, up to 2 s); whether it came true. */
async function until(check: () => boolean): Promise<boolean> {
  const deadline = Date.now() + 2000;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}
