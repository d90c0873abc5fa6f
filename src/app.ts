/**
 * The composition root: the only place where concrete parts are wired together.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { DestinationStream } from 'pino';
import { randomUUID } from 'node:crypto';
import { isLoopbackHost, type Config, type ServiceConfig } from './config/index.ts';
import {
  accountClaims, clientRedirectSource, createAuthorizationServer, createServiceCatalog, createUpstreamTokens, loadAccount, loadSigningKeys,
  mountAuthorizationServer, registerConsentRoutes, registerSignInRoutes, showConsent, type Account, type InteractionContext, type ProtectedService, type ServiceCatalog,
} from './authz/index.ts';
import { createIdentityProviders } from './identity/index.ts';
import { decideAccess } from './policy/index.ts';
import { createBearerVerifier, PRM_PREFIX, protectedResourceMetadata } from './resource/index.ts';
import { createAccountRefresher } from './authz/account-refresh.ts';
import { createMcpEndpoint } from './proxy/mcp-endpoint.ts';
import { registerServiceRoutes } from './proxy/service-routes.ts';
import { registerForwardAuth } from './proxy/forward-auth.ts';
import { createIdentityAssertionSigner } from './proxy/identity-assertion.ts';
import { createSessionOwners } from './proxy/session-owners.ts';
import { createSealer, createStore, deriveSecret, StoreUnavailableError, type Store } from './store/index.ts';
import { createLogger } from './ops/logger.ts';
import { registerHealthRoutes } from './ops/health.ts';
import { apiSecurityHeaders } from './ops/security-headers.ts';
import { trackUnusedConnections } from './ops/connections.ts';
import { registerRateLimits } from './ops/rate-limits.ts';
import { registerGracefulShutdown } from './ops/shutdown.ts';
import { CircuitBreakers } from './proxy/circuit-breaker.ts';
import { OpenStreams } from './proxy/open-streams.ts';
import { auditAuthorizationServer, createAuditLog } from './ops/audit.ts';
import { createConfigReloader, type ReloadResult } from './ops/config-reload.ts';
import { createTracing, traceRequests } from './ops/tracing.ts';
import { createMetrics } from './ops/metrics.ts';
import { measureRequests } from './ops/request-metrics.ts';
import { logRequests } from './ops/request-log.ts';
import { requestLoggerFactory } from './ops/request-logger.ts';
import { exposeMetrics } from './ops/metrics-endpoint.ts';
import { countAuditEvents } from './ops/audit-metrics.ts';
import { timedStore } from './store/timed.ts';

export interface GatewayOptions {
  /** Where logs go (default stdout). */
  logDestination?: DestinationStream;
  /** The fetch oidc-provider uses for client ID metadata documents (tests add a CA). */
  cimdFetch?: typeof fetch;
}

export interface Gateway {
  app: FastifyInstance;
  store: Store;
  issuer: string;
  /** The address it listens on, e.g. http://127.0.0.1:8080. */
  listenUrl: string;
  logger: Logger;
  /** How long close() lets requests under way finish (`shutdown.grace_seconds`). */
  shutdownGraceSeconds: number;
  /** The services in force (a reload replaces them). */
  services: ServiceCatalog;
  /**
   * Puts a new configuration in force without dropping connections (ops/config-reload.ts);
   * throws ConfigError, and changes nothing, when it cannot. `source` names it in errors.
   */
  reload(config: Config, source?: string): Promise<ReloadResult>;
  /** Where `metrics.listen` serves /metrics (`http://127.0.0.1:9464`); absent without it. */
  metricsUrl?: string | undefined;
  close(): Promise<void>;
}

const ACCOUNT_CACHE_MS = 30_000;

/**
 * Caches accounts briefly: identity headers and policy on every request without a store read
 * each time. `forget` drops one after it was saved anew (membership re-read at a refresh).
 */
function cachedAccounts(store: Store) {
  const cache = new Map<string, { account: Account | undefined; at: number }>();
  const load = async (accountId: string) => {
    const hit = cache.get(accountId);
    if (hit && Date.now() - hit.at < ACCOUNT_CACHE_MS) return hit.account;
    const account = await loadAccount(store, accountId);
    if (cache.size > 10_000) cache.clear();
    cache.set(accountId, { account, at: Date.now() });
    return account;
  };
  return Object.assign(load, { forget: (accountId: string) => void cache.delete(accountId) });
}

