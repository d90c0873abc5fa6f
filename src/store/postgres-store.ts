/**
 * The Postgres engine: every gateway replica on one database, in its own schema.
 *
 * Each operation is one statement, so Postgres's row locks make it atomic across replicas:
 * consume is an UPDATE guarded by `consumed_at IS NULL` (a second, concurrent UPDATE waits for
 * the first and then re-checks the guard on the updated row, under READ COMMITTED), take is
 * DELETE … RETURNING, increment is INSERT … ON CONFLICT DO UPDATE … RETURNING, which Postgres
 * guarantees to either insert or update under concurrency.
 *
 * Values are kept in a `json` column, not `jsonb`: json keeps the text exactly as given (key
 * order, duplicate-free as JSON.stringify writes it), while jsonb reorders keys and refuses
 * strings with U+0000 or a lone surrogate, which JSON.stringify can produce and the Store
 * contract promises to round-trip.
 *
 * Ids are compared COLLATE "C" (byte order of UTF-8, i.e. code point order), the order the
 * contract's `list` demands whatever the database's locale.
 *
 * The schema is versioned in `schema_migrations`; migrations run at start under an advisory
 * lock, so replicas starting together migrate once and the others wait. A periodic sweep
 * deletes expired rows in small batches that skip rows requests have locked.
 *
 * Failures: connecting gives up after `connectTimeoutMs`, statements after
 * `statementTimeoutMs` (server side) and a reply that never comes after a little more (client
 * side: a dead network is not noticed by the server). Broken connections leave the pool and
 * new ones are opened on demand, so the store works again once the database is back.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
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

export interface PostgresTlsOptions {
  /** PEM file with the CA that signed the server's certificate. */
  caFile?: string;
  /** false accepts any server certificate: for tests only. Default true. */
  rejectUnauthorized?: boolean;
}

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// connection URL. */
  url: string;
  /** Most connections this store opens. Default 10. */
  poolSize?: number;
  /** The schema holding the tables, created if missing. Default `gatehouse`. */
  schema?: string;
  /** TLS to the server (the URL's sslmode applies otherwise). */
  ssl?: boolean | PostgresTlsOptions;
  /** How often expired rows are deleted; 0 or less disables the timer. Default 60 s. */
  sweepIntervalMs?: number;
  /** Opening a connection gives up after this long. Default 3000 ms. */
  connectTimeoutMs?: number;
  /** A statement is cancelled after this long. Default 5000 ms. */
  statementTimeoutMs?: number;
  /** Clock in epoch milliseconds; injectable so tests can move time. */
  now?: () => number;
}

/** `store` as written in the configuration file. */
export interface PostgresStoreConfig {
  type: 'postgres';
  url: string;
  pool_size?: number;
  schema?: string;
  ssl?: boolean | { ca_file?: string; reject_unauthorized?: boolean };
}

export const DEFAULT_SCHEMA = 'gatehouse';
export const DEFAULT_POOL_SIZE = 10;
/** Lower-case identifiers only, short enough that `schema.channel` fits a 63-byte LISTEN channel. */
export const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,29}$/;
const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 3000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 5000;
/** Client-side wait for a reply beyond the statement timeout, for when the network is dead. */
const REPLY_GRACE_MS = 1000;
const DEFAULT_LIST_LIMIT = 1000;
const SWEEP_BATCH = 1000;
/** The most batches one sweep deletes, so a backlog is worked off over several ticks. */
const SWEEP_MAX_BATCHES = 100;
/** How often the LISTEN connection proves it is alive; a dead one is replaced. */
const LISTENER_CHECK_MS = 10_000;
const MAX_RECONNECT_DELAY_MS = 1000;

/**
 * Schema steps; step i takes the schema from version i to i + 1 (recorded in
 * schema_migrations). Append new steps, never edit shipped ones: databases in the field have
 * already run them. `s` is the quoted schema name.
 */
const MIGRATIONS: ReadonlyArray<(s: string) => string> = [
  (s) => `
    CREATE TABLE ${s}.records (
      kind text NOT NULL,
      id text COLLATE "C" NOT NULL,
      value json NOT NULL,
      expires_at bigint,
      consumed_at bigint,
      grant_id text,
      uid text,
      user_code text,
      PRIMARY KEY (kind, id)
    );
    CREATE INDEX records_grant_id ON ${s}.records (grant_id) WHERE grant_id IS NOT NULL;
    CREATE INDEX records_uid ON ${s}.records (kind, uid) WHERE uid IS NOT NULL;
    CREATE INDEX records_user_code ON ${s}.records (kind, user_code) WHERE user_code IS NOT NULL;
    CREATE INDEX records_expires_at ON ${s}.records (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE ${s}.counters (
      key text PRIMARY KEY,
      value bigint NOT NULL,
      expires_at bigint NOT NULL
    );
    CREATE INDEX counters_expires_at ON ${s}.counters (expires_at);`,
];

