import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { StoreUnavailableError, type Store } from '../store/index.ts';
import { registerHealthRoutes, storeFailureDetail } from './health.ts';

const refused = () => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:6379'), { code: 'ECONNREFUSED' });
  return new StoreUnavailableError('redis store unavailable: not connected (reconnecting: connect ECONNREFUSED 10.1.2.3:6379)', { cause });
};

describe('storeFailureDetail', () => {
  it('names the engine and the error code, never the address, host or user in the message', () => {
    expect(storeFailureDetail('redis', refused())).toBe('redis store unavailable (ECONNREFUSED)');
    expect(storeFailureDetail('postgres', new StoreUnavailableError('postgres store unavailable: getaddrinfo ENOTFOUND db.internal.example'))).toBe('postgres store unavailable (ENOTFOUND)');
    expect(storeFailureDetail('postgres', new StoreUnavailableError('password authentication failed for user "gatehouse"'))).toBe('postgres store unavailable');
    expect(storeFailureDetail('sqlite', new StoreUnavailableError('sqlite store is closed'))).toBe('sqlite store unavailable (closed)');
  });
});

describe('/ready with a failing store', () => {
  it('answers 503 without the store error message, which goes to the log instead', async () => {
    const lines: string[] = [];
    const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => lines.push(line) } } });
    const store = { engine: 'redis', ping: () => Promise.reject(refused()) } as unknown as Store;
    registerHealthRoutes(app, { store, identityProviders: new Map() });
    try {
      const response = await app.inject({ method: 'GET', url: '/ready' });
      expect(response.statusCode).toBe(503);
      expect(response.body).not.toContain('10.1.2.3');
      expect(response.json()).toMatchObject({ status: 'not_ready', store: { engine: 'redis', ready: false, detail: 'redis store unavailable (ECONNREFUSED)' } });
      // Polled every few seconds: logged once, not on every probe.
      await app.inject({ method: 'GET', url: '/ready' });
      const logged = lines.filter((line) => line.includes('ready.store_unavailable'));
      expect(logged).toHaveLength(1);
      expect(logged[0]).toContain('10.1.2.3:6379');
    } finally {
      await app.close();
    }
  });
});

describe('/ready with an identity provider whose discovery failed', () => {
  it('says so with the error code, without the issuer URL or address', async () => {
    const app = Fastify();
    const store = { engine: 'memory', ping: () => Promise.resolve() } as unknown as Store;
    const idp = {
      id: 'corp',
      readiness: () => ({ ready: false, detail: 'discovery of https://sso.internal.example/realms/x failed: fetch failed: connect ECONNREFUSED 10.0.0.7:8443' }),
    };
    const waiting = { id: 'later', readiness: () => ({ ready: false, detail: 'discovery not attempted yet' }) };
    registerHealthRoutes(app, { store, identityProviders: new Map([['corp', idp], ['later', waiting]]) as never });
    try {
      const response = await app.inject({ method: 'GET', url: '/ready' });
      expect(response.statusCode).toBe(503);
      expect(response.body).not.toMatch(/sso\.internal|10\.0\.0\.7/);
      expect(response.json()).toMatchObject({
        identity_providers: { corp: { ready: false, detail: 'discovery failed (ECONNREFUSED)' }, later: { ready: false, detail: 'discovery not attempted yet' } },
      });
    } finally {
      await app.close();
    }
  });
});
