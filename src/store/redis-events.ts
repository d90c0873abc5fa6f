/**
 * The Redis engine's events (Store `subscribe`/`publish`): pub/sub on a second connection (a
 * subscribed connection can run nothing else), opened on the first subscription. ioredis
 * resubscribes by itself after a reconnect; subscribers' `onReconnect` hears of it, because
 * whatever was published in between is lost.
 */
import { Cluster } from 'ioredis';
import { checkChannel, checkMessage, StoreUnavailableError, type SubscribeOptions } from './store.ts';
import { messageOf, type Client } from './redis-connection.ts';

interface Subscription {
  onMessage: (message: string) => void;
  onReconnect: (() => void) | undefined;
}

export function createRedisEvents(client: Client, prefix: string, isClosed: () => boolean) {
  const handlers = new Map<string, Set<Subscription>>();
  let subscriber: Client | undefined;
  let connecting: Promise<Client> | undefined;
  const channelName = (channel: string): string => `${prefix}ev:${channel}`;

  function assertOpen(): void {
    if (isClosed()) throw new StoreUnavailableError('redis store is closed');
  }

  function reconnected(): void {
    for (const set of handlers.values()) {
      for (const { onReconnect } of set) {
        if (!onReconnect) continue;
        setImmediate(() => {
          try {
            onReconnect();
          } catch {
            // Swallowed, as the Store spec says.
          }
        });
      }
    }
  }

  async function connectSubscriber(): Promise<Client> {
    const connection: Client = client instanceof Cluster ? client.duplicate() : client.duplicate();
    let connectedBefore = false;
    connection.on('error', () => undefined);
    connection.on('ready', () => {
      // The first 'ready' is the initial connection; every later one follows an outage.
      if (connectedBefore) reconnected();
      connectedBefore = true;
    });
    connection.on('message', (channel: string, message: string) => {
      for (const { onMessage } of handlers.get(channel) ?? []) {
        try {
          onMessage(message);
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
    async subscribe(channel: string, onMessage: (message: string) => void, options: SubscribeOptions = {}): Promise<() => Promise<void>> {
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
      // A fresh object per call, so one handler subscribed twice is two subscriptions.
      const subscription: Subscription = { onMessage, onReconnect: options.onReconnect };
      set.add(subscription);
      try {
        if (set.size === 1) await subscriber.subscribe(name);
      } catch (error) {
        set.delete(subscription);
        if (set.size === 0) handlers.delete(name);
        throw new StoreUnavailableError(`redis store unavailable: ${messageOf(error)}`, { cause: error });
      }
      return async () => {
        if (!set.delete(subscription) || set.size > 0) return;
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
