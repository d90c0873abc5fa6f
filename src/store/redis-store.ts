/**
 * The Redis engine: every gateway replica on one Redis (standalone, Sentinel or Cluster).
 *
 * Layout, under one key prefix `P` written as a hash tag (`{gatehouse:}`), so that in a Cluster
 * every key lands in one slot and the Lua scripts below may touch several keys atomically
 * (Redis Cluster spec, "Hash tags"). The gateway's data is small; Cluster then buys failover,
 * not sharding.
 *
 *   P r:<kind>:<id>        hash: v (JSON value), e (expiresAt), c (consumedAt), k, i (kind, id),
 *                          g, u, uc (grant id, uid, user code), m (its member of P x)
 *   P k:<kind>             sorted set of the kind's ids, all score 0: ordered listing by prefix
 *   P g:<grantId>          set of record keys put with that grant
 *   P u:<kind>:<uid>       set of ids with that uid; P c:<kind>:<code> the same for user codes
 *   P x                    sorted set of expiring records by expiresAt, for the sweep
 *   P n:<key>              hash: n (count), e (end of the window)
 *
 * Kinds are URI-encoded in key names, so the first ":" after a kind always ends it.
 *
 * Time: every expiry decision uses the store's clock (`now`, injectable) and compares
 * `expiresAt`, exactly as the other engines do. Redis's own TTLs (PEXPIRE, relative, so the
 * Redis host's clock does not matter) only reclaim memory, a little after that expiry; index
 * sets live at least as long as their longest-lived member. What native expiry leaves behind
 * in the indexes (ids of records Redis already dropped) the sweep removes, using the index
 * entries each record's `P x` member names.
 *
 * Every operation that reads and writes is one Lua script (EVALSHA through defineCommand), so
 * consume, take, increment and deleteByGrant are atomic for every replica at once.
 *
 * Failures: commands are never queued while the connection is down (`enableOfflineQueue:
 * false`) and time out after `commandTimeoutMs`, so a request fails with StoreUnavailableError
 * at once instead of hanging; the client reconnects in the background and the store works
 * again as soon as Redis is back. Commands whose reply was lost with the connection are not
 * re-sent: a consume whose outcome is unknown must fail, not be applied twice.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import {
  checkChannel,
  checkMessage,
  epochSeconds,
  expiryFor,
  StoreUnavailableError,
  windowLength,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
} from './store.ts';

export interface RedisTlsOptions {
  /** PEM file with the CA that signed the server's certificate (a private CA). */
  caFile?: string;
  /** false accepts any server certificate: for tests only. Default true. */
  rejectUnauthorized?: boolean;
}

export interface RedisStoreOptions {
  /** redis:// or rediss:// (TLS) URL of a standalone server; user, password and db may be in it. */
  url?: string;
  /** Password for the data nodes (overrides one in the URL). */
  password?: string;
  /** Prefix of every key and channel. Default `gatehouse:`. */
  keyPrefix?: string;
  /** TLS to the data nodes; `rediss://` turns it on as well. */
  tls?: boolean | RedisTlsOptions;
  /** Redis Sentinel: the master group `name` and the sentinels' `host:port` addresses. */
  sentinel?: { name: string; nodes: readonly string[] };
  /** Redis Cluster: `host:port` addresses of some of its nodes. */
  cluster?: { nodes: readonly string[] };
  /** How often index entries of expired records are cleaned up; 0 or less disables. Default 60 s. */
  sweepIntervalMs?: number;
  /** A command without a reply after this long fails. Default 2000 ms. */
  commandTimeoutMs?: number;
  /** Connecting (at start and on reconnects) gives up after this long. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Clock in epoch milliseconds; injectable so tests can move time. */
  now?: () => number;
}

/** `store` as written in the configuration file. */
export interface RedisStoreConfig {
  type: 'redis';
  url?: string;
  password?: string;
  key_prefix?: string;
  tls?: boolean | { ca_file?: string; reject_unauthorized?: boolean };
  sentinel?: { name: string; nodes: readonly string[] };
  cluster?: { nodes: readonly string[] };
}