export async function startGateway(config: Config, options: GatewayOptions = {}): Promise<Gateway> {
  const logger = createLogger({ level: config.log.level, ...(options.logDestination ? { destination: options.logDestination } : {}) });
  // Metrics off: undefined, and nothing is measured anywhere.
  const metrics = config.metrics.enabled ? createMetrics() : undefined;
  const auditLog = createAuditLog({ file: config.log.audit_file, logger });
  const audit = metrics ? countAuditEvents(auditLog, metrics, config.clients.static) : auditLog;
  const issuer = config.public_url;
  const secure = issuer.startsWith('https:');
  const engine = await createStore(config.store);
  const store = metrics ? timedStore(engine, metrics.storeOperation) : engine;
  const sealer = createSealer(config.secrets.encryption_key, config.secrets.previous_encryption_keys);
  const keys = await loadSigningKeys(store, sealer, {
    onRefreshError: (error) => logger.warn({ err: error }, 'signing keys could not be re-read; the ones in force stay'),
  }).catch(async (error: unknown) => {
    // A gateway that cannot start must not keep its store open (tests, dev mode, embedders).
    await store.close();
    throw error;
  });
  const services = createServiceCatalog(issuer, config.services);
  const identityProviders = createIdentityProviders(config, (provider, issuerUrl, error, attempt) => {
    logger.error({ provider, issuer: issuerUrl, attempt, err: error }, 'identity provider discovery failed; retrying');
  });
  // A reload puts another policy in force (setAccess below).
  let access = config.access;
  const cached = cachedAccounts(store);
  // People of an identity provider the configuration no longer has (a reload or restart removed
  // it) are refused at every MCP request and refresh, not only at their next sign-in.
  const configured = (account: Account | undefined) => (account && identityProviders.has(account.provider) ? account : undefined);
  const accounts = Object.assign(async (accountId: string) => configured(await cached(accountId)), { forget: cached.forget });
  const upstreamTokens = createUpstreamTokens({ store, sealer, services, identityProviders, log: logger });
  const refreshAccount = createAccountRefresher({ store, identityProviders, upstreamTokens, log: logger, onSaved: accounts.forget });

  const provider = authorizationServer(config, {
    upstreamTokens, store, keys, services,
    findAccount: async (accountId, use) => {
      let account = configured(await loadAccount(store, accountId));
      // A refresh re-reads membership at the provider (GitHub orgs/teams) before the policy.
      if (account && use?.refresh) account = await refreshAccount(account);
      if (!account || !decideAccess(access, account).allowed) return undefined;
      return accountClaims(account);
    },
    ...(options.cimdFetch ? { fetch: options.cimdFetch } : {}),
  });

  // Off: undefined, and the OpenTelemetry SDK is not even loaded.
  const tracing = await createTracing(config.tracing, logger);
  const app = createHttpServer(config, logger);
  if (tracing) traceRequests(app, tracing);
  if (metrics) measureRequests(app, metrics);

  const connections = trackUnusedConnections(app.server);
  // First among the preClose hooks: the server stops accepting before the others run.
  const streams = new OpenStreams();
  const shutdown = registerGracefulShutdown(app, { streams, graceMs: config.shutdown.grace_seconds * 1000, log: logger, closeUnused: () => connections.closeUnused() });
  // Before the authorization server's routes, which it puts itself in front of.
  const rateLimits = registerRateLimits(app, {
    config: config.rate_limits, store, keySecret: deriveSecret(config.secrets.encryption_key, 'rate-limits'), secure, log: logger,
    onLimited: metrics ? (endpoint, scope) => metrics.rateLimited(endpoint, scope) : undefined,
  });
  mountAuthorizationServer(app, provider, issuer);

  auditAuthorizationServer(provider, audit, logger);
  const interactionContext: InteractionContext = {
    provider, store, services, identityProviders, access, issuer, secure, upstreamTokens, audit,
    csrfSecret: deriveSecret(config.secrets.encryption_key, 'csrf'),
    showConsent: async (_request, reply, details) => showConsent(interactionContext, reply, details),
    clientRedirectSource: async (uid) => clientRedirectSource(provider, uid),
  };
  registerSignInRoutes(app, interactionContext);
  registerConsentRoutes(app, interactionContext);

  const { reload } = await serveProtectedServices(app, {
    config, services, identityProviders, keys, store, accounts, upstreamTokens, audit, metrics, tracing, streams, logger,
    setAccess: (next) => {
      access = next;
      interactionContext.access = next;
    },
    setRateLimits: (next) => rateLimits.update(next),
  });
  const metricsExposure = metrics ? await exposeMetrics(app, metrics, config.metrics) : undefined;

  await app.listen({ host: config.listen.host, port: config.listen.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;

  return {
    app,
    store,
    issuer,
    logger,
    services,
    reload,
    listenUrl: `http://${host}:${port}`,
    shutdownGraceSeconds: config.shutdown.grace_seconds,
    metricsUrl: metricsExposure?.url,
    async close() {
      const closing = app.close();
      connections.closeUnused();
      await closing;
      // Requests under way finish, or the shutdown deadline cuts them (ops/shutdown.ts).
      await shutdown.drained();
      await metricsExposure?.close();
      // Spans of the requests that just finished still go out (bounded: a dead collector does not hold shutdown).
      await tracing?.shutdown();
      for (const idp of identityProviders.values()) idp.close();
      await keys.close();
      await store.close();
      await audit.flush();
    },
  };
}

/** What the protected services are wired from (startGateway's parts). */
interface ProtectedServiceParts {
  config: Config;
  services: ReturnType<typeof createServiceCatalog<ServiceConfig>>;
  identityProviders: ReturnType<typeof createIdentityProviders>;
  keys: Awaited<ReturnType<typeof loadSigningKeys>>;
  store: Store;
  accounts: (accountId: string) => Promise<Account | undefined>;
  upstreamTokens: ReturnType<typeof createUpstreamTokens>;
  audit: ReturnType<typeof createAuditLog>;
  metrics: ReturnType<typeof createMetrics> | undefined;
  tracing: Awaited<ReturnType<typeof createTracing>>;
  streams: OpenStreams;
  logger: Logger;
  /** A reload put another access policy in force: the parts outside the services take it. */
  setAccess(next: Config['access']): void;
  setRateLimits(next: Config['rate_limits']): void;
}

/**
 * The protected side: each service's metadata and MCP endpoint (one wildcard route, so a
 * reload can add, change and remove services), ForwardAuth, the reloader, and /health and /ready.
 */
async function serveProtectedServices(app: FastifyInstance, parts: ProtectedServiceParts): Promise<{ reload: Gateway['reload'] }> {
  const { config, services, identityProviders, keys, store, upstreamTokens, audit, metrics, logger } = parts;
  const issuer = config.public_url;
  registerProtectedResourceMetadata(app, services, issuer);
  const endpointContext = {
    issuer,
    access: config.access,
    verifier: await createBearerVerifier({ issuer, keys, store }),
    signIdentity: await createIdentityAssertionSigner(issuer, keys),
    // A reload changes the set in place.
    allowedOrigins: new Set<string>(config.cors.allowed_origins),
    allowLoopbackOrigins: isLoopbackHost(config.listen.host),
    loadAccount: parts.accounts,
    upstreamTokens,
    audit,
    sessions: createSessionOwners(store),
    metrics,
    tracing: parts.tracing,
    breakers: new CircuitBreakers({ log: logger, onStateChange: metrics ? (service, state) => metrics.circuitStateChanged(service, state) : undefined }),
    streams: parts.streams,
  };
  const serviceRoutes = registerServiceRoutes(app, (service: ProtectedService<ServiceConfig>) => createMcpEndpoint(app, service, endpointContext), logger);
  serviceRoutes.update(services.all());
  const forwardAuthContext = config.forward_auth.enabled ? { ...endpointContext, services, allowedIps: config.forward_auth.allowed_ips } : undefined;
  if (forwardAuthContext) registerForwardAuth(app, forwardAuthContext);
  const reload = createConfigReloader(config, {
    issuer,
    services,
    routes: serviceRoutes,
    identityProviders,
    allowedOrigins: endpointContext.allowedOrigins,
    logger,
    devPages: config.identity_providers.some((idp) => idp.type === 'dev'),
    setRateLimits: parts.setRateLimits,
    setAccess: (next) => {
      parts.setAccess(next);
      endpointContext.access = next;
      if (forwardAuthContext) forwardAuthContext.access = next;
    },
  });
  registerHealthRoutes(app, {
    store, identityProviders, keys,
    services: () => services.all().map((service) => ({ ...service, processes: serviceRoutes.endpointOf(service.id)?.processes })),
  });
  return { reload };
}

type AuthorizationServerOptions = Parameters<typeof createAuthorizationServer>[0];

/** oidc-provider, configured from the file: token lifetimes, registration, CIMD, static clients. */
function authorizationServer(
  config: Config,
  parts: Pick<AuthorizationServerOptions, 'upstreamTokens' | 'store' | 'keys' | 'services' | 'findAccount' | 'fetch'>,
): ReturnType<typeof createAuthorizationServer> {
  return createAuthorizationServer({
    ...parts,
    issuer: config.public_url,
    secure: config.public_url.startsWith('https:'),
    cookieKeys: [deriveSecret(config.secrets.encryption_key, 'cookies').toString('base64url')],
    tokens: {
      accessTtlSeconds: config.tokens.access_ttl_seconds,
      refreshTtlDays: config.tokens.refresh_ttl_days,
      refreshGraceSeconds: config.tokens.refresh_grace_seconds,
      codeTtlSeconds: config.tokens.code_ttl_seconds,
    },
    registration: { enabled: config.clients.registration.enabled },
    cimd: { enabled: config.clients.cimd.enabled, allowLoopback: config.clients.cimd.allow_loopback },
    staticClients: config.clients.static.map((client) => ({
      client_id: client.client_id,
      ...(client.client_secret ? { client_secret: client.client_secret } : {}),
      client_name: client.name,
      redirect_uris: [...client.redirect_uris],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? (client.client_secret ? 'client_secret_post' : 'none'),
    })),
  });
}

/**
 * The HTTP server: request ids, the form parser, security headers on every answer Fastify
 * sends, and errors as OAuth-shaped JSON (a store outage as 503, never a stack trace).
 */
function createHttpServer(config: Config, logger: Logger): FastifyInstance {
  // Typed as the default instance: the pino logger is Fastify's base logger plus extras.
  const app = Fastify({
    loggerInstance: logger,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,100}$/.test(given) ? given : randomUUID();
    },
    trustProxy: config.trust_proxy as boolean,
    bodyLimit: 64 * 1024,
    return503OnClosing: true,
    // One access-log line per request instead (ops/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    // request.log is made only when a line is written (ops/request-logger.ts).
    childLoggerFactory: requestLoggerFactory,
  }) as unknown as FastifyInstance;
  logRequests(app);
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(String(body))));
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('content-security-policy')) reply.headers(apiSecurityHeaders({ cacheable: reply.hasHeader('cache-control') }));
    return payload;
  });
  app.setErrorHandler(async (error: Error & { statusCode?: number }, request, reply) => {
    if (error instanceof StoreUnavailableError) {
      request.log.error({ err: error }, 'store unavailable');
      return reply.code(503).header('retry-after', '5').send({ error: 'temporarily_unavailable', error_description: 'the gateway cannot reach its store; try again shortly' });
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: 'invalid_request', error_description: error.message });
    }
    request.log.error({ err: error }, 'unexpected error');
    return reply.code(500).send({ error: 'server_error', error_description: 'an unexpected error occurred' });
  });
  app.setNotFoundHandler(async (request, reply) => reply.code(404).send({ error: 'not_found', error_description: `nothing is served at ${request.url.split('?')[0]}` }));

  return app;
}

function registerProtectedResourceMetadata(app: FastifyInstance, services: ReturnType<typeof createServiceCatalog>, issuer: string): void {
  const cors = { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, OPTIONS', 'access-control-allow-headers': '*' };
  const answer = async (request: { url: string; method: string }, reply: import('fastify').FastifyReply) => {
    if (request.method === 'OPTIONS') return reply.code(204).headers(cors).send();
    const path = request.url.split('?')[0]?.slice(PRM_PREFIX.length) ?? '';
    const service = path === '' || path === '/' ? services.defaultService() : services.byPath(path);
    if (!service) {
      return reply.code(404).headers(cors).send({ error: 'not_found', error_description: 'no protected resource is described at this address' });
    }
    return reply.headers({ ...cors, 'cache-control': 'public, max-age=300' }).send(protectedResourceMetadata(service, issuer));
  };
  app.route({ method: ['GET', 'OPTIONS'], url: PRM_PREFIX, handler: answer });
  app.route({ method: ['GET', 'OPTIONS'], url: `${PRM_PREFIX}/*`, handler: answer });
}
