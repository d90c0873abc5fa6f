/**
 * The protected MCP endpoints as a table that a configuration reload changes while the gateway
 * serves. Fastify cannot add or remove routes once it listens, so one wildcard route, and the
 * server's WebSocket upgrade listener (websocket.ts), look each request's path up here.
 *
 * Fastify prefers static and parametric routes to a wildcard, so the gateway's own paths
 * (authorization server, metadata, sign-in, health) never reach this table; the configuration
 * schema keeps service paths off them (`reservedPaths`).
 *
 * `update` keeps the endpoint of every service whose definition is unchanged (deep equality of
 * its configuration): its stdio processes, legacy SSE sessions and open streams carry on. A new
 * or changed service gets a new endpoint. The endpoint of a changed or removed service retires:
 * new requests go to its successor (or get 404), requests already in it finish, and once none
 * is left it is closed: its stdio processes stop, its legacy SSE sessions end. A retired
 * endpoint whose requests are still open after the service's `timeout_ms` (an event stream
 * never ends by itself) is closed then.
 */
import { isDeepStrictEqual } from 'node:util';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ProtectedService, ServiceDefinition } from '../authz/index.ts';
import { webSocketRoutes, type WebSocketUpgrade } from './websocket.ts';

export interface ServiceEndpoint {
  /** Answers a request for the service's path: an onRequest handler that sends or hijacks the reply. */
  handle(request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
  /** A WebSocket service's upgrade handler. */
  upgrade?: WebSocketUpgrade | undefined;
  /** Processes a `command` service runs now (for /ready). */
  processes?: (() => number) | undefined;
  /** Stops what the endpoint runs (stdio processes, legacy SSE sessions); called once. */
  close(): Promise<void>;
}

export type RoutedService = ProtectedService<ServiceDefinition & { timeout_ms: number }>;

export interface ServiceChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

export interface ServiceRoutes<S extends RoutedService = RoutedService> {
  /**
   * Serves exactly `services` from now on and says what changed. Builds the new endpoints
   * first: when one cannot be built, it throws and nothing changes.
   */
  update(services: readonly S[]): ServiceChanges;
  /** The endpoint in force for the service with this id. */
  endpointOf(id: string): ServiceEndpoint | undefined;
}

interface Entry<S extends RoutedService> {
  service: S;
  endpoint: ServiceEndpoint;
  /** Requests in the endpoint now. */
  active: number;
  retired: boolean;
  closing?: Promise<void> | undefined;
  deadline?: NodeJS.Timeout | undefined;
  /** Listener for the end of each of its responses; one per entry, not one per request. */
  done(): void;
}

const METHODS = ['GET', 'POST', 'DELETE', 'OPTIONS'] as const;

function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/**
 * Registers the wildcard route and WebSocket upgrade handling (before the server listens) and
 * returns the table, empty: `update` fills it.
 */
export function registerServiceRoutes<S extends RoutedService>(
  app: FastifyInstance,
  createEndpoint: (service: S) => ServiceEndpoint,
  log: FastifyBaseLogger,
): ServiceRoutes<S> {
  type Routed = Entry<S>;
  let entries = new Map<string, Routed>();
  let byPath = new Map<string, Routed>();
  const retiring = new Set<Routed>();
  const upgrades = webSocketRoutes(app);

  const shut = (entry: Routed): Promise<void> => {
    if (!entry.closing) {
      clearTimeout(entry.deadline);
      retiring.delete(entry);
      entry.closing = entry.endpoint.close().catch((error: unknown) => {
        log.error({ err: error, service: entry.service.id }, 'closing a service endpoint failed');
      });
    }
    return entry.closing;
  };

  const open = (service: S): Routed => {
    const entry: Routed = {
      service,
      endpoint: createEndpoint(service),
      active: 0,
      retired: false,
      done: () => {
        entry.active -= 1;
        if (entry.retired && entry.active === 0) void shut(entry);
      },
    };
    return entry;
  };

  const retire = (entry: Routed): void => {
    entry.retired = true;
    if (entry.active === 0) {
      void shut(entry);
      return;
    }
    retiring.add(entry);
    entry.deadline = setTimeout(() => {
      log.warn({ event: 'config.endpoint_closed', service: entry.service.id, open: entry.active },
        'the previous endpoint of a changed or removed service still has open requests; closing it (its stdio processes and legacy SSE sessions end)');
      void shut(entry);
    }, entry.service.definition.timeout_ms);
    entry.deadline.unref();
  };

  const route = async (request: FastifyRequest, reply: FastifyReply) => {
    const entry = byPath.get(pathOf(request.url));
    if (entry === undefined) return reply.callNotFound();
    entry.active += 1;
    reply.raw.on('close', entry.done);
    return entry.endpoint.handle(request, reply);
  };
  app.route({ method: [...METHODS], url: '/*', onRequest: route, handler: async () => undefined });
  // At shutdown every endpoint closes, retiring ones included.
  app.addHook('preClose', async () => {
    await Promise.all([...entries.values(), ...retiring].map(shut));
  });

  return {
    update(services) {
      const next = new Map<string, Routed>();
      const created: Routed[] = [];
      try {
        for (const service of services) {
          const kept = entries.get(service.id);
          if (kept && isDeepStrictEqual(kept.service.definition, service.definition)) {
            next.set(service.id, kept);
          } else {
            const entry = open(service);
            created.push(entry);
            next.set(service.id, entry);
          }
        }
      } catch (error) {
        for (const entry of created) void shut(entry);
        throw error;
      }
      const previous = entries;
      entries = next;
      byPath = new Map([...next.values()].flatMap((entry) => [[entry.service.path, entry], [`${entry.service.path}/`, entry]]));
      for (const entry of previous.values()) {
        upgrades.delete(entry.service.path);
        upgrades.delete(`${entry.service.path}/`);
      }
      for (const entry of next.values()) {
        if (!entry.endpoint.upgrade) continue;
        upgrades.set(entry.service.path, entry.endpoint.upgrade);
        upgrades.set(`${entry.service.path}/`, entry.endpoint.upgrade);
      }
      const changes: ServiceChanges = { added: [], changed: [], removed: [] };
      for (const [id, entry] of next) {
        const before = previous.get(id);
        if (!before) changes.added.push(id);
        else if (before !== entry) changes.changed.push(id);
      }
      for (const [id, entry] of previous) {
        if (next.get(id) === entry) continue;
        if (!next.has(id)) changes.removed.push(id);
        retire(entry);
      }
      return changes;
    },
    endpointOf: (id) => entries.get(id)?.endpoint,
  };
}
