/**
 * The memory engine: every record in process memory. For development, tests and single-instance
 * deployments that can afford to lose state on restart. Atomicity comes for free because each
 * operation runs to completion on the one JavaScript thread without awaiting anything.
 */
import {
  epochSeconds,
  StoreUnavailableError,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
  expiryFor,
  windowLength,
} from './store.ts';
import { createLocalEvents } from './local-events.ts';

export interface MemoryStoreOptions {
  /** How often expired records are removed; 0 or less disables the timer. Default 60 s. */
  sweepIntervalMs?: number;
  /** Clock in epoch milliseconds; injectable so tests can move time. */
  now?: () => number;
}

interface Entry {
  kind: string;
  id: string;
  /** Kept serialised so callers can never mutate stored state through a shared reference. */
  json: string;
  expiresAt?: number;
  consumedAt?: number;
  grantId?: string;
  uid?: string;
  userCode?: string;
}

interface Counter {
  value: number;
  expiresAt: number;
}

const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const DEFAULT_LIST_LIMIT = 1000;

export function createMemoryStore(options: MemoryStoreOptions = {}): Store {
  const now = options.now ?? Date.now;
  const nowSeconds = (): number => epochSeconds(now());
  const records = new Map<string, Map<string, Entry>>();
  const byGrant = new Map<string, Set<Entry>>();
  const byIndex = new Map<string, Set<Entry>>();
  const counters = new Map<string, Counter>();
  let closed = false;

  function assertOpen(): void {
    if (closed) throw new StoreUnavailableError('memory store is closed');
  }

  function isLive(entry: { expiresAt?: number }, at: number): boolean {
    return entry.expiresAt === undefined || entry.expiresAt > at;
  }

  function liveEntry(kind: string, id: string): Entry | undefined {
    const entry = records.get(kind)?.get(id);
    return entry && isLive(entry, nowSeconds()) ? entry : undefined;
  }

  function indexKeys(entry: Entry): string[] {
    const keys: string[] = [];
    if (entry.uid !== undefined) keys.push(indexKey(entry.kind, 'uid', entry.uid));
    if (entry.userCode !== undefined) keys.push(indexKey(entry.kind, 'userCode', entry.userCode));
    return keys;
  }

  function insert(entry: Entry): void {
    let ofKind = records.get(entry.kind);
    if (!ofKind) records.set(entry.kind, (ofKind = new Map()));
    ofKind.set(entry.id, entry);
    if (entry.grantId !== undefined) addTo(byGrant, entry.grantId, entry);
    for (const key of indexKeys(entry)) addTo(byIndex, key, entry);
  }

  function remove(entry: Entry): void {
    const ofKind = records.get(entry.kind);
    ofKind?.delete(entry.id);
    if (ofKind?.size === 0) records.delete(entry.kind);
    if (entry.grantId !== undefined) removeFrom(byGrant, entry.grantId, entry);
    for (const key of indexKeys(entry)) removeFrom(byIndex, key, entry);
  }

  function sweepExpired(): number {
    const at = nowSeconds();
    let removed = 0;
    for (const ofKind of [...records.values()]) {
      for (const entry of [...ofKind.values()]) {
        if (!isLive(entry, at)) {
          remove(entry);
          removed++;
        }
      }
    }
    for (const [key, counter] of [...counters]) {
      if (!isLive(counter, at)) {
        counters.delete(key);
        removed++;
      }
    }
    return removed;
  }

  function write(kind: string, id: string, value: StoredValue, putOptions: PutOptions): void {
    const json = JSON.stringify(value);
    const expiresAt = expiryFor(putOptions.ttlSeconds, nowSeconds());
    const previous = records.get(kind)?.get(id);
    // Replacing keeps nothing of the old record, so drop it from every index first.
    if (previous) remove(previous);
    insert({ kind, id, json, expiresAt, ...indexFields(putOptions) });
  }

  const interval = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  // unref'd so an idle store never keeps the process alive on its own.
  const timer = interval > 0 ? setInterval(sweepExpired, interval).unref() : undefined;
  // Events stay within this store: a memory store has no one else to tell.
  const events = createLocalEvents(assertOpen);

  return {
    engine: 'memory',
    subscribe: events.subscribe,
    publish: events.publish,

    async put(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<void> {
      assertOpen();
      write(kind, id, value, putOptions);
    },

    async create(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<boolean> {
      assertOpen();
      if (liveEntry(kind, id)) return false;
      write(kind, id, value, putOptions);
      return true;
    },

    async get(kind: string, id: string): Promise<StoredRecord | undefined> {
      assertOpen();
      const entry = liveEntry(kind, id);
      return entry && toRecord(entry);
    },

    async findByIndex(kind: string, index: 'uid' | 'userCode', key: string) {
      assertOpen();
      const at = nowSeconds();
      for (const entry of byIndex.get(indexKey(kind, index, key)) ?? []) {
        if (isLive(entry, at)) return { id: entry.id, ...toRecord(entry) };
      }
      return undefined;
    },

    async consume(kind: string, id: string, at: number): Promise<boolean> {
      assertOpen();
      const entry = liveEntry(kind, id);
      if (!entry || entry.consumedAt !== undefined) return false;
      entry.consumedAt = at;
      return true;
    },

    async delete(kind: string, id: string): Promise<void> {
      assertOpen();
      const entry = records.get(kind)?.get(id);
      if (entry) remove(entry);
    },

    async take(kind: string, id: string): Promise<StoredRecord | undefined> {
      assertOpen();
      const entry = records.get(kind)?.get(id);
      if (!entry) return undefined;
      remove(entry);
      return isLive(entry, nowSeconds()) ? toRecord(entry) : undefined;
    },

    async deleteByGrant(grantId: string): Promise<void> {
      assertOpen();
      for (const entry of [...(byGrant.get(grantId) ?? [])]) remove(entry);
    },

    async list(kind: string, idPrefix: string, limit = DEFAULT_LIST_LIMIT) {
      assertOpen();
      const at = nowSeconds();
      const matches = [...(records.get(kind)?.values() ?? [])]
        .filter((entry) => entry.id.startsWith(idPrefix) && isLive(entry, at))
        .sort((a, b) => compareCodePoints(a.id, b.id));
      return matches.slice(0, limit).map((entry) => ({ id: entry.id, ...toRecord(entry) }));
    },

    async increment(key: string, windowSeconds: number): Promise<number> {
      assertOpen();
      const at = nowSeconds();
      const counter = counters.get(key);
      if (counter && isLive(counter, at)) return ++counter.value;
      counters.set(key, { value: 1, expiresAt: at + windowLength(windowSeconds) });
      return 1;
    },

    async sweep(): Promise<number> {
      assertOpen();
      return sweepExpired();
    },

    async ping(): Promise<void> {
      assertOpen();
    },

    async close(): Promise<void> {
      closed = true;
      clearInterval(timer);
      events.close();
      records.clear();
      byGrant.clear();
      byIndex.clear();
      counters.clear();
    },
  };
}

function indexFields(options: PutOptions): Pick<Entry, 'grantId' | 'uid' | 'userCode'> {
  return { grantId: options.grantId, uid: options.uid, userCode: options.userCode };
}

function indexKey(kind: string, index: 'uid' | 'userCode', key: string): string {
  // JSON keeps the parts apart whatever characters kinds and keys contain.
  return JSON.stringify([kind, index, key]);
}

function toRecord(entry: Entry): StoredRecord {
  const record: StoredRecord = { value: JSON.parse(entry.json) as StoredValue };
  if (entry.consumedAt !== undefined) record.consumedAt = entry.consumedAt;
  if (entry.expiresAt !== undefined) record.expiresAt = entry.expiresAt;
  return record;
}

/** Code point order, which is the byte order SQLite and Postgres (COLLATE "C") sort UTF-8 by. */
function compareCodePoints(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function addTo<K, V>(multimap: Map<K, Set<V>>, key: K, value: V): void {
  let set = multimap.get(key);
  if (!set) multimap.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<K, V>(multimap: Map<K, Set<V>>, key: K, value: V): void {
  const set = multimap.get(key);
  set?.delete(value);
  if (set?.size === 0) multimap.delete(key);
}
