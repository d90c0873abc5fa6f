/**
 * The gateway's signing keys: generated at first start, kept sealed in the store, so tokens
 * stay valid across restarts and every replica signs and verifies with the same set.
 *
 * ES256 signs access tokens (cheap to sign, small tokens); an RS256 key is published too for
 * clients that insist on RS256 ID tokens.
 *
 * Replicas starting together on an empty store each generate a set, but only the first one
 * stored wins (`Store.create`); the others read that one back, so all publish the same /jwks.
 *
 * Rotation (`gatehouse keys rotate`, `rotateSigningKeys`) adds a new current pair and retires
 * the previous one: a retired key no longer signs, but stays published (marked `key_ops:
 * ["verify"]`, RFC 7517 §4.3) until every token it signed has expired. Every replica follows:
 * the rotation is announced on the store's `signing-keys` channel, the stored set is re-read
 * now and then in case the event was lost, and a token whose `kid` is unknown makes the
 * bearer check re-read it at once (`refresh`).
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { SIGNING_KEYS_CHANNEL, type Sealer, type Store } from '../store/index.ts';
import { GatehouseError } from '../errors/index.ts';

const KIND = 'signing-keys';
const ID = 'current';
const LOCK_ID = 'rotation';
const SEAL_CONTEXT = 'gatehouse signing keys';
const ALGORITHMS = ['ES256', 'RS256'] as const;
/** Re-reading the stored set this often catches a rotation whose event was lost. */
const DEFAULT_REFRESH_INTERVAL_MS = 30_000;
/** On-demand re-reads (a token with an unknown `kid`) at most this often. */
const MIN_REFRESH_GAP_MS = 1000;
/**
 * Tokens the gateway signs live at most this long besides access tokens: ID tokens (provider.ts
 * `ttl.IdToken`) and identity assertions (`forward.identity_jwt.ttl_seconds`, at most 3600).
 */
const OTHER_TOKENS_MAX_TTL_SECONDS = 3600;
/** Clock skew verifiers tolerate, on top of a token's lifetime. */
const RETENTION_MARGIN_SECONDS = 300;

/** A key as stored: the private JWK and its life. Epoch seconds. */
interface StoredKey {
  jwk: JWK;
  createdAt: number;
  /** When it stopped signing; absent while it is current. */
  retiredAt?: number;
  /** Published (for verification) until then. */
  publishUntil?: number;
}

export interface SigningKeys {
  /** Private JWKs, for oidc-provider's `jwks`: current keys first, retired ones verify-only. */
  readonly privateJwks: { keys: JWK[] };
  /** Public JWKs: what /jwks publishes and tokens are verified against. */
  readonly publicJwks: { keys: JWK[] };
  /** Re-reads the stored set (at most once a second); resolves whether what is in force changed. */
  refresh(): Promise<boolean>;
  /** Called after the keys in force changed. */
  onChange(listener: () => void): void;
  /** What /ready reports: keys that sign, keys published, the last read of the stored set. */
  status(): SigningKeysStatus;
  /** Stops following rotations. */
  close(): Promise<void>;
}

export interface SigningKeysStatus {
  /** Current keys (they sign); none means nothing can be issued. */
  signing: number;
  /** Keys published at /jwks, retired ones included. */
  published: number;
  /** When the stored set was last read (epoch ms). */
  readAt: number;
  /** The code of the error of the last re-read, when it failed (the keys in force stay). */
  refreshError?: string | undefined;
}

export interface LoadOptions {
  /** How often the stored set is re-read; 0 disables. Default 30 s. */
  refreshIntervalMs?: number;
  /** Told when a re-read fails (the keys in force stay). */
  onRefreshError?: (error: unknown) => void;
  now?: () => number;
}

async function generateKey(alg: (typeof ALGORITHMS)[number]): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: await calculateJwkThumbprint(jwk) };
}

async function generateSet(at: number): Promise<StoredKey[]> {
  return Promise.all(ALGORITHMS.map(async (alg) => ({ jwk: await generateKey(alg), createdAt: at })));
}

function toPublic(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...rest } = jwk;
  return rest;
}

/** What is in force at `at`: current keys sign, retired ones still published verify only. */
function inForce(stored: StoredKey[], at: number): { privateJwks: { keys: JWK[] }; publicJwks: { keys: JWK[] } } {
  const current = stored.filter((key) => key.retiredAt === undefined).map((key) => key.jwk);
  const retired = stored
    .filter((key) => key.retiredAt !== undefined && (key.publishUntil ?? 0) > at)
    .map((key): JWK => ({ ...key.jwk, key_ops: ['verify'] }));
  const keys = [...current, ...retired];
  return { privateJwks: { keys }, publicJwks: { keys: keys.map(toPublic) } };
}

/** The kids and roles in force, to tell whether a re-read changed anything. */
function fingerprint(keys: { publicJwks: { keys: JWK[] } }): string {
  return keys.publicJwks.keys.map((key) => `${key.kid}:${key.key_ops?.join(',') ?? 'sign'}`).join(' ');
}

const epoch = (ms: number): number => Math.floor(ms / 1000);

/**
 * Loads the stored keys, or generates and stores a set on first start, and follows rotations
 * until `close`.
 */