function statements(s: string) {
  const live = '(expires_at IS NULL OR expires_at > $now)';
  const columns = 'value, expires_at, consumed_at';
  const sql = {
    put: `INSERT INTO ${s}.records (kind, id, value, expires_at, consumed_at, grant_id, uid, user_code)
          VALUES ($1, $2, $3::json, $4, NULL, $5, $6, $7)
          ON CONFLICT (kind, id) DO UPDATE SET
            value = excluded.value, expires_at = excluded.expires_at, consumed_at = NULL,
            grant_id = excluded.grant_id, uid = excluded.uid, user_code = excluded.user_code`,
    get: `SELECT ${columns} FROM ${s}.records WHERE kind = $1 AND id = $2 AND ${live.replace('$now', '$3')}`,
    findByUid: `SELECT id, ${columns} FROM ${s}.records
                WHERE kind = $1 AND uid = $2 AND ${live.replace('$now', '$3')} ORDER BY id LIMIT 1`,
    findByUserCode: `SELECT id, ${columns} FROM ${s}.records
                     WHERE kind = $1 AND user_code = $2 AND ${live.replace('$now', '$3')} ORDER BY id LIMIT 1`,
    consume: `UPDATE ${s}.records SET consumed_at = $3
              WHERE kind = $1 AND id = $2 AND consumed_at IS NULL AND ${live.replace('$now', '$4')}`,
    delete: `DELETE FROM ${s}.records WHERE kind = $1 AND id = $2`,
    take: `DELETE FROM ${s}.records WHERE kind = $1 AND id = $2 RETURNING ${columns}`,
    deleteByGrant: `DELETE FROM ${s}.records WHERE grant_id = $1`,
    list: `SELECT id, ${columns} FROM ${s}.records
           WHERE kind = $1 AND id LIKE $2 AND ${live.replace('$now', '$3')} ORDER BY id LIMIT $4`,
    increment: `INSERT INTO ${s}.counters AS c (key, value, expires_at) VALUES ($1, 1, $2::bigint + $3::bigint)
                ON CONFLICT (key) DO UPDATE SET
                  value = CASE WHEN c.expires_at <= $2::bigint THEN 1 ELSE c.value + 1 END,
                  expires_at = CASE WHEN c.expires_at <= $2::bigint THEN $2::bigint + $3::bigint ELSE c.expires_at END
                RETURNING value`,
    // Bounded batches that skip rows a request holds, so the sweep never makes one wait.
    sweepRecords: `DELETE FROM ${s}.records WHERE ctid IN (
                     SELECT ctid FROM ${s}.records WHERE expires_at <= $1
                     LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED)`,
    sweepCounters: `DELETE FROM ${s}.counters WHERE ctid IN (
                      SELECT ctid FROM ${s}.counters WHERE expires_at <= $1
                      LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED)`,
    ping: 'SELECT 1',
  };
  return sql;
}

interface Row {
  id?: string;
  value: StoredValue;
  expires_at: string | null;
  consumed_at: string | null;
}

