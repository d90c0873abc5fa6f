/**
 * An authorization code redeemed by 20 parallel /token requests yields exactly one token when
 * the gateway keeps its state in Redis or Postgres, with the requests split between two gateways
 * on the same store (as replicas behind a load balancer would get them). The losers are code
 * reuses, so what the winner got is revoked (RFC 6749 §4.1.2; OAuth 2.1 §4.1.3).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoServer, type DemoServer } from '../../src/demo/index.ts';
import { freePort, startTestGateway, testEncryptionKey, type TestGateway } from '../support/gateway.ts';
import { callMcp, eventually, redeem, refresh, runCodeFlow, type FlowGateway } from '../support/oauth-flow.ts';
import { DATABASE_URL, postgresNamespace, REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const redis = redisNamespace('gw');
const postgres = postgresNamespace('gw');
const runRedis = await shouldRun('redis');
const runPostgres = await shouldRun('postgres');
let demo: DemoServer;

beforeAll(async () => {
  demo = await startDemoServer({ port: 0 });
});

afterAll(async () => {
  await demo?.close();
  if (runRedis) await redis.cleanup();
  if (runPostgres) await postgres.cleanup();
});

const engines = [
  { name: 'redis', run: runRedis, store: () => ({ type: 'redis', url: REDIS_URL, key_prefix: redis.prefix() }) },
  { name: 'postgres', run: runPostgres, store: () => ({ type: 'postgres', url: DATABASE_URL, schema: postgres.schema(), pool_size: 5 }) },
];

for (const engine of engines) {
  describe.skipIf(!engine.run)(`code redemption races on ${engine.name}`, () => {
    let first: TestGateway;
    let second: TestGateway & FlowGateway;

    beforeAll(async () => {
      const shared = {
        identity_providers: [{ id: 'dev', type: 'dev' }],
        access: { allow: { users: ['*'] } },
        services: { demo: { upstream: demo.url, scopes: ['tools.read'] } },
        store: engine.store(),
        secrets: { encryption_key: testEncryptionKey() },
      };
      const port = await freePort();
      first = await startTestGateway(shared, { port });
      // The second replica: same public URL (issuer), store and keys, listening elsewhere.
      second = await startTestGateway({ ...shared, public_url: first.origin });
    });

    afterAll(async () => {
      await second?.close();
      await first?.close();
    });

    it('gives exactly one token response to 20 simultaneous redemptions across two gateways', async () => {
      const flow = await runCodeFlow(first);
      expect(flow.code).toBeTypeOf('string');
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => redeem(i % 2 ? second : first, flow)));
      const statuses = answers.map((answer) => answer.status);
      expect(statuses.filter((status) => status === 200)).toHaveLength(1);
      expect(statuses.filter((status) => status === 400)).toHaveLength(19);
      expect(answers.filter((answer) => answer.status === 400).map((answer) => answer.body.error)).toEqual(Array(19).fill('invalid_grant'));

      const winner = answers.find((answer) => answer.status === 200)!;
      const refreshed = await refresh(second, flow.client.client_id, String(winner.body.refresh_token));
      expect(refreshed.status).toBe(400);
      expect(refreshed.body.error).toBe('invalid_grant');
      expect(await eventually(async () => (await callMcp(first, '/demo/mcp', String(winner.body.access_token))).status === 401, 2000)).toBe(true);
    });

    it('lets a token issued by one gateway work on the other', async () => {
      const flow = await runCodeFlow(second);
      const token = await redeem(first, flow);
      expect(token.status).toBe(200);
      expect((await callMcp(second, '/demo/mcp', String(token.body.access_token))).status).toBe(200);
      const refreshed = await refresh(second, flow.client.client_id, String(token.body.refresh_token));
      expect(refreshed.status).toBe(200);
    });
  });
}
