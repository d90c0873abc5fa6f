/**
 * The Postgres engine's events (Store `subscribe`/`publish`): LISTEN/NOTIFY. Notifications
 * arrive only on the session that listens, so one dedicated connection (outside the pool)
 * listens to every subscribed channel; when it breaks, a new one is opened and listens again,
 * and subscribers' `onReconnect` hears of it (what was notified in between is lost). Channels
 * are `schema.channel`: NOTIFY is database-wide, and two deployments in one database must not
 * hear each other.
 */
import pg from 'pg';
import { createSubscribers } from './subscribers.ts';
import { checkChannel, checkMessage, StoreUnavailableError, type SubscribeOptions } from './store.ts';

/** How often the LISTEN connection proves it is alive; a dead one is replaced. */
const LISTENER_CHECK_MS = 10_000;
const MAX_RECONNECT_DELAY_MS = 1000;

type Query = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<pg.QueryResult<R>>;


export function createPostgresEvents(
  connection: pg.ClientConfig,
  schemaName: string,
  query: Query,
  isClosed: () => boolean,
  describe: (error: unknown) => string,
) {
  const subscribers = createSubscribers();
  let current: pg.Client | undefined;
  let ready: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let retryDelay = 100;
  /** Whether a listening connection was lost since the last one was opened. */
  let lostOne = false;
  const channelName = (channel: string): string => `${schemaName}.${channel}`;

  function unavailable(error: unknown): StoreUnavailableError {
    return error instanceof StoreUnavailableError
      ? error
      : new StoreUnavailableError(`postgres store unavailable: ${describe(error)}`, { cause: error });
  }

  function start(): Promise<void> {
    const client = new pg.Client(connection);
    current = client;
    client.on('error', () => lost(client));
    client.on('end', () => lost(client));
    client.on('notification', ({ channel, payload }) => subscribers.deliver(channel, payload ?? ''));
    const opening = (async () => {
      await client.connect();
      for (const name of subscribers.channels()) await client.query(`LISTEN ${pg.escapeIdentifier(name)}`);
      retryDelay = 100;
      if (lostOne) {
        lostOne = false;
        subscribers.reconnected();
      }
    })();
    ready = opening;
    opening.catch(() => lost(client));
    return opening;
  }

  function lost(client: pg.Client): void {
    if (current !== client) return;
    current = undefined;
    ready = undefined;
    lostOne = true;
    client.end().catch(() => undefined);
    if (!isClosed() && subscribers.size > 0) reconnectLater();
  }

  function reconnectLater(): void {
    if (retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      if (isClosed() || subscribers.size === 0 || current) return;
      start().catch(() => undefined);
    }, retryDelay).unref();
    retryDelay = Math.min(retryDelay * 2, MAX_RECONNECT_DELAY_MS);
  }

  // A connection the network silently dropped looks alive until it is used: use it now and then.
  const check = setInterval(() => {
    const client = current;
    if (!client || !ready) return;
    ready.then(() => client.query('SELECT 1')).catch(() => lost(client));
  }, LISTENER_CHECK_MS).unref();

  return {
    async subscribe(channel: string, onMessage: (message: string) => void, options: SubscribeOptions = {}): Promise<() => Promise<void>> {
      if (isClosed()) throw new StoreUnavailableError('postgres store is closed');
      checkChannel(channel);
      const name = channelName(channel);
      const added = subscribers.add(name, { onMessage, onReconnect: options.onReconnect });
      try {
        await (ready ?? start());
        // LISTEN is idempotent; a connection opened meanwhile already listens to it.
        await current?.query(`LISTEN ${pg.escapeIdentifier(name)}`);
      } catch (error) {
        added.remove();
        throw unavailable(error);
      }
      return async () => {
        if (!added.remove()) return;
        // Best effort: a notification arriving later for a channel without subscribers is ignored.
        await current?.query(`UNLISTEN ${pg.escapeIdentifier(name)}`).catch(() => undefined);
      };
    },

    async publish(channel: string, message: string): Promise<void> {
      checkChannel(channel);
      checkMessage(message);
      await query('SELECT pg_notify($1, $2)', [channelName(channel), message]);
    },

    async close(): Promise<void> {
      clearInterval(check);
      clearTimeout(retry);
      subscribers.clear();
      const client = current;
      current = undefined;
      ready = undefined;
      await client?.end().catch(() => undefined);
    },
  };
}
