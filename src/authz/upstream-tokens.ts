/**
 * Upstream tokens: the identity provider's own tokens for a signed-in person, kept for MCP
 * servers that call APIs as that person (`services.<name>.forward.upstream_token`).
 *
 * - Kept sealed (AES-256-GCM, store/sealed.ts) in one `upstream-token` record per account. The
 *   sealing context names the account and the provider, so a record copied to another account
 *   or provider does not open. Rotation of `secrets.encryption_key` works through the sealer's
 *   previous keys; a record is re-sealed under the current key at its next refresh.
 * - Refreshed before they expire: 60 s ahead, or half the token's lifetime for short-lived
 *   tokens, so a token issued for a few seconds is not refreshed on every request.
 * - One refresh at a time per account: concurrent requests in one process share one refresh,
 *   and processes sharing a store take a lease per token generation (`increment`, exact under
 *   concurrency), so only one of them spends the refresh token. Providers that rotate refresh
 *   tokens and revoke the whole grant when an old one is reused (OAuth 2.0 Security BCP,
 *   RFC 9700 §4.14.2) would otherwise log the user out. A process that still loses a race
 *   re-reads the record and uses the generation the winner stored.
 * - A refresh the provider refuses (revoked, expired) removes the record: the next
 *   authorization for a service that wants the token signs the user in upstream again.
 *
 * Values of this module are never logged: neither tokens nor the sealed text.
 */
import { randomBytes } from 'node:crypto';
import { SignInError, type IdentityProvider, type UpstreamTokens } from '../identity/index.ts';
import type { Sealer, Store } from '../store/index.ts';
import type { ProtectedService, ServiceCatalog, ServiceDefinition } from './service-catalog.ts';

export const UPSTREAM_TOKEN_KIND = 'upstream-token';
const LEASE_PREFIX = 'upstream-token-refresh:';

/** How long before expiry a token is refreshed, at most. */
export const REFRESH_MARGIN_SECONDS = 60;
/**
 * How long one process holds the refresh lease of a token generation: longer than a refresh
 * takes, short enough that a process that failed to refresh does not block the others long.
 */
const LEASE_SECONDS = 10;
const LEASE_POLL_MS = 100;
/** Kept as long as accounts are; a record without a refresh token lives until its token expires. */
const RECORD_TTL_SECONDS = 400 * 86400;

/** The parts of a service's configuration this module reads. */
export interface UpstreamTokenServiceDefinition extends ServiceDefinition {
  forward?: { readonly upstream_token?: string | undefined } | undefined;
  upstream_scopes?: readonly string[] | undefined;
}

export interface StoredUpstreamTokens {
  accountId: string;
  providerId: string;
  tokens: UpstreamTokens;
  /** Epoch seconds at which the provider issued these tokens (sign-in or refresh). */
  obtainedAt: number;
  /** Random per save: tells one generation of the record from the next. */
  version: string;
}

export type UpstreamAccessToken =
  | { ok: true; accessToken: string }
  | { ok: false; reason: 'none' | 'expired' | 'refresh_refused' | 'refresh_failed'; description: string };

export interface UpstreamTokenLog {
  warn(details: Record<string, unknown>, message: string): void;
  info(details: Record<string, unknown>, message: string): void;
}

export interface UpstreamTokenOptions {
  store: Store;
  sealer: Sealer;
  services: ServiceCatalog<UpstreamTokenServiceDefinition>;
  identityProviders: ReadonlyMap<string, IdentityProvider>;
  log?: UpstreamTokenLog | undefined;
  /** Milliseconds since the epoch (tests move time). */
  now?: () => number;
}

