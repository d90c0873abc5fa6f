/**
 * Rate limits on the authorization server's open doors (`rate_limits`), checked before
 * oidc-provider sees the request:
 *
 *   POST /register    per IP, per client metadata (client_name + redirect_uris), and globally:
 *                     hosted clients register for all their users from a few addresses, so an
 *                     address alone says little (DESIGN.md)
 *   GET  /authorize   per IP and per client_id
 *   POST /token       per IP and per client (Basic credentials, client_id, or assertion subject)
 *
 * Counters are fixed windows in the store (`Store.increment`), so every replica on one Redis or
 * Postgres counts together. Keys hold an HMAC of the address or client, never the value. The
 * checks run in the order above; a request refused by one is not counted by the next, so
 * a flood from one address does not use up a client's allowance everywhere.
 *
 * Over a limit: 429 with `Retry-After` (RFC 6585 §4). On /register and /token an OAuth-shaped
 * JSON body with `temporarily_unavailable` (RFC 6749 has no rate-limit code; that is the
 * registered one for "try again later", and the status carries the rest); on /authorize, a page
 * for the person in the browser, never a redirect (the redirect URI is not verified yet).
 *
 * The limits are reloadable (`update`, ops/config-reload.ts); counts in the current windows stay.
 *
 * When the store cannot count, requests pass (logged): the endpoint itself answers 503 if it
 * needs the store, and an outage of the counters must not lock everyone out.
 */
import { createHmac } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { errorPage, STYLE_HASH } from '../authz/views/index.ts';
import type { Config } from '../config/index.ts';
import { OAuthError } from '../errors/index.ts';
import type { Store } from '../store/index.ts';
import { PEEK_LIMIT, peekBody, registrationMetadata, tokenRequestClient } from './rate-limit-keys.ts';
import { securityHeaders } from './security-headers.ts';

export type RateLimitedEndpoint = 'registration' | 'authorize' | 'token';
export type RateLimitScope = 'ip' | 'client' | 'client_metadata' | 'global';

type RateLimitsConfig = Config['rate_limits'];
type Limit = { readonly limit: number; readonly window_seconds: number } | null;

export interface RateLimitOptions {
  config: RateLimitsConfig;
  store: Store;
  /** Keys the HMAC of addresses and clients in counter names. */
  keySecret: Buffer;
  /** Whether pages are served over https (HSTS on the authorize page). */
  secure: boolean;
  log: FastifyBaseLogger;
  /** Called for every refused request (metrics). */
  onLimited?: ((endpoint: RateLimitedEndpoint, scope: RateLimitScope) => void) | undefined;
}

const ROUTES: Readonly<Record<string, { method: string; endpoint: RateLimitedEndpoint }>> = {
  '/register': { method: 'POST', endpoint: 'registration' },
  '/authorize': { method: 'GET', endpoint: 'authorize' },
  '/token': { method: 'POST', endpoint: 'token' },
};

/** How long the token and registration bodies may take to arrive before only the address is counted. */
const PEEK_TIMEOUT_MS = 5000;
/** A store outage is logged at most this often. */
const OUTAGE_LOG_MS = 60_000;

/**
 * Puts the limits in front of the routes above as they are registered: call before
 * mountAuthorizationServer. Other routes get nothing, so proxied requests pay nothing.
 */
export function registerRateLimits(app: FastifyInstance, options: RateLimitOptions): { update(config: RateLimitsConfig): void } {
  // A reload puts other limits in force (ops/config-reload.ts); turned off, the hooks stay and pass.
  let config = options.config;
  const check = createRateLimitCheck(options, () => config);
  app.addHook('onRoute', (route: RouteOptions) => {
    const target = ROUTES[route.url];
    if (!target) return;
    const endpoint = target.endpoint;
    const hook = async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.method !== target.method || !config.enabled) return;
      await check(endpoint, request, reply);
    };
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [hook, ...existing];
  });
  return {
    update(next) {
      config = next;
    },
  };
}

