/**
 * A Store that reports how long each call took, by operation name, and whether it failed
 * (for `gatehouse_store_operation_seconds` and `gatehouse_store_errors_total`). Everything
 * else, results and errors included, is the wrapped store's. The optional event methods are
 * present exactly when the wrapped store has them; `subscribe` and `close` are not timed (they
 * are neither frequent nor on a request's way).
 */
import type { Store } from './store.ts';

export type StoreObserver = (operation: string, seconds: number, ok: boolean) => void;

export function timedStore(store: Store, observe: StoreObserver): Store {
  const timed = <T>(operation: string, call: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (error) {
      observe(operation, (performance.now() - started) / 1000, false);
      throw error;
    }
    return pending.then(
      (result) => {
        observe(operation, (performance.now() - started) / 1000, true);
        return result;
      },
      (error: unknown) => {
        observe(operation, (performance.now() - started) / 1000, false);
        throw error;
      },
    );
  };
  const timedStore: Store = {
    engine: store.engine,
    put: (kind, id, value, options) => timed('put', () => store.put(kind, id, value, options)),
    create: (kind, id, value, options) => timed('create', () => store.create(kind, id, value, options)),
    get: (kind, id) => timed('get', () => store.get(kind, id)),
    findByIndex: (kind, index, key) => timed('find_by_index', () => store.findByIndex(kind, index, key)),
    consume: (kind, id, at) => timed('consume', () => store.consume(kind, id, at)),
    delete: (kind, id) => timed('delete', () => store.delete(kind, id)),
    take: (kind, id) => timed('take', () => store.take(kind, id)),
    deleteByGrant: (grantId) => timed('delete_by_grant', () => store.deleteByGrant(grantId)),
    list: (kind, idPrefix, limit) => timed('list', () => store.list(kind, idPrefix, limit)),
    increment: (key, windowSeconds) => timed('increment', () => store.increment(key, windowSeconds)),
    sweep: () => timed('sweep', () => store.sweep()),
    ping: () => timed('ping', () => store.ping()),
    close: () => store.close(),
  };
  if (store.subscribe) timedStore.subscribe = store.subscribe.bind(store);
  if (store.publish) {
    const publish = store.publish.bind(store);
    timedStore.publish = (channel, message) => timed('publish', () => publish(channel, message));
  }
  return timedStore;
}