export async function loadSigningKeys(store: Store, sealer: Sealer, options: LoadOptions = {}): Promise<SigningKeys> {
  const now = options.now ?? Date.now;
  let stored = await readOrCreate(store, sealer, epoch(now()));
  let active = inForce(stored, epoch(now()));
  const listeners = new Set<() => void>();
  let lastRefresh = 0;
  let refreshing: Promise<boolean> | undefined;
  let readAt = now();
  let refreshError: string | undefined;

  const reread = async (): Promise<boolean> => {
    try {
      stored = (await readKeys(store, sealer)) ?? stored;
    } catch (error) {
      refreshError = (error as { code?: unknown }).code === undefined ? 'error' : String((error as { code?: unknown }).code);
      throw error;
    }
    readAt = now();
    refreshError = undefined;
    const next = inForce(stored, epoch(now()));
    if (fingerprint(next) === fingerprint(active)) return false;
    active = next;
    for (const listener of listeners) listener();
    return true;
  };
  const refresh = (force = false): Promise<boolean> => {
    if (refreshing) return refreshing;
    if (!force && Date.now() - lastRefresh < MIN_REFRESH_GAP_MS) return Promise.resolve(false);
    lastRefresh = Date.now();
    refreshing = reread().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };
  const quietly = (): void => void refresh(true).catch((error: unknown) => options.onRefreshError?.(error));

  const unsubscribe = await store.subscribe?.(SIGNING_KEYS_CHANNEL, quietly, { onReconnect: quietly });
  const interval = options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS;
  // unref'd: following rotations never keeps a process alive on its own.
  const timer = interval > 0 ? setInterval(quietly, interval).unref() : undefined;

  return {
    get privateJwks() {
      return active.privateJwks;
    },
    get publicJwks() {
      return active.publicJwks;
    },
    refresh: () => refresh(),
    onChange(listener) {
      listeners.add(listener);
    },
    status: () => ({
      signing: active.publicJwks.keys.filter((key) => key.key_ops === undefined).length,
      published: active.publicJwks.keys.length,
      readAt,
      refreshError,
    }),
    async close() {
      clearInterval(timer);
      listeners.clear();
      await unsubscribe?.().catch(() => undefined);
    },
  };
}

/** How long a retired key stays published: the longest a token signed by it lives, plus skew. */
export function retentionSeconds(accessTtlSeconds: number): number {
  return Math.max(accessTtlSeconds, OTHER_TOKENS_MAX_TTL_SECONDS) + RETENTION_MARGIN_SECONDS;
}

export interface RotationResult {
  /** Kids of the new current keys. */
  added: string[];
  /** Kids retired by this rotation, published until `publishUntil` (epoch seconds). */
  retired: string[];
  publishUntil: number;
  /** Kids of keys retired earlier whose tokens have all expired: no longer published. */
  dropped: string[];
}

/**
 * Adds a new current key pair and retires the current one, published for `retainSeconds` more.
 * The set is sealed anew under the current encryption key (so a rotation also finishes an
 * encryption key rotation), and the change announced to every replica.
 */
export async function rotateSigningKeys(
  store: Store,
  sealer: Sealer,
  options: { retainSeconds: number; now?: number },
): Promise<RotationResult> {
  const at = epoch(options.now ?? Date.now());
  // Two rotations at once would each write the set it read, and one would lose the other's keys.
  if (!(await store.create(KIND, LOCK_ID, { at }, { ttlSeconds: 60 }))) {
    throw new GatehouseError('KEYS_ROTATION_BUSY', 'another signing key rotation is running (or one crashed less than a minute ago); try again in a minute');
  }
  try {
    const previous = await readOrCreate(store, sealer, at);
    const publishUntil = at + options.retainSeconds;
    const retired = previous.filter((key) => key.retiredAt === undefined);
    const dropped = previous.filter((key) => key.retiredAt !== undefined && (key.publishUntil ?? 0) <= at);
    const kept = previous
      .filter((key) => !dropped.includes(key))
      .map((key) => (key.retiredAt === undefined ? { ...key, retiredAt: at, publishUntil } : key));
    const added = await generateSet(at);
    await writeKeys(store, sealer, [...added, ...kept]);
    // At most once, as every event: replicas that miss it re-read within their refresh interval.
    await store.publish?.(SIGNING_KEYS_CHANNEL, 'rotated').catch(() => undefined);
    return {
      added: added.map((key) => String(key.jwk.kid)),
      retired: retired.map((key) => String(key.jwk.kid)),
      publishUntil,
      dropped: dropped.map((key) => String(key.jwk.kid)),
    };
  } finally {
    await store.delete(KIND, LOCK_ID);
  }
}

async function readOrCreate(store: Store, sealer: Sealer, at: number): Promise<StoredKey[]> {
  const stored = await readKeys(store, sealer);
  if (stored) return stored;
  const generated = await generateSet(at);
  if (await store.create(KIND, ID, sealed(sealer, generated))) return generated;
  // Another replica stored its set first: everyone uses that one.
  const winner = await readKeys(store, sealer);
  if (!winner) throw new Error('the signing keys vanished from the store while they were being created');
  return winner;
}

function sealed(sealer: Sealer, keys: StoredKey[]) {
  return { sealed: sealer.seal(JSON.stringify({ version: 2, keys }), SEAL_CONTEXT) };
}

async function writeKeys(store: Store, sealer: Sealer, keys: StoredKey[]): Promise<void> {
  await store.put(KIND, ID, sealed(sealer, keys));
}

async function readKeys(store: Store, sealer: Sealer): Promise<StoredKey[] | undefined> {
  const record = await store.get(KIND, ID);
  if (!record) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(sealer.open(String(record.value.sealed), SEAL_CONTEXT));
  } catch (cause) {
    throw new GatehouseError(
      'KEYS_UNREADABLE',
      'the stored signing keys cannot be opened with secrets.encryption_key (or any of secrets.previous_encryption_keys); was the key changed without listing the old one?',
      { cause },
    );
  }
  // Sets stored before rotation existed are a bare list of current keys.
  if (Array.isArray(parsed)) return (parsed as JWK[]).map((jwk) => ({ jwk, createdAt: 0 }));
  return (parsed as { keys: StoredKey[] }).keys;
}
