/**
 * The Postgres engine: every gateway replica on one database, in its own schema (the tables,
 * migrations and SQL are in postgres-schema.ts, LISTEN/NOTIFY in postgres-events.ts).
 *
 * Each operation is one statement, so Postgres's row locks make it atomic across replicas:
 * consume is an UPDATE guarded by `consumed_at IS NULL` (a second, concurrent UPDATE waits for
 * the first and then re-checks the guard on the updated row, under READ COMMITTED), take is
 * DELETE … RETURNING, create and increment are INSERT … ON CONFLICT DO UPDATE, which Postgres
 * guarantees to either insert or update under concurrency.
 *
 * A periodic sweep deletes expired rows in small batches that skip rows requests have locked,
 * so it never makes a request wait.
 *
 * Failures: connecting gives up after `connectTimeoutMs`, statements after
 * `statementTimeoutMs` (server side) and a reply that never comes after a little more (client
 * side: a dead network is not noticed by the server). Broken connections leave the pool and
 * new ones are opened on demand, so the store works again once the database is back.
 */
import { startSweepTimer } from './sweep-timer.ts';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import {
  epochSeconds,
  expiryFor,
  StoreUnavailableError,
  windowLength,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
} from './store.ts';
import { migrate, statements, SWEEP_BATCH } from './postgres-schema.ts';
import { createPostgresEvents } from './postgres-events.ts';

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
/** The most batches one sweep deletes, so a backlog is worked off over several ticks. */
const SWEEP_MAX_BATCHES = 100;

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
  const timer = startSweepTimer(sweep, options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);

  const events = createPostgresEvents({ ...connection, query_timeout: statementTimeout + REPLY_GRACE_MS }, schemaName, query, () => closed, messageOf);

  return {
    engine: 'postgres',

    async put(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<void> {
      const json = JSON.stringify(value);
      const expiresAt = expiryFor(putOptions.ttlSeconds, nowSeconds()) ?? null;
      const { grantId = null, uid = null, userCode = null } = putOptions;
      await query(sql.put, [kind, id, json, expiresAt, grantId, uid, userCode]);
    },

    async create(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<boolean> {
      const json = JSON.stringify(value);
      const at = nowSeconds();
      const expiresAt = expiryFor(putOptions.ttlSeconds, at) ?? null;
      const { grantId = null, uid = null, userCode = null } = putOptions;
      const { rowCount } = await query(sql.create, [kind, id, json, expiresAt, grantId, uid, userCode, at]);
      return rowCount === 1;
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
      timer.stop();
      await events.close();
      await pool.end().catch(() => undefined);
    },
  };
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
