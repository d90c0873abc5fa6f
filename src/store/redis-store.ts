/**
 * The Redis engine: every gateway replica on one Redis (standalone, Sentinel or Cluster).
 * The key layout and the Lua scripts are in redis-scripts.ts, the connection in
 * redis-connection.ts, the events in redis-events.ts.
 *
 * Time: every expiry decision uses the store's clock (`now`, injectable) and compares
 * `expiresAt`, exactly as the other engines do. Redis's own TTLs (PEXPIRE, relative, so the
 * Redis host's clock does not matter) only reclaim memory, a little after that expiry; index
 * sets live at least as long as their longest-lived member. What native expiry leaves behind
 * in the indexes (ids of records Redis already dropped) the sweep removes, using the index
 * entries each record's `P x` member names.
 */
import { startSweepTimer } from './sweep-timer.ts';
import {
  epochSeconds,
  expiryFor,
  StoreUnavailableError,
  windowLength,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
} from './store.ts';
import { createClient, DEFAULT_KEY_PREFIX, hashTagged, messageOf, type RedisStoreOptions } from './redis-connection.ts';
import { createRedisEvents } from './redis-events.ts';
import { encodeKind, netstrings, optional, recordKey, SCRIPTS, type ScriptName } from './redis-scripts.ts';

export {
  DEFAULT_KEY_PREFIX, parseNode, type RedisStoreConfig, type RedisStoreOptions, type RedisTlsOptions,
} from './redis-connection.ts';

const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const DEFAULT_LIST_LIMIT = 1000;
const SWEEP_BATCH = 200;
const SWEEP_MAX_BATCHES = 100;
/**
 * Redis drops a record this long after the store's clock says it expired. Reads decide expiry
 * themselves, so the margin only means Redis never removes a record the store would still
 * return, even when a test moves the store's clock or replicas' clocks disagree a little.
 */
const NATIVE_TTL_SLACK_MS = 60_000;

type Nullable = string | null;