function createRateLimitCheck(options: RateLimitOptions, limits: () => RateLimitsConfig) {
  const { store, keySecret, log } = options;
  let outageLoggedAt = 0;
  const digest = (value: string) => createHmac('sha256', keySecret).update(value).digest('base64url').slice(0, 22);

  /** Counts one request against `limit`; the seconds until its window ends when over it. */
  const count = async (endpoint: RateLimitedEndpoint, scope: RateLimitScope, value: string, limit: Limit): Promise<number | undefined> => {
    if (!limit) return undefined;
    const now = Date.now() / 1000;
    const slot = Math.floor(now / limit.window_seconds);
    const key = `rl:${endpoint}:${scope}:${digest(value)}:${slot}`;
    let used: number;
    try {
      used = await store.increment(key, limit.window_seconds);
    } catch (error) {
      if (Date.now() - outageLoggedAt > OUTAGE_LOG_MS) {
        outageLoggedAt = Date.now();
        log.error({ event: 'rate_limit.store_error', err: error }, 'rate limits cannot be counted (store unreachable); requests pass unlimited');
      }
      return undefined;
    }
    return used > limit.limit ? Math.max(1, Math.ceil((slot + 1) * limit.window_seconds - now)) : undefined;
  };

  /** The scopes of one endpoint in order, each with its limit and its key (which may need the body). */
  const scopesOf = (endpoint: RateLimitedEndpoint, request: FastifyRequest): Array<[RateLimitScope, Limit, () => Promise<string | undefined>]> => {
    const config = limits();
    const ip = async () => request.ip;
    if (endpoint === 'registration') {
      const limits = config.registration;
      return [
        ['ip', limits.per_ip, ip],
        ['global', limits.global, async () => 'all'],
        ['client_metadata', limits.per_client_metadata, async () => registrationMetadata(await peekBody(request.raw, PEEK_LIMIT, PEEK_TIMEOUT_MS))],
      ];
    }
    if (endpoint === 'authorize') {
      const clientId = (request.query as Record<string, unknown> | undefined)?.client_id;
      return [
        ['ip', config.authorize.per_ip, ip],
        ['client', config.authorize.per_client, async () => (typeof clientId === 'string' ? clientId : undefined)],
      ];
    }
    return [
      ['ip', config.token.per_ip, ip],
      ['client', config.token.per_client, async () => {
        const authorization = request.headers.authorization;
        const basic = tokenRequestClient(authorization, undefined);
        return basic ?? tokenRequestClient(undefined, await peekBody(request.raw, PEEK_LIMIT, PEEK_TIMEOUT_MS));
      }],
    ];
  };

  return async (endpoint: RateLimitedEndpoint, request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    for (const [scope, limit, keyOf] of scopesOf(endpoint, request)) {
      if (!limit) continue;
      const value = await keyOf();
      if (value === undefined) continue;
      const retryAfter = await count(endpoint, scope, value, limit);
      if (retryAfter === undefined) continue;
      request.log.warn({ event: 'rate_limit.refused', endpoint, scope, retry_after: retryAfter }, `rate limit reached: ${endpoint} ${scope}`);
      options.onLimited?.(endpoint, scope);
      refuse(reply, endpoint, scope, retryAfter, options.secure);
      return;
    }
  };
}

const DESCRIPTIONS: Readonly<Record<RateLimitScope, string>> = {
  ip: 'too many requests from this network address',
  client: 'too many requests for this client',
  client_metadata: 'too many registrations of this client',
  global: 'too many registrations right now',
};

function refuse(reply: FastifyReply, endpoint: RateLimitedEndpoint, scope: RateLimitScope, retryAfter: number, secure: boolean): void {
  const description = `${DESCRIPTIONS[scope]}; try again in ${retryAfter} s`;
  reply.code(429).header('retry-after', String(retryAfter));
  if (endpoint === 'authorize') {
    void reply.headers(securityHeaders({ styleHash: STYLE_HASH, https: secure })).type('text/html; charset=utf-8')
      .send(errorPage({
        title: 'Too many sign-in attempts',
        message: `Too many sign-in requests came ${scope === 'ip' ? 'from your network' : 'for this application'} just now. Wait ${retryAfter} seconds, then connect again from your application.`,
        status: 429,
      }));
    return;
  }
  // Browser clients (MCP Inspector, vscode.dev) must be able to read why.
  void reply.headers({ 'access-control-allow-origin': '*', 'cache-control': 'no-store' })
    .send(new OAuthError('temporarily_unavailable', description).toJSON());
}