export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const now = options.now ?? Date.now;
  const nowSeconds = (): number => epochSeconds(now());
  const schemaName = options.schema ?? DEFAULT_SCHEMA;
  if (!SCHEMA_PATTERN.test(schemaName)) {
    throw new Error(`postgres store: schema must match ${SCHEMA_PATTERN}, got ${JSON.stringify(schemaName)}`);
  }
  const schema = pg.escapeIdentifier(schemaName);
  const statementTimeout = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const connection: pg.ClientConfig = {
    connectionString: options.url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepAlive: true,
    // Names the deployment in pg_stat_activity, so an operator (or a test) can tell whose
    // connections these are.
    application_name: `gatehouse (${schemaName})`,
    ...sslOption(options.ssl),
  };
  const timeouts = { statement_timeout: statementTimeout, query_timeout: statementTimeout + REPLY_GRACE_MS };

  await guard(() => migrate(connection, schemaName));

  const pool = new pg.Pool({ ...connection, ...timeouts, max: options.poolSize ?? DEFAULT_POOL_SIZE, allowExitOnIdle: true });
  // An idle connection the server dropped is removed from the pool and reported here; without
  // a listener the process would crash. The next query opens a fresh connection.
  pool.on('error', () => undefined);
  const sql = statements(schema);
  let closed = false;

  async function query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    if (closed) throw new StoreUnavailableError('postgres store is closed');
    return guard(() => pool.query<R>(text, values));
  }

  const sweep = async (): Promise<number> => {
    const at = nowSeconds();
    let removed = 0;
    for (const statement of [sql.sweepRecords, sql.sweepCounters]) {
      for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
        const { rowCount } = await query(statement, [at]);
        removed += rowCount ?? 0;
        if ((rowCount ?? 0) < SWEEP_BATCH) break;
      }
    }
    return removed;
  };
  let sweeping = false;
  const sweepQuietly = (): void => {
    // One sweep at a time per store; a failed one is harmless (reads enforce expiry anyway).
    if (sweeping) return;
    sweeping = true;
    sweep().catch(() => undefined).finally(() => { sweeping = false; });
  };
  const interval = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  // unref'd so an idle store never keeps the process alive on its own.
  const timer = interval > 0 ? setInterval(sweepQuietly, interval).unref() : undefined;

  const events = createPostgresEvents({ ...connection, query_timeout: statementTimeout + REPLY_GRACE_MS }, schemaName, query, () => closed);

  return {
    engine: 'postgres',

    async put(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<void> {
      const json = JSON.stringify(value);
      const expiresAt = expiryFor(putOptions.ttlSeconds, nowSeconds()) ?? null;
      const { grantId = null, uid = null, userCode = null } = putOptions;
      await query(sql.put, [kind, id, json, expiresAt, grantId, uid, userCode]);
    },

    async get(kind: string, id: string): Promise<StoredRecord | undefined> {
      const { rows } = await query<Row>(sql.get, [kind, id, nowSeconds()]);
      return rows[0] && toRecord(rows[0]);
    },

    async findByIndex(kind: string, index: 'uid' | 'userCode', key: string) {
      const statement = index === 'uid' ? sql.findByUid : sql.findByUserCode;
      const { rows } = await query<Row>(statement, [kind, key, nowSeconds()]);
      const row = rows[0];
      return row && { id: String(row.id), ...toRecord(row) };
    },

    async consume(kind: string, id: string, at: number): Promise<boolean> {
      const { rowCount } = await query(sql.consume, [kind, id, at, nowSeconds()]);
      return rowCount === 1;
    },

    async delete(kind: string, id: string): Promise<void> {
      await query(sql.delete, [kind, id]);
    },

    async take(kind: string, id: string): Promise<StoredRecord | undefined> {
      const { rows } = await query<Row>(sql.take, [kind, id]);
      const row = rows[0];
      // An expired row is removed all the same; it just is not handed out.
      if (!row || (row.expires_at !== null && Number(row.expires_at) <= nowSeconds())) return undefined;
      return toRecord(row);
    },

    async deleteByGrant(grantId: string): Promise<void> {
      await query(sql.deleteByGrant, [grantId]);
    },

    async list(kind: string, idPrefix: string, limit = DEFAULT_LIST_LIMIT) {
      const { rows } = await query<Row>(sql.list, [kind, `${escapeLike(idPrefix)}%`, nowSeconds(), limit]);
      return rows.map((row) => ({ id: String(row.id), ...toRecord(row) }));
    },

    async increment(key: string, windowSeconds: number): Promise<number> {
      const window = windowLength(windowSeconds);
      const { rows } = await query<{ value: string }>(sql.increment, [key, nowSeconds(), window]);
      return Number(rows[0]?.value);
    },

    sweep: () => sweep(),

    async ping(): Promise<void> {
      await query(sql.ping);
    },

    subscribe: events.subscribe,
    publish: events.publish,

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await events.close();
      await pool.end().catch(() => undefined);
    },
  };
}

/**
 * Brings the schema to the newest version. The advisory lock is held by this one session, so
 * replicas starting together run each step once; the lock ends with the session if it dies.
 */
async function migrate(connection: pg.ClientConfig, schemaName: string): Promise<void> {
  const s = pg.escapeIdentifier(schemaName);
  // A client of its own, without the pool's statement timeout: waiting for another replica's
  // migration is expected to take a while.
  const client = new pg.Client(connection);
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`gatehouse-migrations:${schemaName}`]);
    // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
    // schema exists, which a deployment with a pre-made schema may not grant.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schemaName]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (
      version integer PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number }>(`SELECT coalesce(max(version), 0) AS version FROM ${s}.schema_migrations`);
    const version = Number(rows[0]?.version ?? 0);
    if (version > MIGRATIONS.length) {
      throw new Error(`store schema ${schemaName} is at version ${version}, newer than this gateway supports (${MIGRATIONS.length})`);
    }
    for (let next = version + 1; next <= MIGRATIONS.length; next++) {
      await client.query('BEGIN');
      try {
        await client.query((MIGRATIONS[next - 1] as (s: string) => string)(s));
        await client.query(`INSERT INTO ${s}.schema_migrations (version) VALUES ($1)`, [next]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    }
  } finally {
    // Ending the session releases the advisory lock.
    await client.end().catch(() => undefined);
  }
}

