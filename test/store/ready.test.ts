/**
 * `/ready` reports the store's state for every engine (the outages themselves are in
 * faults.test.ts), the signing keys, and each service's upstream (degraded, not unready, when
 * one cannot be reached); `/health` answers whatever the store does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestGateway } from '../support/gateway.ts';
import { eventually, redeem, runCodeFlow } from '../support/oauth-flow.ts';
import { DATABASE_URL, postgresNamespace, REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const redis = redisNamespace('ready');
const postgres = postgresNamespace('ready');
const runRedis = await shouldRun('redis');
const runPostgres = await shouldRun('postgres');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ready-'));
// An upstream that accepts connections (and counts them); nothing is ever sent on them.
let connections = 0;
const upstream = createServer((socket) => {
  connections++;
  socket.on('error', () => undefined);
  socket.end();
});
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamPort = (upstream.address() as { port: number }).port;

afterAll(async () => {
  await new Promise((resolve) => upstream.close(resolve));
  rmSync(dir, { recursive: true, force: true });
  if (runRedis) await redis.cleanup();
  if (runPostgres) await postgres.cleanup();
});

const engines = [
  { name: 'memory', run: true, store: () => ({ type: 'memory' }) },
  { name: 'sqlite', run: true, store: () => ({ type: 'sqlite', path: join(dir, 'ready.db') }) },
  { name: 'redis', run: runRedis, store: () => ({ type: 'redis', url: REDIS_URL, key_prefix: redis.prefix() }) },
  { name: 'postgres', run: runPostgres, store: () => ({ type: 'postgres', url: DATABASE_URL, schema: postgres.schema() }) },
];

for (const engine of engines) {
  describe.skipIf(!engine.run)(`/ready on ${engine.name}`, () => {
    it('says ready with the engine named while the store answers, and not ready once it does not', async () => {
      const gateway = await startTestGateway({
        identity_providers: [{ id: 'dev', type: 'dev' }],
        access: { allow: { users: ['*'] } },
        services: { demo: { upstream: `http://127.0.0.1:${upstreamPort}/mcp` } },
        store: engine.store(),
      });
      try {
        const ready = await fetch(`${gateway.origin}/ready`);
        expect(ready.status).toBe(200);
        expect(await ready.json()).toMatchObject({ status: 'ready', store: { engine: engine.name, ready: true } });
        // The store closed under the running gateway: the cheapest way to make any engine fail.
        await gateway.store.close();
        const down = await fetch(`${gateway.origin}/ready`);
        expect(down.status).toBe(503);
        expect(await down.json()).toMatchObject({ status: 'not_ready', store: { engine: engine.name, ready: false, detail: expect.stringMatching(/closed/) } });
        expect((await fetch(`${gateway.origin}/health`)).status).toBe(200);
      } finally {
        await gateway.close().catch(() => undefined);
      }
    });
  });
}

describe('/ready on services and keys', () => {
  it('is degraded, not unready, while an upstream is down, and says which, without addresses', async () => {
    const fixture = fileURLToPath(new URL('../support/stdio-test-server.ts', import.meta.url));
    const gateway = await startTestGateway({
      identity_providers: [{ id: 'dev', type: 'dev' }],
      access: { allow: { users: ['*'] } },
      services: {
        up: { upstream: `http://127.0.0.1:${upstreamPort}/mcp` },
        down: { upstream: 'http://127.0.0.1:9/mcp' },
        socket: { upstream: `ws://127.0.0.1:${upstreamPort}/mcp` },
        tool: { command: [process.execPath, fixture] },
        missing: { command: ['gatehouse-test-no-such-program'] },
      },
    });
    try {
      const before = connections;
      const response = await fetch(`${gateway.origin}/ready`);
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(JSON.parse(text)).toEqual({
        status: 'degraded',
        store: { engine: 'memory', ready: true },
        keys: { ready: true, signing_keys: 2, published_keys: 2, last_read_at: expect.any(String) },
        identity_providers: { dev: { ready: true } },
        services: {
          up: { transport: 'streamable-http', ready: true, checked_at: expect.any(String) },
          down: { transport: 'streamable-http', ready: false, detail: 'ECONNREFUSED', checked_at: expect.any(String) },
          socket: { transport: 'websocket', ready: true, checked_at: expect.any(String) },
          tool: { transport: 'stdio', ready: true, processes: 0, checked_at: expect.any(String) },
          missing: { transport: 'stdio', ready: false, detail: 'the program is not found or not executable', processes: 0, checked_at: expect.any(String) },
        },
      });
      expect(text).not.toContain(String(upstreamPort));
      expect(text).not.toContain('gatehouse-test-no-such-program');
      // One host and port, one probe, however often /ready is asked within the cache's life.
      for (let i = 0; i < 5; i++) await fetch(`${gateway.origin}/ready`);
      expect(connections - before).toBe(1);

      // A session of the command service starts a process: /ready and the metrics count it.
      const flow = await runCodeFlow(gateway, { params: { resource: `${gateway.origin}/tool/mcp` } });
      const token = String((await redeem(gateway, flow)).body.access_token);
      const client = new Client({ name: 'ready-test', version: '0' });
      const transport = new StreamableHTTPClientTransport(new URL(`${gateway.origin}/tool/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
      await client.connect(transport);
      const tool = async () => ((await (await fetch(`${gateway.origin}/ready`)).json()) as { services: Record<string, { processes?: number }> }).services.tool?.processes;
      expect(await tool()).toBe(1);
      expect(await (await fetch(`${gateway.origin}/metrics`)).text()).toContain('gatehouse_stdio_processes{service="tool"} 1');
      // DELETE ends the session, and with it (isolation: session) the process.
      await transport.terminateSession();
      await client.close();
      expect(await eventually(async () => (await tool()) === 0, 5000)).toBe(true);
      const metrics = await (await fetch(`${gateway.origin}/metrics`)).text();
      expect(metrics).toContain('gatehouse_stdio_processes{service="tool"} 0');
      expect(metrics).toContain('gatehouse_stdio_process_exits_total{service="tool",reason="stopped"} 1');
    } finally {
      await gateway.close();
    }
  });
});
