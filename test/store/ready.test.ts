/**
 * `/ready` reports the store's state for every engine (the outages themselves are in
 * faults.test.ts); `/health` answers whatever the store does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';
import { DATABASE_URL, postgresNamespace, REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const redis = redisNamespace('ready');
const postgres = postgresNamespace('ready');
const runRedis = await shouldRun('redis');
const runPostgres = await shouldRun('postgres');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ready-'));

afterAll(async () => {
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
        services: { demo: { upstream: 'http://127.0.0.1:9/mcp' } },
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
