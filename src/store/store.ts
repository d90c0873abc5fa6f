/**
 * The Store: every piece of state the gateway keeps, behind one small interface.
 *
 * Records are JSON objects grouped by `kind` (an oidc-provider model name such as
 * `AuthorizationCode`, or a gateway kind such as `consent` or `signing-keys`) and addressed
 * by `id` within their kind. Every engine (memory, sqlite, redis, postgres) passes the same
 * contract suite in `test/store-contract.ts`; this file is the specification that suite checks.
 *
 * Rules every engine follows:
 * - Expiry is enforced on read: a record whose `expiresAt` has passed is never returned, even
 *   if the periodic sweep has not removed it yet.
 * - Reads of a missing record resolve to `undefined`; they never throw.
 * - Engine failures (connection lost, disk full) reject with a `StoreUnavailableError`, so the
 *   HTTP layer can answer 503 instead of 500.
 * - Values are stored as given (JSON-serialisable); engines never interpret them. Secrets are
 *   hashed or encrypted by the caller before they get here.
 */

export type StoredValue = Record<string, unknown>;

/** A record as read back: its value plus the bookkeeping the store keeps beside it. */
export interface StoredRecord {
  value: StoredValue;
  /** Epoch seconds at which `consume` first succeeded, if it did. */
  consumedAt?: number;
  /** Epoch seconds after which the record is gone; absent = kept until deleted. */
  expiresAt?: number;
}

export interface PutOptions {
  /** Lifetime in seconds from now. Absent or 0 = no expiry. */
  ttlSeconds?: number;
  /** Indexes the record under this grant id, for `deleteByGrant`. */
  grantId?: string;
  /** Indexes the record for `findByIndex(kind, 'uid', …)` (oidc-provider sessions). */
  uid?: string;
  /** Indexes the record for `findByIndex(kind, 'userCode', …)` (device flow). */
  userCode?: string;
}

export interface SubscribeOptions {
  /**
   * Called (asynchronously, exceptions swallowed) each time the engine's event connection came
   * back after it was lost: whatever was published in between is lost, so a cache that events
   * keep fresh should be dropped. Engines without a connection (memory, SQLite) never call it.
   */
  onReconnect?: () => void;
}

export interface Store {
  /** Engine name, for logs and /ready. */
  readonly engine: 'memory' | 'sqlite' | 'redis' | 'postgres';

  /**
   * Creates or replaces the record (kind, id). Replacing keeps nothing of the old record:
   * indexes, expiry and the consumed mark are those of the new call.
   */
  put(kind: string, id: string, value: StoredValue, options?: PutOptions): Promise<void>;

  /**
   * Creates the record (kind, id) only if no live record has that id: resolves `true` when it
   * created it, `false` when an unexpired record was there already (which is left untouched).
   * An expired record counts as absent and is replaced, as by `put`. Atomic: of any number of
   * concurrent calls for one record, across every process sharing the store, exactly one
   * resolves `true` (while that record lives). For state several replicas may try to initialise
   * at once, such as the signing keys.
   */
  create(kind: string, id: string, value: StoredValue, options?: PutOptions): Promise<boolean>;

  /** The record, or `undefined` when it is missing or expired. */
  get(kind: string, id: string): Promise<StoredRecord | undefined>;

  /** The record whose `uid` or `userCode` index equals `key`, with its id; `undefined` on a miss. */
  findByIndex(
    kind: string,
    index: 'uid' | 'userCode',
    key: string,
  ): Promise<(StoredRecord & { id: string }) | undefined>;

  /**
   * Marks the record consumed at `at` (epoch seconds) if it exists, is unexpired and was not
   * consumed before. Atomic: of any number of concurrent calls for one record, across every
   * process sharing the store, exactly one resolves `true`; the others, and calls on a missing,
   * expired or already consumed record, resolve `false`. The first `consumedAt` is kept.
   */
  consume(kind: string, id: string, at: number): Promise<boolean>;

  /** Removes the record; a miss is not an error. */
  delete(kind: string, id: string): Promise<void>;

  /**
   * Reads and removes the record in one atomic step: of concurrent calls, at most one gets
   * the record. For single-use state such as an upstream sign-in transaction.
   */
  take(kind: string, id: string): Promise<StoredRecord | undefined>;

