/**
 * Who owns each MCP session of a Streamable HTTP upstream: the account whose initialize
 * request the server answered with an `Mcp-Session-Id`. A session id is a bearer secret
 * between client and server, and the server cannot tell the gateway's users apart, so the
 * gateway binds each id to its user (MCP basic/security_best_practices, "Session Hijacking":
 * bind the session to user-specific information) and refuses it from anyone else.
 *
 * Records live in the store, so every replica of the gateway knows every session (the upstream
 * is reachable from all of them), keyed by the service and a SHA-256 of the id (the store never
 * holds usable session ids). They are written before the client sees the id, and kept while the
 * session is used: a record has a week to live and is renewed, at most once a day, on use.
 * Owners never change, so each replica also remembers the ones it has seen.
 */
import { createHash } from 'node:crypto';
import type { Store } from '../store/index.ts';

const KIND = 'mcp-session';
const TTL_SECONDS = 7 * 86400;
const RENEW_AFTER_SECONDS = 86400;
const CACHE_LIMIT = 50_000;

export interface SessionOwners {
  /** Binds the session to the account; called when the server issues the id. */
  record(serviceId: string, sessionId: string, accountId: string): Promise<void>;
  /** The owning account, or undefined for an id the gateway never saw issued (or long unused). */
  ownerOf(serviceId: string, sessionId: string): Promise<string | undefined>;
  /** The session ended (DELETE answered): forget it. */
  forget(serviceId: string, sessionId: string): Promise<void>;
}

export function createSessionOwners(store: Store): SessionOwners {
  /** Owner and when the record was last (re)written, in epoch seconds. */
  const cache = new Map<string, { account: string; writtenAt: number }>();
  const keyOf = (serviceId: string, sessionId: string) => `${serviceId}:${createHash('sha256').update(sessionId).digest('base64url')}`;
  const now = () => Math.floor(Date.now() / 1000);

  const remember = (key: string, account: string, writtenAt: number) => {
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(key, { account, writtenAt });
  };

  return {
    async record(serviceId, sessionId, accountId) {
      const key = keyOf(serviceId, sessionId);
      await store.put(KIND, key, { account: accountId }, { ttlSeconds: TTL_SECONDS });
      remember(key, accountId, now());
    },
    async ownerOf(serviceId, sessionId) {
      const key = keyOf(serviceId, sessionId);
      let known = cache.get(key);
      if (!known) {
        const record = await store.get(KIND, key);
        const account = record?.value.account;
        if (typeof account !== 'string') return undefined;
        known = { account, writtenAt: (record?.expiresAt ?? now() + TTL_SECONDS) - TTL_SECONDS };
        remember(key, account, known.writtenAt);
      }
      if (now() - known.writtenAt > RENEW_AFTER_SECONDS) {
        await store.put(KIND, key, { account: known.account }, { ttlSeconds: TTL_SECONDS });
        known.writtenAt = now();
      }
      return known.account;
    },
    async forget(serviceId, sessionId) {
      const key = keyOf(serviceId, sessionId);
      cache.delete(key);
      await store.delete(KIND, key);
    },
  };
}