export interface UpstreamTokenKeeper {
  /** Whether some service forwards upstream tokens: only then are they kept. */
  readonly enabled: boolean;
  /** Whether a sign-in at this provider keeps its tokens. */
  keepsTokensOf(providerId: string): boolean;
  /**
   * Stores the tokens of a sign-in or refresh. `requestedScopes` are the extra scopes asked for:
   * a token response without `scope` was granted exactly what was asked (RFC 6749 §5.1).
   */
  save(accountId: string, providerId: string, tokens: UpstreamTokens, requestedScopes?: readonly string[]): Promise<void>;
  /** The stored tokens; `undefined` when none, or when they no longer open (key removed). */
  load(accountId: string): Promise<StoredUpstreamTokens | undefined>;
  /** A fresh access token for the account, refreshed first when it is about to expire. */
  accessToken(accountId: string): Promise<UpstreamAccessToken>;
  /**
   * The extra scopes a sign-in should ask the provider for, for an authorization request with
   * this `resource` parameter: the requested services' `upstream_scopes`, plus the upstream
   * scopes the account's stored token already has (so one service's sign-in does not drop
   * another's scopes at providers without incremental consent).
   */
  scopesForSignIn(accountId: string | undefined, resource: unknown): Promise<string[]>;
  /**
   * Whether authorizing this `resource` needs the user to sign in upstream again: a requested
   * service forwards upstream tokens and the account has no usable one, or one without a
   * scope the service needs.
   */
  signInNeeded(accountId: string, resource: unknown): Promise<boolean>;
}

/** The services an authorization request names with `resource` (RFC 8707), or the default one. */
export function requestedServices<D extends ServiceDefinition>(services: ServiceCatalog<D>, resource: unknown): Array<ProtectedService<D>> {
  const values = resource === undefined || resource === null ? [] : Array.isArray(resource) ? resource : [resource];
  if (values.length === 0) {
    const fallback = services.defaultService();
    return fallback ? [fallback] : [];
  }
  return values
    .map((value) => (typeof value === 'string' ? services.byResource(value) : undefined))
    .filter((service): service is ProtectedService<D> => service !== undefined);
}

export function scopeSet(scope: string | undefined): Set<string> {
  return new Set((scope ?? '').split(' ').filter(Boolean));
}

/** Whether a token is due for refresh at `now` (epoch seconds). Tokens without expiry never are. */
export function refreshDue(tokens: Pick<UpstreamTokens, 'expiresAt'>, obtainedAt: number, now: number): boolean {
  if (tokens.expiresAt === undefined) return false;
  const lifetime = Math.max(0, tokens.expiresAt - obtainedAt);
  return now >= tokens.expiresAt - Math.min(REFRESH_MARGIN_SECONDS, lifetime / 2);
}

function expired(tokens: Pick<UpstreamTokens, 'expiresAt'>, now: number): boolean {
  return tokens.expiresAt !== undefined && now >= tokens.expiresAt;
}

function sealingContext(accountId: string, providerId: string): string {
  return `gatehouse upstream-token v1\n${accountId}\n${providerId}`;
}

interface SealedContent {
  accessToken: string;
  refreshToken?: string;
  expiresAt?: number;
  scope?: string;
  obtainedAt: number;
}

function isSealedContent(value: unknown): value is SealedContent {
  if (typeof value !== 'object' || value === null) return false;
  const content = value as Record<string, unknown>;
  return typeof content.accessToken === 'string' && content.accessToken !== '' && typeof content.obtainedAt === 'number'
    && (content.refreshToken === undefined || typeof content.refreshToken === 'string')
    && (content.expiresAt === undefined || typeof content.expiresAt === 'number')
    && (content.scope === undefined || typeof content.scope === 'string');
}

