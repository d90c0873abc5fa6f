/**
 * The Postgres engine's schema: versioned migrations, applied at start under an advisory lock
 * (so replicas starting together migrate once and the others wait), and the SQL of every
 * operation.
 *
 * Values are kept in a `json` column, not `jsonb`: json keeps the text exactly as given (key
 * order, duplicate-free as JSON.stringify writes it), while jsonb reorders keys and refuses
 * strings with U+0000 or a lone surrogate, which JSON.stringify can produce and the Store
 * contract promises to round-trip.
 *
 * Ids are compared COLLATE "C" (byte order of UTF-8, i.e. code point order), the order the
 * contract's `list` demands whatever the database's locale.
 */
import pg from 'pg';

export const SWEEP_BATCH = 1000;

/**
 * Schema steps; step i takes the schema from version i to i + 1 (recorded in
 * schema_migrations). Append new steps, never edit shipped ones: databases in the field have
 * already run them. `s` is the quoted schema name.
 */
export const MIGRATIONS: ReadonlyArray<(s: string) => string> = [
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

/** Every statement the store runs, for the quoted schema name `s`. */
export function statements(s: string) {
  const live = '(expires_at IS NULL OR expires_at > $now)';
  const columns = 'value, expires_at, consumed_at';
  const sql = {
    put: `INSERT INTO ${s}.records (kind, id, value, expires_at, consumed_at, grant_id, uid, user_code)
          VALUES ($1, $2, $3::json, $4, NULL, $5, $6, $7)
          ON CONFLICT (kind, id) DO UPDATE SET
            value = excluded.value, expires_at = excluded.expires_at, consumed_at = NULL,
            grant_id = excluded.grant_id, uid = excluded.uid, user_code = excluded.user_code`,
    // The conflict update runs only over an expired row, so a live one is left as it is and
    // the row count tells whether this call created the record.
    create: `INSERT INTO ${s}.records AS r (kind, id, value, expires_at, consumed_at, grant_id, uid, user_code)
             VALUES ($1, $2, $3::json, $4, NULL, $5, $6, $7)
             ON CONFLICT (kind, id) DO UPDATE SET
               value = excluded.value, expires_at = excluded.expires_at, consumed_at = NULL,
               grant_id = excluded.grant_id, uid = excluded.uid, user_code = excluded.user_code
             WHERE r.expires_at IS NOT NULL AND r.expires_at <= $8`,
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

/**
 * Brings the schema to the newest version. The advisory lock is held by this one session, so
 * replicas starting together run each step once; the lock ends with the session if it dies.
 */
export async function migrate(connection: pg.ClientConfig, schemaName: string): Promise<void> {
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
