/**
 * Entry point of the store: the Store contract plus `createStore`, which picks an engine by
 * the `type` of its configuration. A new engine adds a config variant and a registry entry;
 * nothing else changes for callers.
 */
import { createMemoryStore } from './memory-store.ts';
import type { PostgresStoreConfig, PostgresStoreOptions } from './postgres-store.ts';
import type { RedisStoreConfig, RedisStoreOptions } from './redis-store.ts';
import { createSqliteStore } from './sqlite-store.ts';
import type { Store } from './store.ts';

export {
  epochSeconds,
  StoreUnavailableError,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
  type SubscribeOptions,
} from './store.ts';
export { createMemoryStore, type MemoryStoreOptions } from './memory-store.ts';
export { createSqliteStore, type SqliteStoreOptions } from './sqlite-store.ts';
export type { RedisStoreConfig, RedisStoreOptions } from './redis-store.ts';
export type { PostgresStoreConfig, PostgresStoreOptions } from './postgres-store.ts';

// The Redis and Postgres engines (and ioredis, pg) are loaded when one is made, not when the
// gateway starts on SQLite or memory: ~60 ms of start-up (docs/performance.md).

/** A Redis store (redis-store.ts). */
export async function createRedisStore(options: RedisStoreOptions): Promise<Store> {
  return (await import('./redis-store.ts')).createRedisStore(options);
}

/** A Postgres store (postgres-store.ts). */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  return (await import('./postgres-store.ts')).createPostgresStore(options);
}
export { REVOCATIONS_CHANNEL, SIGNING_KEYS_CHANNEL } from './channels.ts';
// Sealing lives beside the store because callers seal secrets before putting them.
export { createSealer, decodeEncryptionKey, deriveSecret, type Sealer } from './sealed.ts';

export type StoreConfig = { type: 'memory' } | { type: 'sqlite'; path: string } | RedisStoreConfig | PostgresStoreConfig;

type StoreType = StoreConfig['type'];

/** One factory per engine, each typed against its own config variant. */
type Registry = {
  [T in StoreType]: (config: Extract<StoreConfig, { type: T }>) => Store | Promise<Store>;
};

const engines: Registry = {
  memory: () => createMemoryStore(),
  sqlite: (config) => createSqliteStore({ path: config.path }),
  redis: (config) => createRedisStore({
    ...(config.url !== undefined ? { url: config.url } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(config.key_prefix !== undefined ? { keyPrefix: config.key_prefix } : {}),
    ...(config.tls !== undefined ? { tls: tlsOptions(config.tls) } : {}),
    ...(config.sentinel !== undefined ? { sentinel: config.sentinel } : {}),
    ...(config.cluster !== undefined ? { cluster: config.cluster } : {}),
  }),
  postgres: (config) => createPostgresStore({
    url: config.url,
    ...(config.pool_size !== undefined ? { poolSize: config.pool_size } : {}),
    ...(config.schema !== undefined ? { schema: config.schema } : {}),
    ...(config.ssl !== undefined ? { ssl: tlsOptions(config.ssl) } : {}),
  }),
};

/** TLS settings as the engines take them, from the configuration's snake_case form. */
function tlsOptions(tls: boolean | { ca_file?: string; reject_unauthorized?: boolean }) {
  if (typeof tls === 'boolean') return tls;
  return {
    ...(tls.ca_file !== undefined ? { caFile: tls.ca_file } : {}),
    ...(tls.reject_unauthorized !== undefined ? { rejectUnauthorized: tls.reject_unauthorized } : {}),
  };
}

/**
 * Opens the store the configuration names. Network engines (redis, postgres) connect, and
 * postgres migrates its schema, before this resolves; an unreachable server rejects with
 * StoreUnavailableError.
 */
export async function createStore(config: StoreConfig): Promise<Store> {
  // Configs come from YAML at run time, so an unknown type must fail with a clear message.
  if (!Object.hasOwn(engines, config.type)) {
    throw new Error(`unknown store type ${JSON.stringify(config.type)}`);
  }
  // The registry's mapped type guarantees the factory matches the variant; TypeScript cannot
  // correlate the two through the union on its own.
  const factory = engines[config.type] as (config: StoreConfig) => Store | Promise<Store>;
  return factory(config);
}
