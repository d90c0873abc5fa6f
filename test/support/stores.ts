/**
 * The shared Redis and Postgres servers of the test environment, and a private namespace in
 * them per test run: a random key prefix in Redis, random schemas in Postgres, removed again
 * by `cleanup`.
 *
 * REDIS_URL and DATABASE_URL point at the servers (defaults: a local Redis and the `test`
 * database of a local Postgres). Without a reachable server a suite is skipped with a loud
 * message, except under CI=true, where it runs and fails: CI must never pass by skipping.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const inCi = process.env.CI === 'true';

/** Whether suites needing the server should run: always under CI, else when it answers. */
export async function shouldRun(engine: 'redis' | 'postgres'): Promise<boolean> {
  if (inCi) return true;
  const url = engine === 'redis' ? REDIS_URL : DATABASE_URL;
  const problem = await (engine === 'redis' ? probeRedis() : probePostgres());
  if (problem === undefined) return true;
  const line = '!'.repeat(100);
  console.warn(`${line}\n!!! SKIPPING the ${engine} store tests: ${url} is not reachable (${problem}).\n`
    + `!!! Start ${engine} (see test/support/stores.ts) or set ${engine === 'redis' ? 'REDIS_URL' : 'DATABASE_URL'}; under CI=true these tests fail instead.\n${line}`);
  return false;
}

/**
 * Whether the `redis-server` binary is there, for tests that run a Redis of their own (and kill
 * it). Like `shouldRun`: always true under CI, else false with a loud message when missing.
 */
export function canStartRedisServer(): boolean {
  if (inCi) return true;
  const found = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found) {
    console.warn(`${'!'.repeat(100)}\n!!! SKIPPING the tests that start their own Redis: no redis-server on PATH.\n${'!'.repeat(100)}`);
  }
  return found;
}

async function probeRedis(): Promise<string | undefined> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let cause: Error | undefined;
  client.on('error', (error: Error) => {
    cause = error;
  });
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (error) {
    return (cause ?? (error as Error)).message;
  } finally {
    client.disconnect();
  }
}

async function probePostgres(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Fresh Redis key prefixes for this run; `cleanup` deletes every key under any of them. */
export function redisNamespace(label: string) {
  const run = `gatehouse-test-${label}-${randomBytes(6).toString('hex')}`;
  let count = 0;
  return {
    /** A key prefix no other store of any run uses. */
    prefix: (): string => `${run}-${++count}:`,
    async cleanup(): Promise<void> {
      const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      client.on('error', () => undefined);
      try {
        // The store wraps its prefix in braces (a hash tag); match both forms.
        for (const pattern of [`{${run}-*`, `${run}-*`]) {
          let cursor = '0';
          do {
            const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
            cursor = next;
            if (keys.length > 0) await client.unlink(...keys);
          } while (cursor !== '0');
        }
      } finally {
        client.disconnect();
      }
    },
  };
}

/** Fresh Postgres schema names for this run; `cleanup` drops every one of them. */
export function postgresNamespace(label: string) {
  const run = `gh_test_${label}_${randomBytes(4).toString('hex')}`;
  let count = 0;
  return {
    /** A schema name no other store of any run uses. */
    schema: (): string => `${run}_${++count}`,
    async cleanup(): Promise<void> {
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      try {
        const { rows } = await client.query<{ name: string }>(
          "SELECT nspname AS name FROM pg_namespace WHERE starts_with(nspname, $1)", [`${run}_`],
        );
        for (const { name } of rows) await client.query(`DROP SCHEMA ${pg.escapeIdentifier(name)} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