/**
 * Runs a database call, turning connection and server failures into StoreUnavailableError so
 * the HTTP layer answers 503. Errors that mean the request or the gateway is wrong (bad data,
 * constraint, SQL or privilege errors: SQLSTATE classes 0A, 22, 23, 42) pass through.
 */
async function guard<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof StoreUnavailableError || !isUnavailable(error)) throw error;
    throw new StoreUnavailableError(`postgres store unavailable: ${messageOf(error)}`, { cause: error });
  }
}

function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return true;
  const code = (error as { code?: unknown }).code;
  const sqlState = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
  return sqlState === undefined || !['0A', '22', '23', '42'].includes(sqlState.slice(0, 2));
}

function sslOption(ssl: PostgresStoreOptions['ssl']): { ssl?: boolean | ConnectionOptions } {
  if (ssl === undefined) return {};
  if (typeof ssl === 'boolean') return { ssl };
  return {
    ssl: {
      ...(ssl.caFile !== undefined ? { ca: readFileSync(ssl.caFile) } : {}),
      ...(ssl.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
    },
  };
}

function toRecord(row: Row): StoredRecord {
  const record: StoredRecord = { value: row.value };
  if (row.consumed_at !== null) record.consumedAt = Number(row.consumed_at);
  if (row.expires_at !== null) record.expiresAt = Number(row.expires_at);
  return record;
}

/** LIKE with the default escape character: the prefix matches literally. */
function escapeLike(literal: string): string {
  return literal.replace(/[\\%_]/g, (char) => `\\${char}`);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message || String((error as { code?: unknown }).code ?? error.name) : String(error);
}

type Query = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<pg.QueryResult<R>>;

/**
 * LISTEN/NOTIFY. Notifications arrive only on the session that listens, so one dedicated
 * connection (outside the pool) listens to every subscribed channel; when it breaks, a new one
 * is opened and listens again. Channels are `schema.channel`: NOTIFY is database-wide, and two
 * deployments in one database must not hear each other.
 */
function createPostgresEvents(connection: pg.ClientConfig, schemaName: string, query: Query, isClosed: () => boolean) {
  const handlers = new Map<string, Set<(message: string) => void>>();
  let current: pg.Client | undefined;
  let ready: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let retryDelay = 100;
  const channelName = (channel: string): string => `${schemaName}.${channel}`;

  function unavailable(error: unknown): StoreUnavailableError {
    return error instanceof StoreUnavailableError
      ? error
      : new StoreUnavailableError(`postgres store unavailable: ${messageOf(error)}`, { cause: error });
  }

  function start(): Promise<void> {
    const client = new pg.Client(connection);
    current = client;
    client.on('error', () => lost(client));
    client.on('end', () => lost(client));
    client.on('notification', ({ channel, payload }) => {
      for (const handler of handlers.get(channel) ?? []) {
        try {
          handler(payload ?? '');
        } catch {
          // Swallowed, as the Store spec says: one bad handler must not stop the others.
        }
      }
    });
    const opening = (async () => {
      await client.connect();
      for (const name of handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(name)}`);
      retryDelay = 100;
    })();
    ready = opening;
    opening.catch(() => lost(client));
    return opening;
  }

  function lost(client: pg.Client): void {
    if (current !== client) return;
    current = undefined;
    ready = undefined;
    client.end().catch(() => undefined);
    if (!isClosed() && handlers.size > 0) reconnectLater();
  }

  function reconnectLater(): void {
    if (retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      if (isClosed() || handlers.size === 0 || current) return;
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
    async subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
      if (isClosed()) throw new StoreUnavailableError('postgres store is closed');
      checkChannel(channel);
      const name = channelName(channel);
      let set = handlers.get(name);
      if (!set) handlers.set(name, (set = new Set()));
      // A fresh function per call, so one handler subscribed twice is two subscriptions.
      const handler = (message: string): void => onMessage(message);
      set.add(handler);
      try {
        await (ready ?? start());
        // LISTEN is idempotent; a connection opened meanwhile already listens to it.
        await current?.query(`LISTEN ${pg.escapeIdentifier(name)}`);
      } catch (error) {
        set.delete(handler);
        if (set.size === 0) handlers.delete(name);
        throw unavailable(error);
      }
      return async () => {
        if (!set.delete(handler) || set.size > 0) return;
        handlers.delete(name);
        // Best effort: a notification arriving later for a channel without handlers is ignored.
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
      handlers.clear();
      const client = current;
      current = undefined;
      ready = undefined;
      await client?.end().catch(() => undefined);
    },
  };
}