export const DEFAULT_KEY_PREFIX = 'gatehouse:';
const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_LIST_LIMIT = 1000;
const SWEEP_BATCH = 200;
const SWEEP_MAX_BATCHES = 100;
/**
 * Redis drops a record this long after the store's clock says it expired. Reads decide expiry
 * themselves, so the margin only means Redis never removes a record the store would still
 * return, even when a test moves the store's clock or replicas' clocks disagree a little.
 */
const NATIVE_TTL_SLACK_MS = 60_000;
/** Reconnect delays grow to this and stay there, so recovery after an outage is quick. */
const MAX_RECONNECT_DELAY_MS = 1000;

/** Lua shared by the scripts: key names and removing a record with every index entry. */
const PRELUDE = String.raw`
local P = ARGV[1]
local X = P .. 'x'
local function rkey(kind, id) return P .. 'r:' .. kind .. ':' .. id end
local function kkey(kind) return P .. 'k:' .. kind end
local function gkey(g) return P .. 'g:' .. g end
local function ukey(kind, u) return P .. 'u:' .. kind .. ':' .. u end
local function ckey(kind, c) return P .. 'c:' .. kind .. ':' .. c end
-- Optional arguments: '' when absent, else '=' followed by the value (which may be empty).
local function opt(arg)
  if arg == '' then return nil end
  return string.sub(arg, 2)
end
local function drop(rk)
  local f = redis.call('HMGET', rk, 'k', 'i', 'g', 'u', 'uc', 'm')
  if not f[1] then return end
  local kind, id = f[1], f[2]
  if f[3] then redis.call('SREM', gkey(f[3]), rk) end
  if f[4] then redis.call('SREM', ukey(kind, f[4]), id) end
  if f[5] then redis.call('SREM', ckey(kind, f[5]), id) end
  if f[6] then redis.call('ZREM', X, f[6]) end
  redis.call('ZREM', kkey(kind), id)
  redis.call('DEL', rk)
end
`;

/** Each script: how many of its arguments are keys, and its Lua. ARGV[1] is always the prefix. */
const SCRIPTS = {
  // KEYS: record. ARGV: P, kind, id, value, expiresAt|'', ttlMs|'', grant, uid, userCode (opt), member.
  gatehousePut: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
local rk = KEYS[1]
local kind, id, e, ttl = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local g, u, uc = opt(ARGV[7]), opt(ARGV[8]), opt(ARGV[9])
-- Replacing keeps nothing of the old record: drop it with its index entries first.
drop(rk)
local fields = { 'v', ARGV[4], 'k', kind, 'i', id }
if e ~= '' then
  table.insert(fields, 'e'); table.insert(fields, e)
  table.insert(fields, 'm'); table.insert(fields, ARGV[10])
end
if g then table.insert(fields, 'g'); table.insert(fields, g) end
if u then table.insert(fields, 'u'); table.insert(fields, u) end
if uc then table.insert(fields, 'uc'); table.insert(fields, uc) end
redis.call('HSET', rk, unpack(fields))
redis.call('ZADD', kkey(kind), 0, id)
if e ~= '' then
  redis.call('PEXPIRE', rk, ttl)
  redis.call('ZADD', X, e, ARGV[10])
end
-- An index set lives as long as its longest-lived member: forever once one member has no ttl.
local function index(key, member)
  local existed = redis.call('EXISTS', key) == 1
  redis.call('SADD', key, member)
  if e == '' then
    redis.call('PERSIST', key)
  elseif not existed then
    redis.call('PEXPIRE', key, ttl)
  else
    local left = redis.call('PTTL', key)
    if left >= 0 and left < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
  end
end
if g then index(gkey(g), rk) end
if u then index(ukey(kind, u), id) end
if uc then index(ckey(kind, uc), id) end
return 1
`,
  },
  // KEYS: record. ARGV: P, now, at.
  gatehouseConsume: {
    numberOfKeys: 1,
    lua: String.raw`
local f = redis.call('HMGET', KEYS[1], 'v', 'e', 'c')
if not f[1] or f[3] then return 0 end
if f[2] and tonumber(f[2]) <= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[3])
return 1
`,
  },
  // KEYS: record. ARGV: P. Returns [value, expiresAt, consumedAt] of what it removed, or nil.
  gatehouseTake: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
local f = redis.call('HMGET', KEYS[1], 'v', 'e', 'c')
if not f[1] then return false end
drop(KEYS[1])
return f
`,
  },
  // KEYS: record. ARGV: P.
  gatehouseDelete: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