  /** Removes every record, of every kind, that was put with this `grantId`. */
  deleteByGrant(grantId: string): Promise<void>;

  /**
   * Every unexpired record of `kind` whose id starts with `idPrefix`, in id order, at most
   * `limit` (default 1000). For small per-user listings (consents), never for hot paths.
   */
  list(kind: string, idPrefix: string, limit?: number): Promise<Array<StoredRecord & { id: string }>>;

  /**
   * Adds 1 to the counter `key` and returns the new value. The counter starts at 0, lives
   * `windowSeconds` from its first increment and then starts over (fixed window). Exact
   * under concurrency.
   */
  increment(key: string, windowSeconds: number): Promise<number>;

  /** Removes expired records; returns how many. Engines with native expiry may return 0. */
  sweep(): Promise<number>;

  /** Cheap round trip for /ready: resolves when the engine answers, rejects otherwise. */
  ping(): Promise<void>;

  /** Releases connections and timers. The store is unusable afterwards. */
  close(): Promise<void>;

  /**
   * Optional: small events between every process sharing the store (a revoked grant, a rotated
   * signing key), so replicas can drop what they cached. Redis uses pub/sub, Postgres
   * LISTEN/NOTIFY; memory and SQLite deliver within the one process only.
   *
   * Resolves once the subscription is active: a message published after that reaches
   * `onMessage`, asynchronously, on every process subscribed to `channel` (the publisher's own
   * included), in the order one publisher sent them. Delivery is at most once: messages
   * published while a subscriber's connection is down are lost (it resubscribes by itself when
   * the connection comes back), so events may only shorten a cache, never replace its expiry.
   * Exceptions thrown by `onMessage` are swallowed. Resolves to an unsubscribe function, which
   * may be called more than once. Rejects with StoreUnavailableError when the engine cannot be
   * reached, and with RangeError for a channel or message that `checkChannel`/`checkMessage`
   * refuse.
   */
  subscribe?(
    channel: string,
    onMessage: (message: string) => void,
    options?: SubscribeOptions,
  ): Promise<() => Promise<void>>;

  /** Optional, present with `subscribe`: sends `message` to the channel's subscribers (see there). */
  publish?(channel: string, message: string): Promise<void>;
}

/** The engine is unreachable or failing; callers map this to 503. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Current time in epoch seconds, the unit of every store timestamp. */
export function epochSeconds(now: number = Date.now()): number {
  return Math.floor(now / 1000);
}

/** Expiry in epoch seconds for a ttl; whole seconds, rounded up so a record never lives shorter. */
export function expiryFor(ttlSeconds: number | undefined, at: number): number | undefined {
  if (ttlSeconds === undefined || ttlSeconds === 0) return undefined;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
    throw new RangeError(`ttlSeconds must be a non-negative number, got ${ttlSeconds}`);
  }
  return at + Math.ceil(ttlSeconds);
}

/**
 * Event channel names: short and plain, because engines put them into identifiers (a Postgres
 * LISTEN channel is at most 63 bytes, schema included).
 */
export function checkChannel(channel: string): void {
  if (!/^[A-Za-z0-9._-]{1,32}$/.test(channel)) {
    throw new RangeError(`channel must be 1 to 32 letters, digits, ".", "_" or "-", got ${JSON.stringify(channel)}`);
  }
}

/** Event payloads stay small: Postgres NOTIFY refuses 8000 bytes and more. */
export const MAX_MESSAGE_BYTES = 4096;

export function checkMessage(message: string): void {
  const bytes = Buffer.byteLength(message, 'utf8');
  if (bytes > MAX_MESSAGE_BYTES) {
    throw new RangeError(`messages are at most ${MAX_MESSAGE_BYTES} bytes, got ${bytes}`);
  }
}

/** A counter window in whole seconds; engines share this rule. */
export function windowLength(windowSeconds: number): number {
  if (!Number.isFinite(windowSeconds) || windowSeconds <= 0) {
    throw new RangeError(`windowSeconds must be a positive number, got ${windowSeconds}`);
  }
  return Math.ceil(windowSeconds);
}
