/**
 * `/health` (the process is up: liveness) and `/ready` (it can serve: readiness), both JSON.
 *
 * /ready answers 503 `not_ready` while something every request needs is missing: the store, a
 * signing key, an identity provider's discovery. An MCP server that cannot be reached makes it
 * `degraded`, still 200: every replica reaches the same servers, so taking this one out of the
 * load balancer would help nobody, and a gateway that stays in can still answer that server's
 * clients with a clear JSON-RPC error (and every other service normally). Alert on `degraded`
 * (or on the upstream error metrics) instead. The shape is documented in docs/operations.md.
 */
import type { FastifyInstance } from 'fastify';
import type { SigningKeys } from '../authz/index.ts';
import type { IdentityProvider } from '../identity/index.ts';
import { upstreamTransport, type UpstreamTransport } from '../proxy/upstream-transport.ts';
import type { Store } from '../store/index.ts';
import { createReachabilityChecks, type Reachability, type ReachabilityChecks } from './upstream-reachability.ts';

/** A service as /ready looks at it. */
export interface ReadinessService {
  id: string;
  definition: {
    upstream?: string | undefined;
    transport?: UpstreamTransport | undefined;
    command?: readonly string[] | undefined;
    env?: Readonly<Record<string, string>> | undefined;
    cwd?: string | undefined;
  };
  /** Processes of a `command` service running now. */
  processes?: (() => number) | undefined;
}

export interface HealthParts {
  store: Store;
  identityProviders: ReadonlyMap<string, IdentityProvider>;
  keys?: Pick<SigningKeys, 'status'> | undefined;
  /** The services in force, read at each /ready (a reload changes them). */
  services?: (() => Iterable<ReadinessService>) | undefined;
  reachability?: ReachabilityChecks | undefined;
}

type ServiceState = Reachability & { transport: UpstreamTransport | 'stdio'; processes?: number };

function keyState(keys: HealthParts['keys']) {
  if (!keys) return { ready: true };
  const status = keys.status();
  return {
    ready: status.signing > 0,
    ...(status.signing === 0 ? { detail: 'no current signing key' } : {}),
    signing_keys: status.signing,
    published_keys: status.published,
    last_read_at: new Date(status.readAt).toISOString(),
    ...(status.refreshError !== undefined ? { last_read_error: status.refreshError } : {}),
  };
}

async function serviceState(service: ReadinessService, checks: ReachabilityChecks): Promise<ServiceState> {
  const { definition } = service;
  if (definition.command !== undefined) {
    const found = await checks.program({
      program: definition.command[0] ?? '',
      path: definition.env?.PATH ?? process.env.PATH,
      // A per-user directory ({{user.id_hash}}) is known only once someone signs in.
      cwd: definition.cwd?.includes('{{') ? undefined : definition.cwd,
    });
    return { transport: 'stdio', ...found, processes: service.processes?.() ?? 0 };
  }
  const transport = upstreamTransport(definition);
  return { transport, ...(await checks.upstream(definition.upstream ?? '')) };
}

/** A store failure is logged in full at most this often (/ready is polled every few seconds). */
const STORE_LOG_MS = 60_000;

/**
 * What /ready (public) says about a failed store ping: the engine, an error code when there is
 * one (`ECONNREFUSED`, `ENOTFOUND`), or that the store is closed. Never the message itself:
 * engines name the server's address (`connect ECONNREFUSED 10.0.0.5:6379`), host, user or
 * database there. The whole error goes to the log.
 */
export function storeFailureDetail(engine: string, error: unknown): string {
  const messages: string[] = [];
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    messages.push(cause.message);
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code) && code !== 'STORE_UNAVAILABLE') messages.push(code);
  }
  return `${engine} store unavailable${failureKind(messages.join(' '))}`;
}

/** ` (ECONNREFUSED)`, ` (closed)`, ` (timeout)` or nothing: what failed, without addresses. */
function failureKind(text: string): string {
  const what = /\b(E[A-Z][A-Z0-9_]{2,})\b/.exec(text)?.[1]
    ?? (/\bclosed\b/i.test(text) ? 'closed' : /time(?:d)? ?out/i.test(text) ? 'timeout' : undefined);
  return what ? ` (${what})` : '';
}

/**
 * An identity provider's readiness for /ready: its discovery error names the issuer's URL and
 * the address it resolved to (`connect ECONNREFUSED 10.0.0.7:8443`), which stay in the log.
 */
function providerState(state: { ready: boolean; detail?: string | undefined }): { ready: boolean; detail?: string | undefined } {
  if (!state.ready && state.detail?.startsWith('discovery of ')) return { ready: false, detail: `discovery failed${failureKind(state.detail)}` };
  return state;
}

export function registerHealthRoutes(app: FastifyInstance, parts: HealthParts): void {
  const checks = parts.reachability ?? createReachabilityChecks();
  let storeLoggedAt = 0;
  const storeFailed = (error: unknown) => {
    if (Date.now() - storeLoggedAt > STORE_LOG_MS) {
      storeLoggedAt = Date.now();
      app.log.warn({ event: 'ready.store_unavailable', err: error }, 'readiness: the store did not answer a ping');
    }
    return { ready: false, detail: storeFailureDetail(parts.store.engine, error) };
  };

  app.get('/health', async (_request, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }));

  app.get('/ready', async (_request, reply) => {
    const services = [...(parts.services?.() ?? [])];
    const [store, serviceStates] = await Promise.all([
      parts.store.ping().then(() => ({ ready: true }), storeFailed),
      Promise.all(services.map(async (service) => [service.id, await serviceState(service, checks)] as const)),
    ]);
    const keys = keyState(parts.keys);
    const providers = Object.fromEntries([...parts.identityProviders.values()].map((idp) => [idp.id, providerState(idp.readiness())]));
    const ready = store.ready && keys.ready && Object.values(providers).every((state) => state.ready);
    const degraded = serviceStates.some(([, state]) => !state.ready);
    return reply.code(ready ? 200 : 503).header('cache-control', 'no-store').send({
      status: ready ? (degraded ? 'degraded' : 'ready') : 'not_ready',
      store: { engine: parts.store.engine, ...store },
      keys,
      identity_providers: providers,
      services: Object.fromEntries(serviceStates),
    });
  });
}
