/**
 * The Redis engine's events (Store `subscribe`/`publish`): pub/sub on a second connection (a
 * subscribed connection can run nothing else), opened on the first subscription. ioredis
 * resubscribes by itself after a reconnect; subscribers' `onReconnect` hears of it, because
 * whatever was published in between is lost.
 */
import { Cluster } from 'ioredis';
import { checkChannel, checkMessage, StoreUnavailableError, type SubscribeOptions } from './store.ts';
import { messageOf, type Client } from './redis-connection.ts';
import { createSubscribers } from './subscribers.ts';

export function createRedisEvents(client: Client, prefix: string, isClosed: () => boolean) {
  const subscribers = createSubscribers();
  let subscriber: Client | undefined;
  let connecting: Promise<Client> | undefined;
  const channelName = (channel: string): string => `${prefix}ev:${channel}`;

  function assertOpen(): void {
    if (isClosed()) throw new StoreUnavailableError('redis store is closed');
  }

  async function connectSubscriber(): Promise<Client> {
    const connection: Client = client instanceof Cluster ? client.duplicate() : client.duplicate();
    let connectedBefore = false;
    connection.on('error', () => undefined);
    connection.on('ready', () => {
      // The first 'ready' is the initial connection; every later one follows an outage.
      if (connectedBefore) subscribers.reconnected();
      connectedBefore = true;
    });
    connection.on('message', (channel: string, message: string) => subscribers.deliver(channel, message));
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
      const added = subscribers.add(name, { onMessage, onReconnect: options.onReconnect });
      try {
        if (added.first) await subscriber.subscribe(name);
      } catch (error) {
        added.remove();
        throw new StoreUnavailableError(`redis store unavailable: ${messageOf(error)}`, { cause: error });
      }
      return async () => {
        if (!added.remove()) return;
        // Best effort: while disconnected this fails, and a message arriving later for a
        // channel without subscribers is ignored.
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
      subscribers.clear();
      const connection = subscriber ?? (await connecting?.catch(() => undefined));
      connection?.disconnect();
      subscriber = undefined;
      connecting = undefined;
    },
  };
}
