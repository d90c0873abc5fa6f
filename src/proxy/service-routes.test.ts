/**
 * The service table: unchanged services keep their endpoint, changed and removed ones retire
 * once their open requests end (or at their timeout), and unknown paths get the 404 handler.
 */
import { request as httpRequest } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { ProtectedService } from '../authz/index.ts';
import { registerServiceRoutes, type ServiceEndpoint } from './service-routes.ts';

interface FakeEndpoint extends ServiceEndpoint {
  label: string;
  closed: boolean;
  /** Ends every response this endpoint holds open. */
  release(): void;
}

type TestService = ProtectedService<{ path: string; timeout_ms: number; version?: number; broken?: boolean }>;

function service(id: string, definition: Partial<TestService['definition']> = {}): TestService {
  const path = `/${id}/mcp`;
  return { id, displayName: id, path, resourceUrl: `http://127.0.0.1${path}`, scopes: ['mcp'], definition: { path, timeout_ms: 60_000, ...definition } };
}

let app: FastifyInstance | undefined;

afterEach(async () => {
  await app?.close();
  app = undefined;
});

/** A gateway-like Fastify app whose endpoints answer `<label>` at once, or hold the response open with `?hold`. */
async function start() {
  const created: FakeEndpoint[] = [];
  app = Fastify({ forceCloseConnections: true });
  app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ error: 'not_found' }));
  const routes = registerServiceRoutes(app, (routed: TestService) => {
    const held = new Set<() => void>();
    const endpoint: FakeEndpoint = {
      label: `${routed.id}:${String(routed.definition.version ?? 1)}`,
      closed: false,
      async handle(request, reply) {
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/plain' });
        if (request.url.endsWith('?hold')) {
          reply.raw.write(endpoint.label);
          held.add(() => reply.raw.end());
        } else {
          reply.raw.end(endpoint.label);
        }
        return reply;
      },
      async close() { endpoint.closed = true; },
      release() { for (const end of held) end(); held.clear(); },
    };
    created.push(endpoint);
    return endpoint;
  }, app.log);
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  return { routes, created, origin };
}

describe('service routes', () => {
  it('serves the services given, keeps unchanged endpoints, and answers other paths with the 404 handler', async () => {
    const { routes, created, origin } = await start();
    expect(routes.update([service('a'), service('b')])).toEqual({ added: ['a', 'b'], changed: [], removed: [] });
    expect(await (await fetch(`${origin}/a/mcp`)).text()).toBe('a:1');
    expect(await (await fetch(`${origin}/b/mcp/`)).text()).toBe('b:1');
    const missing = await fetch(`${origin}/c/mcp`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'not_found' });

    expect(routes.update([service('a'), service('b', { version: 2 }), service('c')])).toEqual({ added: ['c'], changed: ['b'], removed: [] });
    expect(created.map((endpoint) => endpoint.label)).toEqual(['a:1', 'b:1', 'b:2', 'c:1']);
    expect(await (await fetch(`${origin}/b/mcp`)).text()).toBe('b:2');
    expect(await (await fetch(`${origin}/c/mcp`)).text()).toBe('c:1');
    expect(created[1]?.closed).toBe(true);
    expect(created[0]?.closed).toBe(false);
  });

  it('lets open requests of a changed or removed service finish before closing its endpoint', async () => {
    const { routes, created, origin } = await start();
    routes.update([service('a'), service('b')]);
    const heldA = await fetch(`${origin}/a/mcp?hold`);
    const heldB = await fetch(`${origin}/b/mcp?hold`);
    const readerA = heldA.body!.getReader();
    const readerB = heldB.body!.getReader();
    expect(new TextDecoder().decode((await readerA.read()).value)).toBe('a:1');

    expect(routes.update([service('a', { version: 2 })])).toEqual({ added: [], changed: ['a'], removed: ['b'] });
    expect((await fetch(`${origin}/b/mcp`)).status).toBe(404);
    expect(await (await fetch(`${origin}/a/mcp`)).text()).toBe('a:2');
    // The old endpoints still hold a response each: not closed yet.
    expect(created[0]?.closed).toBe(false);
    expect(created[1]?.closed).toBe(false);

    created[0]?.release();
    created[1]?.release();
    expect((await readerA.read()).done).toBe(true);
    await readerB.read();
    expect((await readerB.read()).done).toBe(true);
    await expect.poll(() => created[0]?.closed && created[1]?.closed).toBe(true);
    expect(created[2]?.closed).toBe(false);
  });

  it('closes a retired endpoint whose requests are still open after the service timeout', async () => {
    const { routes, created, origin } = await start();
    routes.update([service('a', { timeout_ms: 200 })]);
    const held = await fetch(`${origin}/a/mcp?hold`);
    const reader = held.body!.getReader();
    await reader.read();
    routes.update([]);
    expect(created[0]?.closed).toBe(false);
    await expect.poll(() => created[0]?.closed, { timeout: 2000 }).toBe(true);
    created[0]?.release();
    await reader.cancel();
  });

  it('routes WebSocket upgrades to the services in force', async () => {
    app = Fastify({ forceCloseConnections: true });
    app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ error: 'not_found' }));
    const routes = registerServiceRoutes(app, (routed: TestService) => ({
      handle: async (_request, reply) => reply.send(routed.id),
      // Answers the upgrade with a plain response naming the endpoint: enough to see where it went.
      upgrade: async (_req, socket) => {
        socket.end(`HTTP/1.1 418 I'm a teapot\r\nx-endpoint: ${routed.id}:${String(routed.definition.version ?? 1)}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      },
      close: async () => undefined,
    }), app.log);
    const origin = await app.listen({ host: '127.0.0.1', port: 0 });
    const upgradeTo = (path: string) => new Promise<{ status: number; endpoint: string | undefined }>((resolve, reject) => {
      const request = httpRequest(`${origin}${path}`, { headers: { connection: 'Upgrade', upgrade: 'websocket' } });
      request.on('response', (response) => {
        response.resume();
        resolve({ status: response.statusCode ?? 0, endpoint: response.headers['x-endpoint'] as string | undefined });
      });
      request.on('upgrade', () => reject(new Error('upgraded')));
      request.on('error', reject);
      request.end();
    });
    routes.update([service('a'), service('b')]);
    expect(await upgradeTo('/a/mcp')).toEqual({ status: 418, endpoint: 'a:1' });
    routes.update([service('a', { version: 2 })]);
    expect(await upgradeTo('/a/mcp/')).toEqual({ status: 418, endpoint: 'a:2' });
    expect((await upgradeTo('/b/mcp')).status).toBe(404);
  });

  it('changes nothing when a new endpoint cannot be built', async () => {
    const created: string[] = [];
    app = Fastify({ forceCloseConnections: true });
    const routes = registerServiceRoutes(app, (routed: TestService) => {
      if (routed.definition.broken) throw new Error('cannot build');
      created.push(routed.id);
      return { handle: async (_request, reply) => reply.send(routed.id), close: async () => undefined };
    }, app.log);
    const origin = await app.listen({ host: '127.0.0.1', port: 0 });
    routes.update([service('a')]);
    expect(() => routes.update([service('b'), service('c', { broken: true })])).toThrow('cannot build');
    expect(await (await fetch(`${origin}/a/mcp`)).text()).toBe('a');
    expect((await fetch(`${origin}/b/mcp`)).status).toBe(404);
  });
});
