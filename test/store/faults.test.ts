/**
 * The store going away and coming back: calls fail fast with StoreUnavailableError instead of
 * hanging, the gateway answers 503 JSON (MCP endpoint, /token, /register) while /ready says the
 * store is down and /health stays up, and everything recovers without a restart.
 *
 * Redis: a redis-server of this file's own, killed with SIGKILL and started again on the same
 * port; it writes an append-only file with fsync on every write, so nothing committed is lost.
 * Postgres: the shared server must keep running for other tests, so its connections are killed
 * with pg_terminate_backend, and stores reach it through a TCP proxy this file can cut (every
 * connection reset, new ones refused), black-hole (bytes go nowhere) and restore.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startDemoServer, type DemoServer } from '../../src/demo/index.ts';
import { createPostgresStore } from '../../src/store/postgres-store.ts';
import { createRedisStore } from '../../src/store/redis-store.ts';
import { StoreUnavailableError, type Store } from '../../src/store/store.ts';
import { freePort, startTestGateway, testEncryptionKey, type TestGateway } from '../support/gateway.ts';
import { callMcp, eventually, redeem, refresh, registerClient, runCodeFlow } from '../support/oauth-flow.ts';
import { canStartRedisServer, DATABASE_URL, postgresNamespace, shouldRun } from '../support/stores.ts';

const runRedis = canStartRedisServer();
const runPostgres = await shouldRun('postgres');
const postgres = postgresNamespace('fault');
const dirs: string[] = [];
let demo: DemoServer;

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
});

afterAll(async () => {
  await demo?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  if (runPostgres) await postgres.cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long `call` takes to settle, and how: the value, or the error it rejected with. */
async function timed<T>(call: () => Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = Date.now();
  try {
    const value = await call();
    return { ms: Date.now() - started, value };
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
}

// ---------------------------------------------------------------------------------------------
// A private redis-server

interface PrivateRedis {
  port: number;
  url: string;
  start(): Promise<void>;
  kill(): Promise<void>;
}

function privateRedis(port: number): PrivateRedis {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-redis-'));
  dirs.push(dir);
  let child: ChildProcess | undefined;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      if (child && child.exitCode === null && child.signalCode === null) return;
      child = spawn('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir,
      ], { stdio: 'ignore' });
      const deadline = Date.now() + 5000;
      while (!(await answersPing(port))) {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
        await sleep(20);
      }
    },
    async kill() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A bare RESP PING, so the probe itself has no client library retries. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy to Postgres that can be cut and restored

interface Proxy {
  port: number;
  /** Resets every connection and refuses new ones: a database restarting. */
  cut(): void;
  /** Forwards nothing any more, in either direction, and answers nothing: a dead network. */
  blackhole(): void;
  restore(): void;
  close(): Promise<void>;
}

async function startProxy(targetPort: number): Promise<Proxy> {
  let mode: 'open' | 'cut' | 'blackhole' = 'open';
  const pairs = new Set<{ client: Socket; upstream?: Socket }>();
  const server: Server = createServer((client) => {
    client.on('error', () => undefined);
    if (mode === 'cut') {
      client.destroy();
      return;
    }
    const pair: { client: Socket; upstream?: Socket } = { client };
    pairs.add(pair);
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'blackhole') return;
    const upstream = connect(targetPort, '127.0.0.1');
    pair.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dropAll = () => {
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream?.destroy();
    }
    pairs.clear();
  };
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      mode = 'cut';
      dropAll();
    },
    blackhole() {
      mode = 'blackhole';
      for (const { client, upstream } of pairs) {
        if (!upstream) continue;
        client.unpipe(upstream);
        upstream.unpipe(client);
      }
    },
    restore() {
      // Connections that lived through a black hole lost bytes: they cannot be trusted again.
      dropAll();
      mode = 'open';
    },
    async close() {
      dropAll();
      server.close();
      await once(server, 'close');
    },
  };
}