export async function createRedisStore(options: RedisStoreOptions): Promise<Store> {
  const now = options.now ?? Date.now;
  const nowSeconds = (): number => epochSeconds(now());
  const prefix = hashTagged(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
  const client = createClient(options);
  // Without a listener ioredis prints every connection error; the store reports them instead.
  let lastError: Error | undefined;
  client.on('error', (error: Error) => {
    lastError = error;
  });
  client.on('ready', () => {
    lastError = undefined;
  });
  for (const [name, script] of Object.entries(SCRIPTS)) client.defineCommand(name, script);
  await client.connect().catch((error: unknown) => {
    client.disconnect();
    throw new StoreUnavailableError(`redis store unavailable: ${messageOf(error)}`, { cause: error });
  });

  let closed = false;
  const events = createRedisEvents(client, prefix, () => closed);

  /** Runs client calls, turning every Redis or connection failure into StoreUnavailableError. */
  async function call<T>(operation: () => Promise<T>): Promise<T> {
    if (closed) throw new StoreUnavailableError('redis store is closed');
    try {
      return await operation();
    } catch (error) {
      // While disconnected ioredis only says the stream is not writeable; the connection's state
      // and own error (refused, timed out, auth failed) is what an operator needs in /ready.
      const lost = client.status !== 'ready' || /writeable|Connection is closed/.test(messageOf(error));
      const state = client.status === 'ready' ? 'connection lost' : client.status;
      const reason = lost ? `not connected (${state}${lastError ? `: ${lastError.message}` : ''})` : messageOf(error);
      throw new StoreUnavailableError(`redis store unavailable: ${reason}`, { cause: error });
    }
  }

  function script(name: ScriptName, ...args: Array<string | number>): Promise<unknown> {
    const command = (client as unknown as Record<ScriptName, (...args: Array<string | number>) => Promise<unknown>>)[name];
    return call(() => command.call(client, ...args));
  }

  /** The arguments gatehousePut and gatehouseCreate share, after the record key. */
  function writeArguments(kind: string, id: string, value: StoredValue, putOptions: PutOptions): Array<string | number> {
    const json = JSON.stringify(value);
    const nowMs = now();
    const expiresAt = expiryFor(putOptions.ttlSeconds, epochSeconds(nowMs));
    const ttlMs = expiresAt === undefined ? '' : expiresAt * 1000 - nowMs + NATIVE_TTL_SLACK_MS;
    const grant = optional(putOptions.grantId);
    const uid = optional(putOptions.uid);
    const userCode = optional(putOptions.userCode);
    const member = netstrings([encodeKind(kind), id, grant, uid, userCode]);
    return [prefix, encodeKind(kind), id, json, expiresAt ?? '', ttlMs, grant, uid, userCode, member];
  }

  // Small scripts, so Redis (single-threaded) never stalls other replicas' requests for long;
  // a backlog larger than one sweep's share is worked off over several ticks.
  const sweepBatches = async (): Promise<void> => {
    const at = String(nowSeconds());
    for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
      const handled = Number(await script('gatehouseSweep', `${prefix}x`, prefix, at, SWEEP_BATCH));
      if (handled < SWEEP_BATCH) break;
    }
  };
  const timer = startSweepTimer(sweepBatches, options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);

  return {
    engine: 'redis',

    async put(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<void> {
      await script('gatehousePut', recordKey(prefix, kind, id), ...writeArguments(kind, id, value, putOptions));
    },

    async create(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<boolean> {
      const args = writeArguments(kind, id, value, putOptions);
      return Number(await script('gatehouseCreate', recordKey(prefix, kind, id), ...args, nowSeconds())) === 1;
    },

    async get(kind: string, id: string): Promise<StoredRecord | undefined> {
      const [value, expiresAt, consumedAt] = await call(() => client.hmget(recordKey(prefix, kind, id), 'v', 'e', 'c'));
      return liveRecord(value ?? null, expiresAt ?? null, consumedAt ?? null, nowSeconds());
    },

    async findByIndex(kind: string, index: 'uid' | 'userCode', key: string) {
      const setKey = `${prefix}${index === 'uid' ? 'u' : 'c'}:${encodeKind(kind)}:${key}`;
      const rows = await script('gatehouseFindByIndex', setKey, prefix, encodeKind(kind), index === 'uid' ? 'u' : 'uc', key);
      // Several live records may share an index key; like the SQL engines, the lowest id wins.
      const found = liveRows(rows as Nullable[], 0, nowSeconds()).sort((a, b) => compareCodePoints(a.id, b.id));
      return found[0];
    },

    async consume(kind: string, id: string, at: number): Promise<boolean> {
      return Number(await script('gatehouseConsume', recordKey(prefix, kind, id), prefix, nowSeconds(), at)) === 1;
    },

    async delete(kind: string, id: string): Promise<void> {
      await script('gatehouseDelete', recordKey(prefix, kind, id), prefix);
    },

    async take(kind: string, id: string): Promise<StoredRecord | undefined> {
      const row = (await script('gatehouseTake', recordKey(prefix, kind, id), prefix)) as Nullable[] | null;
      // An expired record is removed all the same; it just is not handed out.
      return row ? liveRecord(row[0] ?? null, row[1] ?? null, row[2] ?? null, nowSeconds()) : undefined;
    },

    async deleteByGrant(grantId: string): Promise<void> {
      await script('gatehouseDeleteByGrant', `${prefix}g:${grantId}`, prefix, grantId);
    },

    async list(kind: string, idPrefix: string, limit = DEFAULT_LIST_LIMIT) {
      const at = nowSeconds();
      const batch = Math.min(Math.max(limit, 50), 1000);
      const found: Array<StoredRecord & { id: string }> = [];
      // Ids come in byte order; expired and vanished records are skipped, so keep reading
      // batches until the limit is met or the ids run out.
      for (let offset = 0; found.length < limit; offset += batch) {
        const rows = (await script('gatehouseList', `${prefix}k:${encodeKind(kind)}`, prefix, encodeKind(kind), idPrefix, offset, batch)) as Nullable[];
        found.push(...liveRows(rows, 1, at));
        if (Number(rows[0]) < batch) break;
      }
      return found.slice(0, limit);
    },

    async increment(key: string, windowSeconds: number): Promise<number> {
      const window = windowLength(windowSeconds);
      const result = await script('gatehouseIncrement', `${prefix}n:${key}`, prefix, nowSeconds(), window, window * 1000 + NATIVE_TTL_SLACK_MS);
      return Number(result);
    },

    async sweep(): Promise<number> {
      await sweepBatches();
      // Redis expires records itself; the sweep removes what the store's clock expired first
      // and what native expiry left in the indexes, and reports 0 like any native-expiry engine.
      return 0;
    },

    async ping(): Promise<void> {
      await call(() => client.ping());
    },

    subscribe: events.subscribe,
    publish: events.publish,

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      timer.stop();
      await events.close();
      // QUIT lets pending replies arrive; it cannot hang the shutdown of a gateway whose
      // Redis is gone, because commands fail at once while disconnected.
      await client.quit().catch(() => undefined);
      client.disconnect();
    },
  };
}

function liveRecord(value: Nullable, expiresAt: Nullable, consumedAt: Nullable, at: number): StoredRecord | undefined {
  if (value === null) return undefined;
  if (expiresAt !== null && Number(expiresAt) <= at) return undefined;
  const record: StoredRecord = { value: JSON.parse(value) as StoredValue };
  if (consumedAt !== null) record.consumedAt = Number(consumedAt);
  if (expiresAt !== null) record.expiresAt = Number(expiresAt);
  return record;
}

/** Rows of four (id, value, expiresAt, consumedAt) from `start`, the expired ones left out. */
function liveRows(rows: Nullable[], start: number, at: number): Array<StoredRecord & { id: string }> {
  const live: Array<StoredRecord & { id: string }> = [];
  for (let i = start; i + 3 < rows.length; i += 4) {
    const record = liveRecord(rows[i + 1] ?? null, rows[i + 2] ?? null, rows[i + 3] ?? null, at);
    if (record) live.push({ id: String(rows[i]), ...record });
  }
  return live;
}

/** Code point order, which is the byte order Redis sorts UTF-8 by. */
function compareCodePoints(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
