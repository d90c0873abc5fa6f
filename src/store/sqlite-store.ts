/**
 * The SQLite engine: one database file shared by every gateway process on the host. Each
 * operation is a single SQL statement, so SQLite's own locking makes consume, take and
 * increment atomic across processes without explicit transactions.
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DatabaseSync, type SQLOutputValue } from 'node:sqlite';
import {
  epochSeconds,
  StoreUnavailableError,
  type PutOptions,
  type Store,
  type StoredRecord,
  type StoredValue,
  expiryFor,
  windowLength,
} from './store.ts';
import { createLocalEvents } from './local-events.ts';

export interface SqliteStoreOptions {
  /** Database file; parent directories are created. `:memory:` gives a private in-memory database. */
  path: string;
  /** How often expired rows are removed; 0 or less disables the timer. Default 60 s. */
  sweepIntervalMs?: number;
  /** Clock in epoch milliseconds; injectable so tests can move time. */
  now?: () => number;
}

/**
 * Schema steps; step i takes the database from PRAGMA user_version i to i + 1. Append new
 * steps, never edit shipped ones: databases in the field have already run them.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE records (
     kind TEXT NOT NULL,
     id TEXT NOT NULL,
     value TEXT NOT NULL,
     expires_at INTEGER,
     consumed_at INTEGER,
     grant_id TEXT,
     uid TEXT,
     user_code TEXT,
     PRIMARY KEY (kind, id)
   );
   CREATE INDEX records_grant_id ON records (grant_id);
   CREATE INDEX records_uid ON records (kind, uid);
   CREATE INDEX records_user_code ON records (kind, user_code);
   CREATE INDEX records_expires_at ON records (expires_at);
   CREATE TABLE counters (
     key TEXT PRIMARY KEY,
     value INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );`,
];

const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const DEFAULT_LIST_LIMIT = 1000;
const SWEEP_BATCH = 500;
/** The most batches one sweep deletes, so a backlog is worked off over several ticks. */
const SWEEP_MAX_BATCHES = 200;
/** How long a statement waits for another process's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;
const LIVE = '(expires_at IS NULL OR expires_at > :now)';
const COLUMNS = 'value, expires_at, consumed_at';

const STATEMENTS = {
  put: `INSERT INTO records (kind, id, value, expires_at, consumed_at, grant_id, uid, user_code)
        VALUES (:kind, :id, :value, :expiresAt, NULL, :grantId, :uid, :userCode)
        ON CONFLICT (kind, id) DO UPDATE SET
          value = excluded.value, expires_at = excluded.expires_at, consumed_at = NULL,
          grant_id = excluded.grant_id, uid = excluded.uid, user_code = excluded.user_code`,
  // The conflict update runs only over an expired row, so a live one is left as it is and
  // `changes` tells whether this call created the record.
  create: `INSERT INTO records (kind, id, value, expires_at, consumed_at, grant_id, uid, user_code)
           VALUES (:kind, :id, :value, :expiresAt, NULL, :grantId, :uid, :userCode)
           ON CONFLICT (kind, id) DO UPDATE SET
             value = excluded.value, expires_at = excluded.expires_at, consumed_at = NULL,
             grant_id = excluded.grant_id, uid = excluded.uid, user_code = excluded.user_code
           WHERE records.expires_at IS NOT NULL AND records.expires_at <= :now`,
  get: `SELECT ${COLUMNS} FROM records WHERE kind = :kind AND id = :id AND ${LIVE}`,
  findByUid: `SELECT id, ${COLUMNS} FROM records
              WHERE kind = :kind AND uid = :key AND ${LIVE} ORDER BY id LIMIT 1`,
  findByUserCode: `SELECT id, ${COLUMNS} FROM records
                   WHERE kind = :kind AND user_code = :key AND ${LIVE} ORDER BY id LIMIT 1`,
  consume: `UPDATE records SET consumed_at = :at
            WHERE kind = :kind AND id = :id AND consumed_at IS NULL AND ${LIVE}`,
  delete: 'DELETE FROM records WHERE kind = :kind AND id = :id',
  take: `DELETE FROM records WHERE kind = :kind AND id = :id RETURNING ${COLUMNS}`,
  deleteByGrant: 'DELETE FROM records WHERE grant_id = :grantId',
  list: `SELECT id, ${COLUMNS} FROM records
         WHERE kind = :kind AND id GLOB :pattern AND ${LIVE} ORDER BY id LIMIT :limit`,
  // One upsert, so concurrent increments from any process serialise on the row.
  increment: `INSERT INTO counters (key, value, expires_at) VALUES (:key, 1, :now + :window)
              ON CONFLICT (key) DO UPDATE SET
                value = CASE WHEN expires_at <= :now THEN 1 ELSE value + 1 END,
                expires_at = CASE WHEN expires_at <= :now THEN :now + :window ELSE expires_at END
              RETURNING value`,
  // Small batches: node:sqlite runs on the event loop's thread, so one DELETE of a large backlog
  // would hold every request (and, through the write lock, every other process) until it ends.
  sweepRecords: `DELETE FROM records WHERE rowid IN (
                   SELECT rowid FROM records WHERE expires_at <= :now LIMIT ${SWEEP_BATCH})`,
  sweepCounters: `DELETE FROM counters WHERE rowid IN (
                    SELECT rowid FROM counters WHERE expires_at <= :now LIMIT ${SWEEP_BATCH})`,
  ping: 'SELECT 1 AS ok',
} as const;

type Row = Record<string, SQLOutputValue>;

export function createSqliteStore(options: SqliteStoreOptions): Store {
  const now = options.now ?? Date.now;
  const nowSeconds = (): number => epochSeconds(now());
  const db = guard(() => openDatabase(options.path));
  const sql = guard(() => prepareAll(db));

  const interval = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  // A failed background sweep is harmless: reads enforce expiry anyway and the next tick retries.
  const sweepQuietly = (): void => void store.sweep().catch(() => undefined);
  // unref'd so an idle store never keeps the process alive on its own.
  const timer = interval > 0 ? setInterval(sweepQuietly, interval).unref() : undefined;
  // Events reach the stores of this process that opened the same file, never other processes:
  // SQLite has no channel between them. Several gateway processes on one file therefore
  // notice each other's revocations only through their caches' expiry.
  const assertOpen = (): void => {
    if (!db.isOpen) throw new StoreUnavailableError('sqlite store is closed');
  };
  const events = createLocalEvents(assertOpen, options.path === ':memory:' ? undefined : resolve(options.path));

  const store: Store = {
    engine: 'sqlite',
    subscribe: events.subscribe,
    publish: events.publish,

    async put(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<void> {
      const json = JSON.stringify(value);
      const expiresAt = expiryFor(putOptions.ttlSeconds, nowSeconds()) ?? null;
      const { grantId = null, uid = null, userCode = null } = putOptions;
      guard(() => sql.put.run({ kind, id, value: json, expiresAt, grantId, uid, userCode }));
    },

    async create(kind: string, id: string, value: StoredValue, putOptions: PutOptions = {}): Promise<boolean> {
      const json = JSON.stringify(value);
      const at = nowSeconds();
      const expiresAt = expiryFor(putOptions.ttlSeconds, at) ?? null;
      const { grantId = null, uid = null, userCode = null } = putOptions;
      const result = guard(() => sql.create.run({ kind, id, value: json, expiresAt, grantId, uid, userCode, now: at }));
      return Number(result.changes) === 1;
    },

    async get(kind: string, id: string): Promise<StoredRecord | undefined> {
      const row = guard(() => sql.get.get({ kind, id, now: nowSeconds() }));
      return row && toRecord(row);
    },

    async findByIndex(kind: string, index: 'uid' | 'userCode', key: string) {
      const statement = index === 'uid' ? sql.findByUid : sql.findByUserCode;
      const row = guard(() => statement.get({ kind, key, now: nowSeconds() }));
      return row && { id: String(row.id), ...toRecord(row) };
    },

    async consume(kind: string, id: string, at: number): Promise<boolean> {
      const result = guard(() => sql.consume.run({ kind, id, at, now: nowSeconds() }));
      return Number(result.changes) === 1;
    },

    async delete(kind: string, id: string): Promise<void> {
      guard(() => sql.delete.run({ kind, id }));
    },

    async take(kind: string, id: string): Promise<StoredRecord | undefined> {
      const row = guard(() => sql.take.get({ kind, id }));
      // An expired row is removed all the same; it just is not handed out.
      if (!row || !isLive(row, nowSeconds())) return undefined;
      return toRecord(row);
    },

    async deleteByGrant(grantId: string): Promise<void> {
      guard(() => sql.deleteByGrant.run({ grantId }));
    },

    async list(kind: string, idPrefix: string, limit = DEFAULT_LIST_LIMIT) {
      const pattern = `${escapeGlob(idPrefix)}*`;
      const rows = guard(() => sql.list.all({ kind, pattern, limit, now: nowSeconds() }));
      return rows.map((row) => ({ id: String(row.id), ...toRecord(row) }));
    },

    async increment(key: string, windowSeconds: number): Promise<number> {
      const window = windowLength(windowSeconds);
      const row = guard(() => sql.increment.get({ key, window, now: nowSeconds() }));
      return Number(row?.value);
    },

    async sweep(): Promise<number> {
      const at = nowSeconds();
      let removed = 0;
      for (const statement of [sql.sweepRecords, sql.sweepCounters]) {
        for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
          const changes = Number(guard(() => statement.run({ now: at })).changes);
          removed += changes;
          if (changes < SWEEP_BATCH) break;
          // Requests waiting on the event loop run between two batches.
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      return removed;
    },

    async ping(): Promise<void> {
      // A clear reason for /ready, rather than node:sqlite's "statement has been finalized".
      assertOpen();
      guard(() => sql.ping.get());
    },

    async close(): Promise<void> {
      clearInterval(timer);
      events.close();
      if (db.isOpen) guard(() => db.close());
    },
  };
  return store;
}

function openDatabase(path: string): DatabaseSync {
  if (path !== ':memory:') createPrivateFile(path);
  // The busy timeout comes first: switching to WAL and migrating take locks that another
  // process opening the same file at the same moment may hold for a while.
  const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // WAL lets readers proceed while one process writes; busy_timeout makes writers queue
    // for the lock instead of failing at once when several gateway processes share the file.
    db.exec('PRAGMA journal_mode = WAL');
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Creates the file 0600 before SQLite does, so tokens and keys are never world-readable. */
function createPrivateFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw error;
  }
  // The umask may have stripped bits from the mode given to open.
  chmodSync(path, 0o600);
}