const viaProxy = (port: number): string => {
  const url = new URL(DATABASE_URL);
  url.host = `127.0.0.1:${port}`;
  return url.href;
};

// ---------------------------------------------------------------------------------------------
// Gateway checks shared by both engines

const GATEWAY_CONFIG = () => ({
  identity_providers: [{ id: 'dev', type: 'dev' }],
  access: { allow: { users: ['*'] } },
  services: { demo: { upstream: demo.url, scopes: ['tools.read'] } },
  secrets: { encryption_key: testEncryptionKey() },
});

interface Session {
  clientId: string;
  accessToken: string;
  refreshToken: string;
}

async function signIn(gateway: TestGateway): Promise<Session> {
  const flow = await runCodeFlow(gateway);
  const token = await redeem(gateway, flow);
  expect(token.status).toBe(200);
  return { clientId: flow.client.client_id, accessToken: String(token.body.access_token), refreshToken: String(token.body.refresh_token) };
}

const get = (gateway: TestGateway, path: string) => fetch(`${gateway.origin}${path}`);

/** What a gateway whose store is down answers: quickly, 503 with JSON, /health still fine. */
async function expectOutageAnswers(gateway: TestGateway, session: Session): Promise<void> {
  const ping = await timed(() => gateway.store.ping());
  expect(ping.error).toBeInstanceOf(StoreUnavailableError);
  expect(ping.ms).toBeLessThan(1000);

  // The bearer check caches a grant's existence for up to a second; after that it asks the store.
  let mcp: Response | undefined;
  expect(await eventually(async () => (mcp = await callMcp(gateway, '/demo/mcp', session.accessToken)).status === 503, 2500)).toBe(true);
  expect(mcp!.headers.get('content-type')).toMatch(/^application\/json/);
  expect(await mcp!.json()).toEqual({ error: 'temporarily_unavailable', error_description: 'the gateway cannot reach its store; try again shortly' });

  const token = await timed(() => refresh(gateway, session.clientId, session.refreshToken));
  expect(token.ms).toBeLessThan(1000);
  expect(token.value?.status).toBe(503);
  expect(token.value?.headers.get('retry-after')).toBe('5');
  expect(token.value?.body).toEqual({ error: 'temporarily_unavailable', error_description: 'the gateway cannot reach its store; try again shortly' });

  const registration = await fetch(`${gateway.origin}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none' }),
  });
  expect(registration.status).toBe(503);
  expect(((await registration.json()) as { error: string }).error).toBe('temporarily_unavailable');

  const ready = await get(gateway, '/ready');
  expect(ready.status).toBe(503);
  const readiness = await ready.json() as { status: string; store: { engine: string; ready: boolean; detail: string } };
  expect(readiness.status).toBe('not_ready');
  expect(readiness.store.ready).toBe(false);
  expect(readiness.store.detail).toMatch(/store unavailable/);
  expect((await get(gateway, '/health')).status).toBe(200);
}

/** Back to normal with nothing lost: the old access token, refresh token and registration work. */
async function expectRecovered(gateway: TestGateway, session: Session): Promise<void> {
  expect(await eventually(async () => (await get(gateway, '/ready')).status === 200, 5000)).toBe(true);
  expect((await callMcp(gateway, '/demo/mcp', session.accessToken)).status).toBe(200);
  const refreshed = await refresh(gateway, session.clientId, session.refreshToken);
  expect(refreshed.status).toBe(200);
  expect((await callMcp(gateway, '/demo/mcp', String(refreshed.body.access_token))).status).toBe(200);
  expect((await registerClient(gateway, ['http://127.0.0.1/cb'])).client_id).toBeTypeOf('string');
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(!runRedis)('redis killed and restarted', () => {
  let redis: PrivateRedis;

  beforeAll(async () => {
    redis = privateRedis(await freePort());
    await redis.start();
  });

  afterAll(async () => {
    await redis?.kill();
  });

  // A test that failed half-way must not leave the next one without a server.
  beforeEach(async () => {
    await redis.start();
  });

  it('fails store calls within a second while down, and works again once it is back', async () => {
    const store = await createRedisStore({ url: redis.url, keyPrefix: 'faults:', sweepIntervalMs: 0 });
    const received: string[] = [];
    let reconnects = 0;
    await store.subscribe!('revocations', (message) => received.push(message), { onReconnect: () => reconnects++ });
    await store.put('Grant', 'g1', { v: 1 });
    await store.publish!('revocations', 'before');
    expect(await eventually(async () => received.includes('before'), 1000, 10)).toBe(true);

    await redis.kill();
    const calls: Array<() => Promise<unknown>> = [
      () => store.get('Grant', 'g1'), () => store.put('Grant', 'g2', {}), () => store.consume('Grant', 'g1', 1), () => store.ping(), () => store.publish!('revocations', 'lost'),
    ];
    for (const call of calls) {
      const result = await timed(call);
      expect(result.error).toBeInstanceOf(StoreUnavailableError);
      expect(result.ms).toBeLessThan(1000);
    }
    expect(String((await timed(() => store.ping())).error)).toMatch(/^StoreUnavailableError: redis store unavailable: not connected \(/);
    // Once it has tried to reconnect, it says why it cannot.
    expect(await eventually(async () => /ECONNREFUSED/.test(String((await timed(() => store.ping())).error)), 2000, 50)).toBe(true);

    await redis.start();
    expect(await eventually(async () => store.ping().then(() => true, () => false), 3000, 50)).toBe(true);
    expect(await store.get('Grant', 'g1')).toStrictEqual({ value: { v: 1 } });
    // The subscription came back by itself, and told its subscriber that events were lost.
    expect(await eventually(async () => {
      await store.publish!('revocations', 'after');
      return received.includes('after');
    }, 3000, 100)).toBe(true);
    expect(reconnects).toBe(1);
    expect(received).not.toContain('lost');
    await store.close();
  });

  it('keeps a gateway answering 503 while Redis is down, and recovers it without a restart', async () => {
    const gateway = await startTestGateway({ ...GATEWAY_CONFIG(), store: { type: 'redis', url: redis.url, key_prefix: 'gateway:' } });
    try {
      const session = await signIn(gateway);
      expect((await callMcp(gateway, '/demo/mcp', session.accessToken)).status).toBe(200);
      await redis.kill();
      await expectOutageAnswers(gateway, session);
      await redis.start();
      await expectRecovered(gateway, session);
    } finally {
      await gateway.close();
    }
  });
});

describe.skipIf(!runPostgres)('postgres connections killed, cut and black-holed', () => {
  let proxy: Proxy;
  let admin: pg.Client;

  beforeAll(async () => {
    proxy = await startProxy(Number(new URL(DATABASE_URL).port || 5432));
    admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
  });

  afterAll(async () => {
    await admin?.end();
    await proxy?.close();
  });

  async function terminate(schema: string): Promise<number> {
    const { rows } = await admin.query(
      'SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE application_name = $1',
      [`gatehouse (${schema})`],
    );
    return rows.length;
  }

  it('survives pg_terminate_backend on every connection, LISTEN included', async () => {
    const schema = postgres.schema();
    const store = await createPostgresStore({ url: DATABASE_URL, schema, poolSize: 3, sweepIntervalMs: 0 });
    const received: string[] = [];
    let reconnects = 0;
    await store.subscribe!('revocations', (message) => received.push(message), { onReconnect: () => reconnects++ });
    await store.put('Grant', 'g1', { v: 1 });
    await Promise.all([store.get('Grant', 'g1'), store.get('Grant', 'g1'), store.ping()]);

    expect(await terminate(schema)).toBeGreaterThanOrEqual(2);
    // Calls right after either work (on a fresh connection) or fail as unavailable, quickly.
    const results = await Promise.all(Array.from({ length: 6 }, () => timed(() => store.get('Grant', 'g1'))));
    for (const result of results) {
      expect(result.ms).toBeLessThan(1000);
      if (result.error) expect(result.error).toBeInstanceOf(StoreUnavailableError);
      else expect(result.value).toStrictEqual({ value: { v: 1 } });
    }
    expect(await eventually(async () => store.ping().then(() => true, () => false), 2000, 50)).toBe(true);
    expect(await store.get('Grant', 'g1')).toStrictEqual({ value: { v: 1 } });
    // The LISTEN connection was killed too; it reconnects and listens again by itself, and
    // tells its subscriber so.
    expect(await eventually(async () => {
      await store.publish!('revocations', 'after');
      return received.includes('after');
    }, 3000, 100)).toBe(true);
    expect(reconnects).toBe(1);
    await store.close();
  });

  it('fails fast while the network is cut and recovers once it is back', async () => {
    const store = await createPostgresStore({ url: viaProxy(proxy.port), schema: postgres.schema(), poolSize: 3, sweepIntervalMs: 0, connectTimeoutMs: 500 });
    const received: string[] = [];
    await store.subscribe!('revocations', (message) => received.push(message));
    await store.put('Grant', 'g1', { v: 1 });

    proxy.cut();
    const calls: Array<() => Promise<unknown>> = [
      () => store.get('Grant', 'g1'), () => store.put('Grant', 'g2', {}), () => store.increment('k', 60), () => store.ping(), () => store.publish!('revocations', 'lost'),
    ];
    for (const call of calls) {
      const result = await timed(call);
      expect(result.error).toBeInstanceOf(StoreUnavailableError);
      expect(result.ms).toBeLessThan(1000);
    }

    proxy.restore();
    expect(await eventually(async () => store.ping().then(() => true, () => false), 2000, 50)).toBe(true);
    expect(await store.get('Grant', 'g1')).toStrictEqual({ value: { v: 1 } });
    expect(await eventually(async () => {
      await store.publish!('revocations', 'after');
      return received.includes('after');
    }, 3000, 100)).toBe(true);
    await store.close();
  });

  it('gives up on a black-holed network after the statement timeout instead of hanging', async () => {
    const store = await createPostgresStore({
      url: viaProxy(proxy.port), schema: postgres.schema(), poolSize: 2, sweepIntervalMs: 0, connectTimeoutMs: 500, statementTimeoutMs: 200,
    });
    await store.put('Grant', 'g1', { v: 1 });
    proxy.blackhole();
    // One call on the pooled connection (no reply: the client-side timeout) and one on a new
    // connection (no handshake: the connect timeout).
    const results = await Promise.all([timed(() => store.get('Grant', 'g1')), timed(() => store.get('Grant', 'g1')), timed(() => store.ping())]);
    for (const result of results) {
      expect(result.error).toBeInstanceOf(StoreUnavailableError);
      expect(result.ms).toBeLessThan(2000);
    }
    proxy.restore();
    expect(await eventually(async () => store.ping().then(() => true, () => false), 2000, 50)).toBe(true);
    expect(await store.get('Grant', 'g1')).toStrictEqual({ value: { v: 1 } });
    await store.close();
  });

  it('keeps a gateway answering 503 while the database is unreachable, and recovers it without a restart', async () => {
    const gateway = await startTestGateway({ ...GATEWAY_CONFIG(), store: { type: 'postgres', url: viaProxy(proxy.port), schema: postgres.schema(), pool_size: 3 } });
    try {
      const session = await signIn(gateway);
      expect((await callMcp(gateway, '/demo/mcp', session.accessToken)).status).toBe(200);
      proxy.cut();
      await expectOutageAnswers(gateway, session);
      proxy.restore();
      await expectRecovered(gateway, session);
    } finally {
      proxy.restore();
      await gateway.close();
    }
  });
});
