/**
 * In-process events for the engines that have no server to carry them (memory, SQLite): the
 * Store's `subscribe`/`publish` on an EventEmitter. Several stores may share one bus (SQLite
 * stores opened on one file in one process); other processes never see these events.
 */
import { EventEmitter } from 'node:events';
import { checkChannel, checkMessage, type Store } from './store.ts';

export type LocalEvents = Required<Pick<Store, 'subscribe' | 'publish'>> & {
  /** Drops every subscription made through this store. */
  close(): void;
};

/** Buses shared by key (a database file), counted so the last store to close removes its bus. */
const shared = new Map<string, { bus: EventEmitter; users: number }>();

/** A bus of its own when `key` is undefined, else the one shared by every store with that key. */
export function createLocalEvents(assertOpen: () => void, key?: string): LocalEvents {
  let entry = key === undefined ? undefined : shared.get(key);
  if (key !== undefined && !entry) shared.set(key, (entry = { bus: newBus(), users: 0 }));
  if (entry) entry.users++;
  const bus = entry?.bus ?? newBus();
  const mine = new Set<{ channel: string; listener: (message: string) => void }>();
  let closed = false;

  return {
    async subscribe(channel, onMessage) {
      assertOpen();
      checkChannel(channel);
      const subscription = {
        channel,
        // setImmediate: delivery is asynchronous on every engine, so callers cannot come to
        // depend on a handler having run when publish resolves.
        listener: (message: string) => setImmediate(() => {
          try {
            onMessage(message);
          } catch {
            // Swallowed, as the spec says: one bad handler must not stop the others.
          }
        }),
      };
      bus.on(channel, subscription.listener);
      mine.add(subscription);
      return async () => {
        bus.off(channel, subscription.listener);
        mine.delete(subscription);
      };
    },

    async publish(channel, message) {
      assertOpen();
      checkChannel(channel);
      checkMessage(message);
      bus.emit(channel, message);
    },

    close() {
      if (closed) return;
      closed = true;
      for (const { channel, listener } of mine) bus.off(channel, listener);
      mine.clear();
      if (entry && key !== undefined && --entry.users === 0) shared.delete(key);
    },
  };
}

function newBus(): EventEmitter {
  // Every replica-level cache subscribes once per channel, but tests open many stores on one
  // file: no listener limit warning.
  return new EventEmitter().setMaxListeners(0);
}
