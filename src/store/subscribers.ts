/**
 * The subscribers of an engine's events, by channel: shared by the engines whose events cross
 * processes (Redis pub/sub, Postgres LISTEN/NOTIFY). Handlers' failures are swallowed, as the
 * Store spec says: one bad handler must not stop the others.
 */

export interface Subscription {
  onMessage: (message: string) => void;
  onReconnect: (() => void) | undefined;
}

export function createSubscribers() {
  const handlers = new Map<string, Set<Subscription>>();
  return {
    /**
     * Adds a subscription (a fresh object per call, so one handler subscribed twice is two).
     * `first`: the channel had none before; `remove()` answers whether it was the last.
     */
    add(channel: string, subscription: Subscription): { first: boolean; remove(): boolean } {
      let set = handlers.get(channel);
      if (!set) handlers.set(channel, (set = new Set()));
      set.add(subscription);
      const subscribers = set;
      return {
        first: subscribers.size === 1,
        remove() {
          if (!subscribers.delete(subscription) || subscribers.size > 0) return false;
          handlers.delete(channel);
          return true;
        },
      };
    },

    deliver(channel: string, message: string): void {
      for (const { onMessage } of handlers.get(channel) ?? []) {
        try {
          onMessage(message);
        } catch {
          // Swallowed (see above).
        }
      }
    },

    /** Tells every subscriber that messages published meanwhile may be lost. */
    reconnected(): void {
      for (const set of handlers.values()) {
        for (const { onReconnect } of set) {
          if (!onReconnect) continue;
          setImmediate(() => {
            try {
              onReconnect();
            } catch {
              // Swallowed (see above).
            }
          });
        }
      }
    },

    channels: () => handlers.keys(),
    get size() {
      return handlers.size;
    },
    clear: () => handlers.clear(),
  };
}
