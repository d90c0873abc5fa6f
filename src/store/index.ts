/**
 * Entry point of the store: the Store contract plus `createStore`, which picks an engine by
 * the `type` of its configuration. New engines (redis, postgres) add a config variant and a
 * registry entry; nothing else changes for callers.
 */
import { createMemoryStore } from './memory-store.ts';
import { createSqliteStore } from './sqlite-store.ts';
import type { Store } from './store.ts';

export {
  epochSeconds,
  StoreUnavailableError,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
} from './store.ts';
export { createMemoryStore, type MemoryStoreOptions } from './memory-store.ts';
export { createSqliteStore, type SqliteStoreOptions } from './sqlite-store.ts';
// Sealing lives beside the store because callers seal secrets before putting them.
export { createSealer, decodeEncryptionKey, deriveSecret, type Sealer } from './sealed.ts';

export type StoreConfig = { type: 'memory' } | { type: 'sqlite'; path: string };

type StoreType = StoreConfig['type'];

/** One factory per engine, each typed against its own config variant. */
type Registry = {
  [T in StoreType]: (config: Extract<StoreConfig, { type: T }>) => Store | Promise<Store>;
};

const engines: Registry = {
  memory: () => createMemoryStore(),
  sqlite: (config) => createSqliteStore({ path: config.path }),
};

/**
 * Opens the store the configuration names. Async although today's engines open synchronously,
 * because network engines must connect and migrate before they can answer.
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
