/**
 * `/health` (the process is up) and `/ready` (it can serve: store, keys, identity providers).
 */
import type { FastifyInstance } from 'fastify';
import type { IdentityProvider } from '../identity/index.ts';
import type { Store } from '../store/index.ts';

export function registerHealthRoutes(app: FastifyInstance, parts: { store: Store; identityProviders: ReadonlyMap<string, IdentityProvider> }): void {
  app.get('/health', async (_request, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }));

  app.get('/ready', async (_request, reply) => {
    const store = await parts.store.ping().then(() => ({ ready: true }), (error: Error) => ({ ready: false, detail: error.message }));
    const providers = Object.fromEntries([...parts.identityProviders.values()].map((idp) => [idp.id, idp.readiness()]));
    const ready = store.ready && Object.values(providers).every((state) => state.ready);
    return reply.code(ready ? 200 : 503).header('cache-control', 'no-store').send({
      status: ready ? 'ready' : 'not_ready',
      store: { engine: parts.store.engine, ...store },
      keys: { ready: true },
      identity_providers: providers,
    });
  });
}