drop(KEYS[1])
return 1
`,
  },
  // KEYS: grant set. ARGV: P, grantId.
  gatehouseDeleteByGrant: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
for _, rk in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HGET', rk, 'g') == ARGV[2] then drop(rk) end
end
redis.call('DEL', KEYS[1])
return 1
`,
  },
  // KEYS: index set. ARGV: P, kind, field (u or uc), key. Returns [id, v, e, c, ...].
  gatehouseFindByIndex: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', rkey(ARGV[2], id), 'v', 'e', 'c', ARGV[3])
  if f[1] and f[4] == ARGV[4] then
    table.insert(out, id); table.insert(out, f[1]); table.insert(out, f[2]); table.insert(out, f[3])
  end
end
return out
`,
  },
  // KEYS: kind set. ARGV: P, kind, prefix, offset, count. Returns [ids scanned, id, v, e, c, ...].
  gatehouseList: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
local min, max = '-', '+'
-- Byte order: every string starting with the prefix sorts before prefix .. 0xFF, a byte that
-- UTF-8 never contains.
if ARGV[3] ~= '' then min = '[' .. ARGV[3]; max = '(' .. ARGV[3] .. '\255' end
local ids = redis.call('ZRANGEBYLEX', KEYS[1], min, max, 'LIMIT', ARGV[4], ARGV[5])
local out = { #ids }
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', rkey(ARGV[2], id), 'v', 'e', 'c')
  if f[1] then
    table.insert(out, id); table.insert(out, f[1]); table.insert(out, f[2]); table.insert(out, f[3])
  end
end
return out
`,
  },
  // KEYS: counter. ARGV: P, now, window, ttlMs.
  gatehouseIncrement: {
    numberOfKeys: 1,
    lua: String.raw`
local f = redis.call('HMGET', KEYS[1], 'n', 'e')
if f[1] and tonumber(f[2]) > tonumber(ARGV[2]) then return redis.call('HINCRBY', KEYS[1], 'n', 1) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'n', 1, 'e', tonumber(ARGV[2]) + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`,
  },
  // KEYS: P x. ARGV: P, now, batch. Returns how many members it handled.
  gatehouseSweep: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
-- A member is a netstring list: kind, id, grant, uid, userCode (the last three as opt args).
local function fields(s)
  local out, pos = {}, 1
  while pos <= #s do
    local colon = string.find(s, ':', pos, true)
    local n = tonumber(string.sub(s, pos, colon - 1))
    table.insert(out, string.sub(s, colon + 1, colon + n))
    pos = colon + n + 1
  end
  return out
