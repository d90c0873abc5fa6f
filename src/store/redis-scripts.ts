/**
 * The Redis engine's key layout and its Lua scripts.
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
 *   P ev:<channel>         pub/sub channel of the Store's events
 *
 * Kinds are URI-encoded in key names, so the first ":" after a kind always ends it.
 *
 * Every operation that reads and writes is one Lua script (EVALSHA through defineCommand), so
 * put, create, consume, take, increment and deleteByGrant are atomic for every replica at once.
 */

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
-- Stores a record with its index entries (the put and create scripts' ARGV from 2 on: kind,
-- id, value, expiresAt|'', ttlMs|'', grant, uid, userCode (opt args), member).
local function write(rk)
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
end
`;

/** Each script: how many of its arguments are keys, and its Lua. ARGV[1] is always the prefix. */
export const SCRIPTS = {
  // KEYS: record. ARGV: P, kind, id, value, expiresAt|'', ttlMs|'', grant, uid, userCode (opt), member.
  gatehousePut: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
write(KEYS[1])
return 1
`,
  },
  // KEYS: record. ARGV: as gatehousePut, then now. 1 when it created the record, 0 when a live
  // one was there (left untouched).
  gatehouseCreate: {
    numberOfKeys: 1,
    lua: PRELUDE + String.raw`
local e = redis.call('HGET', KEYS[1], 'e')
if redis.call('EXISTS', KEYS[1]) == 1 and (not e or tonumber(e) > tonumber(ARGV[11])) then return 0 end
write(KEYS[1])
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

export type ScriptName = keyof typeof SCRIPTS;

export function encodeKind(kind: string): string {
  return encodeURIComponent(kind);
}

/** The hash of record (kind, id) under the hash-tagged prefix. */
export function recordKey(prefix: string, kind: string, id: string): string {
  return `${prefix}r:${encodeKind(kind)}:${id}`;
}

/** An optional script argument: '' when absent, '=' + value when present (even when empty). */
export function optional(value: string | undefined): string {
  return value === undefined ? '' : `=${value}`;
}

/** The sweep's member for a record: kind, id, grant, uid and user code as netstrings. */
export function netstrings(parts: string[]): string {
  return parts.map((part) => `${Buffer.byteLength(part, 'utf8')}:${part}`).join('');
}