function migrate(db: DatabaseSync): void {
  // IMMEDIATE takes the write lock before reading the version, so two processes starting
  // together cannot both run the same step.
  db.exec('BEGIN IMMEDIATE');
  try {
    const row = db.prepare('PRAGMA user_version').get();
    const version = Number(row?.user_version ?? 0);
    if (version > MIGRATIONS.length) {
      throw new Error(
        `store schema version ${version} is newer than this gateway supports (${MIGRATIONS.length})`,
      );
    }
    for (const step of MIGRATIONS.slice(version)) db.exec(step);
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    db.exec('COMMIT');
  } catch (error) {
    db.exec('ROLLBACK');
    throw error;
  }
}

function prepareAll(db: DatabaseSync) {
  const entries = Object.entries(STATEMENTS).map(([name, text]) => [name, db.prepare(text)]);
  return Object.fromEntries(entries) as Record<keyof typeof STATEMENTS, ReturnType<DatabaseSync['prepare']>>;
}

/**
 * Runs a database call, turning engine failures (disk full, I/O error, busy, closed database)
 * into StoreUnavailableError so the HTTP layer answers 503. Other errors pass through.
 */
function guard<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (isEngineError(error)) {
      throw new StoreUnavailableError(`sqlite store unavailable: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

function isEngineError(error: unknown): error is Error {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  // ERR_SQLITE_ERROR carries SQLite's own result code; ERR_INVALID_STATE means the database
  // or statement was closed. Errno codes cover failures creating the directory or file.
  return code === 'ERR_SQLITE_ERROR' || code === 'ERR_INVALID_STATE' || isErrno(error);
}

function isErrno(error: Error): boolean {
  return typeof (error as NodeJS.ErrnoException).errno === 'number' && 'syscall' in error;
}

function isLive(row: Row, at: number): boolean {
  return row.expires_at === null || Number(row.expires_at) > at;
}

function toRecord(row: Row): StoredRecord {
  const record: StoredRecord = { value: JSON.parse(String(row.value)) as StoredValue };
  if (row.consumed_at !== null) record.consumedAt = Number(row.consumed_at);
  if (row.expires_at !== null) record.expiresAt = Number(row.expires_at);
  return record;
}

/** GLOB is case-sensitive and uses the primary key for a literal prefix; LIKE would do neither. */
function escapeGlob(literal: string): string {
  return literal.replace(/[*?[]/g, (char) => `[${char}]`);
}

