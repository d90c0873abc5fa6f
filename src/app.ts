/**
 * The composition root: the only place where concrete parts are wired together.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { DestinationStream } from 'pino';
import { randomUUID } from 'node:crypto';
import { isLoopbackHost, type Config } from './config/index.ts';
import {
  accountClaims, clientRedirectSource, createAuthorizationServer, createServiceCatalog, createUpstreamTokens, loadAccount, loadSigningKeys,
  mountAuthorizationServer, registerConsentRoutes, registerSignInRoutes, showConsent, type Account, type InteractionContext,
} from './authz/index.ts';
import { createIdentityProviders } from './identity/index.ts';
import { decideAccess } from './policy/index.ts';
import { createBearerVerifier, PRM_PREFIX, protectedResourceMetadata } from './resource/index.ts';
import { createAccountRefresher } from './authz/account-refresh.ts';
import { registerMcpEndpoint } from './proxy/mcp-endpoint.ts';
import { registerForwardAuth } from './proxy/forward-auth.ts';
import { createIdentityAssertionSigner } from './proxy/identity-assertion.ts';
import { createSessionOwners } from './proxy/session-owners.ts';
import { createSealer, createStore, deriveSecret, StoreUnavailableError, type Store } from './store/index.ts';
import { createLogger } from './ops/logger.ts';
import { registerHealthRoutes } from './ops/health.ts';
import { apiSecurityHeaders } from './ops/security-headers.ts';
import { trackUnusedConnections } from './ops/connections.ts';
import { auditAuthorizationServer, createAuditLog } from './ops/audit.ts';

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
  const audit = createAuditLog({ file: config.log.audit_file, logger });
  const issuer = config.public_url;
  const secure = issuer.startsWith('https:');
  const store = await createStore(config.store);
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
  const access = config.access;
  const accounts = cachedAccounts(store);
  const upstreamTokens = createUpstreamTokens({ store, sealer, services, identityProviders, log: logger });
  const refreshAccount = createAccountRefresher({ store, identityProviders, upstreamTokens, log: logger, onSaved: accounts.forget });

  const provider = createAuthorizationServer({
    upstreamTokens,
    issuer,
    store,
    keys,
    services,
    secure,
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
    findAccount: async (accountId, use) => {
      let account = await loadAccount(store, accountId);
      // A refresh re-reads membership at the provider (GitHub orgs/teams) before the policy.
      if (account && use?.refresh) account = await refreshAccount(account);
      if (!account || !decideAccess(access, account).allowed) return undefined;
      return accountClaims(account);
    },
    ...(options.cimdFetch ? { fetch: options.cimdFetch } : {}),
  });

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
  }) as unknown as FastifyInstance;
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

  const connections = trackUnusedConnections(app.server);
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

  registerProtectedResourceMetadata(app, services, issuer);
  const endpointContext = {
    issuer,
    access,
    verifier: await createBearerVerifier({ issuer, keys, store }),
    signIdentity: await createIdentityAssertionSigner(issuer, keys),
    allowedOrigins: new Set<string>(),
    allowLoopbackOrigins: isLoopbackHost(config.listen.host),
    loadAccount: accounts,
    upstreamTokens,
    audit,
  };
  const sessions = createSessionOwners(store);
  for (const service of services.all()) registerMcpEndpoint(app, service, { ...endpointContext, sessions });
  if (config.forward_auth.enabled) registerForwardAuth(app, { ...endpointContext, services, allowedIps: config.forward_auth.allowed_ips });
  registerHealthRoutes(app, { store, identityProviders });

  await app.listen({ host: config.listen.host, port: config.listen.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;

  return {
    app,
    store,
    issuer,
    logger,
    listenUrl: `http://${host}:${port}`,
    async close() {
      const closing = app.close();
      connections.closeUnused();
      await closing;
      for (const idp of identityProviders.values()) idp.close();
      await keys.close();
      await store.close();
      await audit.flush();
    },
  };
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