end
local members = redis.call('ZRANGEBYSCORE', X, '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(members) do
  local d = fields(m)
  local kind, id = d[1], d[2]
  local rk = rkey(kind, id)
  local cur = redis.call('HMGET', rk, 'm', 'g', 'u', 'uc')
  if cur[1] == m then
    -- The record itself, expired by the store's clock before Redis's TTL removed it.
    drop(rk)
  else
    -- Redis already dropped the record: remove the index entries it left, except those a
    -- record put again under the same id uses.
    local g, u, uc = opt(d[3]), opt(d[4]), opt(d[5])
    if g and cur[2] ~= g then redis.call('SREM', gkey(g), rk) end
    if u and cur[3] ~= u then redis.call('SREM', ukey(kind, u), id) end
    if uc and cur[4] ~= uc then redis.call('SREM', ckey(kind, uc), id) end
    if redis.call('EXISTS', rk) == 0 then redis.call('ZREM', kkey(kind), id) end
    redis.call('ZREM', X, m)
  end
end
return #members
`,
  },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Client = Redis | Cluster;
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

  const recordKey = (kind: string, id: string): string => `${prefix}r:${encodeKind(kind)}:${id}`;

  // Small scripts, so Redis (single-threaded) never stalls other replicas' requests for long;
  // a backlog larger than one sweep's share is worked off over several ticks.
  const sweepBatches = async (): Promise<void> => {
    const at = String(nowSeconds());
    for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
      const handled = Number(await script('gatehouseSweep', `${prefix}x`, prefix, at, SWEEP_BATCH));
      if (handled < SWEEP_BATCH) break;
    }
  };
  let sweeping = false;
  const sweepQuietly = (): void => {
    // One sweep at a time per store; a failed one is harmless (the next tick retries).
    if (sweeping) return;
    sweeping = true;
    sweepBatches().catch(() => undefined).finally(() => { sweeping = false; });
  };
  const interval = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  // unref'd so an idle store never keeps the process alive on its own.
  const timer = interval > 0 ? setInterval(sweepQuietly, interval).unref() : undefined;

  return {
    engine: 'redis',

    async put(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<void> {
      const json = JSON.stringify(value);
      const nowMs = now();
      const expiresAt = expiryFor(putOptions.ttlSeconds, epochSeconds(nowMs));
      const ttlMs = expiresAt === undefined ? '' : expiresAt * 1000 - nowMs + NATIVE_TTL_SLACK_MS;
      const grant = optional(putOptions.grantId);
      const uid = optional(putOptions.uid);
      const userCode = optional(putOptions.userCode);
      const member = netstrings([encodeKind(kind), id, grant, uid, userCode]);
      await script('gatehousePut', recordKey(kind, id), prefix, encodeKind(kind), id, json,
        expiresAt ?? '', ttlMs, grant, uid, userCode, member);
    },

    async get(kind: string, id: string): Promise<StoredRecord | undefined> {
      const [value, expiresAt, consumedAt] = await call(() => client.hmget(recordKey(kind, id), 'v', 'e', 'c'));
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
      return Number(await script('gatehouseConsume', recordKey(kind, id), prefix, nowSeconds(), at)) === 1;
    },

    async delete(kind: string, id: string): Promise<void> {
      await script('gatehouseDelete', recordKey(kind, id), prefix);
    },

    async take(kind: string, id: string): Promise<StoredRecord | undefined> {
      const row = (await script('gatehouseTake', recordKey(kind, id), prefix)) as Nullable[] | null;
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
      clearInterval(timer);
      await events.close();
      // QUIT lets pending replies arrive; it cannot hang the shutdown of a gateway whose
      // Redis is gone, because commands fail at once while disconnected.
      await client.quit().catch(() => undefined);
      client.disconnect();
    },
  };
}

function createClient(options: RedisStoreOptions): Client {
  const tls = tlsOptions(options.tls);
  const common: RedisOptions = {
    lazyConnect: true,
    // Fail fast while disconnected instead of queueing requests until Redis is back.
    enableOfflineQueue: false,
    // In-flight commands fail when the connection drops, and are not re-sent after it returns.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
    connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
    ...(options.password !== undefined ? { password: options.password } : {}),
    ...(tls ? { tls } : {}),
  };
  const modes = [options.url, options.sentinel, options.cluster].filter((mode) => mode !== undefined);
  if (modes.length !== 1) throw new Error('redis store: give exactly one of url, sentinel or cluster');
  if (options.cluster) {
    const { retryStrategy: _ignored, enableOfflineQueue: _alsoIgnored, ...perNode } = common;
    const clusterOptions: ClusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
      redisOptions: perNode,
    };
    return new Cluster(options.cluster.nodes.map(parseNode), clusterOptions);
  }
  if (options.sentinel) {
    return new Redis({
      ...common,
      name: options.sentinel.name,
      sentinels: options.sentinel.nodes.map(parseNode),
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    });
  }
  return new Redis(options.url as string, common);
}

function tlsOptions(tls: RedisStoreOptions['tls']): ConnectionOptions | undefined {
  if (tls === undefined || tls === false) return undefined;
  if (tls === true) return {};
  return {
    ...(tls.caFile !== undefined ? { ca: readFileSync(tls.caFile) } : {}),
    ...(tls.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
  };
}

/** `host:port` or `[v6]:port`. */
export function parseNode(node: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(node);
  if (!match) throw new Error(`redis node ${JSON.stringify(node)} must be host:port`);
  return { host: (match[1] ?? match[2]) as string, port: Number(match[3]) };
}

/** Wraps the prefix in braces: a Cluster hashes only the tag, so every key shares one slot. */
function hashTagged(keyPrefix: string): string {
  if (keyPrefix === '') throw new Error('redis store: key_prefix must not be empty');
  return `{${keyPrefix}}`;
}

function encodeKind(kind: string): string {
  return encodeURIComponent(kind);
}

/** An optional script argument: '' when absent, '=' + value when present (even when empty). */
function optional(value: string | undefined): string {
  return value === undefined ? '' : `=${value}`;
}

function netstrings(parts: string[]): string {
  return parts.map((part) => `${Buffer.byteLength(part, 'utf8')}:${part}`).join('');
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

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Pub/sub on a second connection (a subscribed connection can run nothing else), opened on the
 * first subscription. ioredis resubscribes by itself after a reconnect.
 */
function createRedisEvents(client: Client, prefix: string, isClosed: () => boolean) {
  const handlers = new Map<string, Set<(message: string) => void>>();
  let subscriber: Client | undefined;
  let connecting: Promise<Client> | undefined;
  const channelName = (channel: string): string => `${prefix}ev:${channel}`;

  function assertOpen(): void {
    if (isClosed()) throw new StoreUnavailableError('redis store is closed');
  }

  async function connectSubscriber(): Promise<Client> {
    const connection: Client = client instanceof Cluster ? client.duplicate() : client.duplicate();
    connection.on('error', () => undefined);
    connection.on('message', (channel: string, message: string) => {
      for (const handler of handlers.get(channel) ?? []) {
        try {
          handler(message);
        } catch {
          // Swallowed, as the Store spec says: one bad handler must not stop the others.
        }
      }
    });
    try {
      await connection.connect();
    } catch (error) {
      connection.disconnect();
      throw error;
    }
    return connection;
  }

  return {
    async subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
      assertOpen();
      checkChannel(channel);
      const name = channelName(channel);
      try {
        connecting ??= connectSubscriber();
        subscriber = await connecting;
      } catch (error) {
        connecting = undefined;
        throw new StoreUnavailableError(`redis store unavailable: ${messageOf(error)}`, { cause: error });
      }
      let set = handlers.get(name);
      if (!set) handlers.set(name, (set = new Set()));
      // A fresh function per call, so one handler subscribed twice is two subscriptions.
      const handler = (message: string): void => onMessage(message);
      set.add(handler);
      try {
        if (set.size === 1) await subscriber.subscribe(name);
      } catch (error) {
        set.delete(handler);
        if (set.size === 0) handlers.delete(name);
        throw new StoreUnavailableError(`redis store unavailable: ${messageOf(error)}`, { cause: error });
      }
      return async () => {
        if (!set.delete(handler) || set.size > 0) return;
        handlers.delete(name);
        // Best effort: while disconnected this fails, and a message arriving later for a
        // channel without handlers is ignored.
        await subscriber?.unsubscribe(name).catch(() => undefined);
      };
    },

    async publish(channel: string, message: string): Promise<void> {
      assertOpen();
      checkChannel(channel);
      checkMessage(message);
      try {
        await client.publish(channelName(channel), message);
      } catch (error) {
        throw new StoreUnavailableError(`redis store unavailable: ${messageOf(error)}`, { cause: error });
      }
    },

    async close(): Promise<void> {
      handlers.clear();
      const connection = subscriber ?? (await connecting?.catch(() => undefined));
      connection?.disconnect();
      subscriber = undefined;
      connecting = undefined;
    },
  };
}