export function createUpstreamTokens(options: UpstreamTokenOptions): UpstreamTokenKeeper {
  const { store, sealer, services, identityProviders } = options;
  const now = () => Math.floor((options.now ?? Date.now)() / 1000);
  const log = options.log;
  // Derived from the catalog in force: a configuration reload may add or remove services that
  // forward upstream tokens. Recomputed only when the catalog's list changes.
  let derivedFrom: ReadonlyArray<unknown> | undefined;
  let enabled = false;
  let allUpstreamScopes = new Set<string>();
  const forwardingState = () => {
    const all = services.all();
    if (all !== derivedFrom) {
      derivedFrom = all;
      const forwarding = all.filter((service) => service.definition.forward?.upstream_token !== undefined);
      enabled = forwarding.length > 0;
      allUpstreamScopes = new Set(forwarding.flatMap((service) => service.definition.upstream_scopes ?? []));
    }
    return { enabled, allUpstreamScopes };
  };
  const inFlight = new Map<string, Promise<UpstreamAccessToken>>();
  /**
   * Generations this process failed to refresh (provider unreachable), by lease key, at
   * `Date.now()` like the store's lease window: no retry, and no waiting, while the lease lasts.
   */
  const failedLeases = new Map<string, number>();

  const wantedBy = (resource: unknown) => requestedServices(services, resource)
    .filter((service) => service.definition.forward?.upstream_token !== undefined);

  const save = async (accountId: string, providerId: string, tokens: UpstreamTokens, requestedScopes: readonly string[] = []): Promise<StoredUpstreamTokens> => {
    const obtainedAt = now();
    const content: SealedContent = { accessToken: tokens.accessToken, obtainedAt };
    if (tokens.refreshToken) content.refreshToken = tokens.refreshToken;
    if (tokens.expiresAt !== undefined) content.expiresAt = tokens.expiresAt;
    const scope = tokens.scope ?? (requestedScopes.length > 0 ? requestedScopes.join(' ') : undefined);
    if (scope !== undefined) content.scope = scope;
    const version = randomBytes(12).toString('base64url');
    const sealed = sealer.seal(JSON.stringify(content), sealingContext(accountId, providerId));
    // Without a refresh token the record is useless once the access token expires.
    const ttlSeconds = !content.refreshToken && content.expiresAt !== undefined
      ? Math.max(1, content.expiresAt - obtainedAt)
      : RECORD_TTL_SECONDS;
    await store.put(UPSTREAM_TOKEN_KIND, accountId, { provider: providerId, version, sealed }, { ttlSeconds });
    return { accountId, providerId, version, obtainedAt, tokens: { ...content } };
  };

  const load = async (accountId: string): Promise<StoredUpstreamTokens | undefined> => {
    const record = await store.get(UPSTREAM_TOKEN_KIND, accountId);
    if (!record) return undefined;
    const { provider, version, sealed } = record.value;
    if (typeof provider !== 'string' || typeof version !== 'string' || typeof sealed !== 'string') return undefined;
    let content: unknown;
    try {
      content = JSON.parse(sealer.open(sealed, sealingContext(accountId, provider)));
    } catch (error) {
      // A removed encryption key or a tampered record: the user signs in upstream again.
      log?.warn({ event: 'upstream_token.unreadable', account: accountId, provider, reason: error instanceof Error ? error.message : 'unknown' }, 'a stored upstream token could not be opened');
      return undefined;
    }
    if (!isSealedContent(content)) return undefined;
    const { obtainedAt, ...tokens } = content;
    return { accountId, providerId: provider, version, obtainedAt, tokens };
  };

  const usable = (stored: StoredUpstreamTokens): UpstreamAccessToken => ({ ok: true, accessToken: stored.tokens.accessToken });

  const failure = (reason: Exclude<UpstreamAccessToken, { ok: true }>['reason']): UpstreamAccessToken => ({
    ok: false,
    reason,
    description: reason === 'none'
      ? 'this service needs your sign-in at the identity provider; authorize again'
      : reason === 'refresh_failed'
        ? 'the identity provider could not renew your sign-in; try again shortly or authorize again'
        : 'your sign-in at the identity provider expired or was revoked; authorize again',
  });

  /** Waits for the process holding the lease on `stored`'s generation to store the next one. */
  const awaitOtherRefresh = async (stored: StoredUpstreamTokens): Promise<StoredUpstreamTokens | null | undefined> => {
    const deadline = Date.now() + LEASE_SECONDS * 1000;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, LEASE_POLL_MS));
      const current = await load(stored.accountId);
      if (!current) return null;
      if (current.version !== stored.version) return current;
    }
    return undefined;
  };

  /** Refreshes the account's tokens; callers hold the in-process single flight. */
  const refresh = async (accountId: string): Promise<UpstreamAccessToken> => {
    // Re-read: a refresh that finished since the caller's read already stored a fresh generation.
    const stored = await load(accountId);
    if (!stored) return failure('none');
    if (!refreshDue(stored.tokens, stored.obtainedAt, now())) return usable(stored);
    const idp = identityProviders.get(stored.providerId);
    const refreshToken = stored.tokens.refreshToken;
    if (!idp?.refresh || !refreshToken) {
      return expired(stored.tokens, now()) ? failure('expired') : usable(stored);
    }

    const leaseKey = `${LEASE_PREFIX}${accountId}:${stored.version}`;
    const failedAt = failedLeases.get(leaseKey);
    if (failedAt !== undefined && Date.now() - failedAt < LEASE_SECONDS * 1000) {
      return expired(stored.tokens, now()) ? failure('refresh_failed') : usable(stored);
    }
    if (await store.increment(leaseKey, LEASE_SECONDS) > 1) {
      // Another process is refreshing this generation. A token that still works is used as
      // it is; an expired one waits for the other process's result.
      if (!expired(stored.tokens, now())) return usable(stored);
      const next = await awaitOtherRefresh(stored);
      if (next === null) return failure('refresh_refused');
      return next ? usable(next) : failure('refresh_failed');
    }

    let fresh: UpstreamTokens;
    try {
      fresh = await idp.refresh(refreshToken);
    } catch (error) {
      // Another process may have spent the refresh token first (its lease expired, or the
      // provider rotated it): the record then holds the generation that process stored.
      const current = await load(accountId);
      if (current && current.version !== stored.version) return usable(current);
      const reason = error instanceof Error ? error.message : 'unknown';
      if (error instanceof SignInError) {
        log?.warn({ event: 'upstream_token.refresh_refused', account: accountId, provider: stored.providerId, reason }, 'the identity provider refused to refresh an upstream token');
        if (current) await store.delete(UPSTREAM_TOKEN_KIND, accountId);
        return failure('refresh_refused');
      }
      // Not a refusal (the provider could not be reached): keep the record, try again once the lease is over.
      if (failedLeases.size > 10_000) failedLeases.clear();
      failedLeases.set(leaseKey, Date.now());
      log?.warn({ event: 'upstream_token.refresh_failed', account: accountId, provider: stored.providerId, reason }, 'refreshing an upstream token failed');
      return expired(stored.tokens, now()) ? failure('refresh_failed') : usable(stored);
    }
    const saved = await save(accountId, stored.providerId, {
      ...fresh,
      // A refresh response may leave out what did not change (RFC 6749 §5.1, §6).
      refreshToken: fresh.refreshToken ?? refreshToken,
      scope: fresh.scope ?? stored.tokens.scope,
    });
    log?.info({ event: 'upstream_token.refreshed', account: accountId, provider: stored.providerId }, 'upstream token refreshed');
    return usable(saved);
  };

  return {
    get enabled() {
      return forwardingState().enabled;
    },

    keepsTokensOf(providerId) {
      return forwardingState().enabled || typeof identityProviders.get(providerId)?.reload === 'function';
    },

    async save(accountId, providerId, tokens, requestedScopes) {
      await save(accountId, providerId, tokens, requestedScopes);
    },

    load,

    async accessToken(accountId) {
      const stored = await load(accountId);
      if (!stored) return failure('none');
      if (!refreshDue(stored.tokens, stored.obtainedAt, now())) return usable(stored);
      let flight = inFlight.get(accountId);
      if (!flight) {
        flight = refresh(accountId).finally(() => inFlight.delete(accountId));
        inFlight.set(accountId, flight);
      }
      return flight;
    },

    async scopesForSignIn(accountId, resource) {
      const { enabled: forwards, allUpstreamScopes: upstreamScopes } = forwardingState();
      if (!forwards) return [];
      const scopes = new Set(wantedBy(resource).flatMap((service) => service.definition.upstream_scopes ?? []));
      if (accountId !== undefined) {
        const stored = await load(accountId);
        for (const scope of scopeSet(stored?.tokens.scope)) if (upstreamScopes.has(scope)) scopes.add(scope);
      }
      return [...scopes];
    },

    async signInNeeded(accountId, resource) {
      const wanting = wantedBy(resource);
      if (wanting.length === 0) return false;
      const stored = await load(accountId);
      if (!stored) return true;
      const idp = identityProviders.get(stored.providerId);
      const renewable = stored.tokens.refreshToken !== undefined && typeof idp?.refresh === 'function';
      if (expired(stored.tokens, now()) && !renewable) return true;
      const granted = scopeSet(stored.tokens.scope);
      return wanting.some((service) => (service.definition.upstream_scopes ?? []).some((scope) => !granted.has(scope)));
    },
  };
}
