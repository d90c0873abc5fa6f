/**
 * Rate limits on /register, /authorize and /token: each scope refuses with 429 and
 * Retry-After, the requests that pass reach the authorization server intact (their bodies were
 * read to find the client), and the counts live in the store, so two gateways on one Redis
 * count together. Windows of an hour, so a test never straddles the start of a new window.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, testEncryptionKey, type TestGateway } from '../support/gateway.ts';
import { authorizeUrl, pkcePair, registerClient, tokenRequest } from '../support/oauth-flow.ts';
import { REDIS_URL, redisNamespace, shouldRun } from '../support/stores.ts';

const runRedis = await shouldRun('redis');
const redis = redisNamespace('rate-limits');
const gateways: TestGateway[] = [];

const base = {
  identity_providers: [{ id: 'dev', type: 'dev' }],
  access: { allow: { users: ['*'] } },
  services: { demo: { upstream: 'http://127.0.0.1:9/mcp' } },
};

async function gatewayWith(rateLimits: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const gateway = await startTestGateway({ ...base, rate_limits: rateLimits, ...extra });
  gateways.push(gateway);
  return gateway;
}

function register(gateway: TestGateway, name: string) {
  return fetch(`${gateway.origin}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: name, redirect_uris: ['http://127.0.0.1:53100/callback'], token_endpoint_auth_method: 'none' }),
  });
}

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.close()));
  if (runRedis) await redis.cleanup();
});

describe('registration', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await gatewayWith({ registration: { per_ip: '5/hour', global: '4/hour', per_client_metadata: '2/hour' } });
  });

  it('limits per client metadata, globally and per address, in that order of refusal', async () => {
    const statuses: number[] = [];
    const answers: Response[] = [];
    for (const name of ['alpha', 'alpha', 'alpha', 'beta', 'gamma', 'delta']) {
      const response = await register(gateway, name);
      statuses.push(response.status);
      answers.push(response);
    }
    expect(statuses).toEqual([201, 201, 429, 201, 429, 429]);
    // The registrations that passed reached oidc-provider intact: metadata echoed.
    expect(await answers[3]!.json()).toMatchObject({ client_name: 'beta', redirect_uris: ['http://127.0.0.1:53100/callback'] });
    const refused = answers[2]!;
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(3600);
    expect(refused.headers.get('access-control-allow-origin')).toBe('*');
    expect(refused.headers.get('cache-control')).toBe('no-store');
    expect(await refused.json()).toEqual({ error: 'temporarily_unavailable', error_description: expect.stringMatching(/^too many registrations of this client; try again in \d+ s$/) });
    expect((await answers[4]!.json() as { error_description: string }).error_description).toMatch(/^too many registrations right now/);
    expect((await answers[5]!.json() as { error_description: string }).error_description).toMatch(/^too many requests from this network address/);
    const refusals = gateway.logs.filter((line) => line.event === 'rate_limit.refused').map((line) => line.scope);
    expect(refusals).toEqual(['client_metadata', 'global', 'ip']);
    // Counter keys hold an HMAC, never the address or the metadata.
    expect(gateway.logText()).not.toContain('rl:registration:ip:127.0.0.1');
  });
});

describe('token and authorize', () => {
  let gateway: TestGateway;
  let clientId: string;
  beforeAll(async () => {
    gateway = await gatewayWith({ token: { per_client: '2/hour' }, authorize: { per_ip: '2/hour' } });
    clientId = (await registerClient(gateway, ['http://127.0.0.1:53100/callback'])).client_id;
  });

  it('limits token requests per client, whether it is named in the body or by Basic credentials', async () => {
    const grant = { grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: 'http://127.0.0.1:53100/callback', code_verifier: pkcePair().verifier };
    const first = await tokenRequest(gateway, { ...grant, client_id: clientId });
    // The body reached oidc-provider whole: it found the client and refused only the code.
    expect(first.status).toBe(400);
    expect(first.body.error).toBe('invalid_grant');
    expect((await tokenRequest(gateway, { ...grant }, { id: clientId, secret: 'x' })).status).toBe(401);
    const third = await tokenRequest(gateway, { ...grant, client_id: clientId });
    expect(third.status).toBe(429);
    expect(third.body).toMatchObject({ error: 'temporarily_unavailable', error_description: expect.stringMatching(/^too many requests for this client/) });
    expect(third.headers.get('retry-after')).toMatch(/^\d+$/);
    // Another client is counted apart.
    expect((await tokenRequest(gateway, { ...grant, client_id: 'someone-else' })).status).toBe(401);
  });

  it('answers /authorize over the limit with a page, never a redirect to the client', async () => {
    const url = authorizeUrl(gateway, { client_id: clientId, redirect_uri: 'http://127.0.0.1:53100/callback', code_challenge: pkcePair().challenge });
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 3; i++) {
      last = await fetch(url, { redirect: 'manual' });
      statuses.push(last.status);
    }
    expect(statuses.slice(0, 2).every((status) => status === 303 || status === 302)).toBe(true);
    expect(statuses[2]).toBe(429);
    expect(last!.headers.get('location')).toBeNull();
    expect(last!.headers.get('content-type')).toMatch(/^text\/html/);
    expect(last!.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await last!.text()).toContain('Too many sign-in attempts');
  });
});

describe('off', () => {
  it('counts nothing when rate_limits.enabled is false', async () => {
    const gateway = await gatewayWith({ enabled: false, registration: { per_ip: '1/hour' } });
    expect((await register(gateway, 'a')).status).toBe(201);
    expect((await register(gateway, 'a')).status).toBe(201);
  });
});

describe.runIf(runRedis)('across replicas', () => {
  it('counts requests to two gateways on one Redis together', async () => {
    const shared = {
      store: { type: 'redis', url: REDIS_URL, key_prefix: redis.prefix() },
      secrets: { encryption_key: testEncryptionKey() },
    };
    const limits = { registration: { per_ip: '3/hour' } };
    const [a, b] = [await gatewayWith(limits, shared), await gatewayWith(limits, shared)];
    const statuses = [];
    for (const gateway of [a!, b!, a!, b!]) statuses.push((await register(gateway, 'replica')).status);
    expect(statuses).toEqual([201, 201, 201, 429]);
  });
});
