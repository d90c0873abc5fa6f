/**
 * oidc-provider's storage adapter, on the gateway's Store.
 *
 * What it adds to a plain mapping (see oidc-provider's example/my_adapter.js for the contract):
 * - Bearer values are never stored: the ids of token models (codes, refresh tokens,
 *   registration access tokens, sessions …) are the token values themselves, so they are kept
 *   as SHA-256 digests, and the copy of the value that oidc-provider puts in `jti` is dropped.
 * - Client secrets are stored as digests (see client-secret.ts).
 * - `consume` is atomic across every process on the store: a code redeemed twice at once
 *   yields one token response and one `invalid_grant`, and the loser revokes the grant.
 * - Refresh-token rotation grace: for `graceSeconds` after a refresh token was first used it
 *   still reads as unused, so concurrent refreshes by one client's several processes don't
 *   revoke the grant. Reuse after that window reads as consumed and oidc-provider revokes the
 *   whole grant (OAuth 2.1 §4.3.1; checklist §7).
 * - One current refresh token (refresh-rotation.ts): the successors issued within the grace
 *   window are all valid until one of them is used; that one becomes the line's current token
 *   and its siblings are retired.
 * - A grant that dies (its Grant destroyed by oidc-provider, a reused code, a withdrawn
 *   consent) is announced on the store's revocations channel (`revokeGrant`), so every
 *   replica's bearer check forgets it at once.
 */
import { createHash } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import type { Store, StoredRecord } from '../store/index.ts';
import { epochSeconds, REVOCATIONS_CHANNEL } from '../store/index.ts';
import { hashClientSecret } from './client-secret.ts';
import { claimSuccession, parentOf, PARENT_FIELD, supersededBy } from './refresh-rotation.ts';

/** Models whose ids are bearer secrets. */
const SECRET_ID_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'ClientCredentials',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'RegistrationAccessToken',
  'InitialAccessToken',
  'PushedAuthorizationRequest',
  'Session',
]);

type Payload = Record<string, unknown>;

export interface AdapterOptions {
  store: Store;
  refreshGraceSeconds: number;
  now?: () => number;
}

/**
 * A registered client that no one ever consented to is removed after this long. Hosted clients
 * register anew on every connection attempt (checklist §4b: "hundreds of orphan rows"); the
 * first consent keeps a client for good (`keepClient`).
 */
export const UNUSED_CLIENT_TTL_SECONDS = 7 * 86400;

/** The lifetime of a client record being written: none once kept, else the unused-client ttl. */
async function unusedClientTtl(store: Store, clientId: string): Promise<number | undefined> {
  const existing = await store.get('Client', clientId);
  return existing && existing.expiresAt === undefined ? undefined : UNUSED_CLIENT_TTL_SECONDS;
}

/**
 * Keeps a registered client for good, once a person consented to it, and its registration
 * access token (RFC 7592) with it: the token lives exactly as long as its client.
 */
export async function keepClient(store: Store, clientId: string): Promise<void> {
  const existing = await store.get('Client', clientId);
  if (existing?.expiresAt === undefined) return;
  await store.put('Client', clientId, existing.value);
  const token = await store.findByIndex('RegistrationAccessToken', 'uid', clientId);
  if (token?.expiresAt !== undefined) await store.put('RegistrationAccessToken', token.id, token.value, { uid: clientId });
}

export function digestId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}

/**
 * Ends a grant: removes every record issued under it and the Grant itself, then tells every
 * replica (REVOCATIONS_CHANNEL) so their bearer checks refuse its access tokens at once. The
 * one place a grant dies besides oidc-provider's own `Grant.destroy` (adapter `destroy`).
 */
export async function revokeGrant(store: Store, grantId: string): Promise<void> {
  await store.deleteByGrant(grantId);
  await store.delete('Grant', grantId);
  await announceRevocation(store, grantId);
}

/**
 * Best effort, after the deletion is committed: events are at most once anyway, and replicas
 * that miss one still see the grant gone within their one-second cache.
 */
async function announceRevocation(store: Store, grantId: string): Promise<void> {
  await store.publish?.(REVOCATIONS_CHANNEL, grantId).catch(() => undefined);
}

export function createAdapterClass(options: AdapterOptions) {
  const { store, refreshGraceSeconds } = options;
  const now = () => epochSeconds(options.now?.() ?? Date.now());

  return class GatehouseAdapter {
    readonly model: string;
    readonly hashesIds: boolean;

    constructor(model: string) {
      this.model = model;
      this.hashesIds = SECRET_ID_MODELS.has(model);
    }

    key(id: string): string {
      return this.hashesIds ? digestId(id) : id;
    }

    async upsert(id: string, payload: Payload, expiresIn?: number): Promise<void> {
      const value: Payload = { ...payload };
      if (this.hashesIds && value.jti === id) delete value.jti;
      if (this.model === 'Client' && typeof value.client_secret === 'string') {
        value.client_secret = hashClientSecret(value.client_secret);
      }
      const putOptions: Parameters<Store['put']>[3] = {};
      if (expiresIn) putOptions.ttlSeconds = expiresIn;
      if (this.model === 'Client') putOptions.ttlSeconds = await unusedClientTtl(store, id);
      if (this.model === 'RegistrationAccessToken' && typeof value.clientId === 'string' && !expiresIn) {
        // oidc-provider gives it no expiry; it is of use as long as its client exists, and is
        // found by client id when the client is kept (`keepClient`).
        putOptions.ttlSeconds = await unusedClientTtl(store, value.clientId);
        putOptions.uid = value.clientId;
      }
      if (typeof value.grantId === 'string') putOptions.grantId = value.grantId;
      if (typeof value.uid === 'string') putOptions.uid = value.uid;
      if (typeof value.userCode === 'string') putOptions.userCode = value.userCode;
      if (this.model === 'RefreshToken') {
        // The token this one replaces, when it comes from a rotation (refresh-rotation.ts).
        const rotated = Provider.ctx?.oidc?.entities?.RotatedRefreshToken as { jti?: unknown } | undefined;
        if (typeof rotated?.jti === 'string') value[PARENT_FIELD] = digestId(rotated.jti);
      }
      await store.put(this.model, this.key(id), value, putOptions);
    }

    async find(id: string): Promise<Payload | undefined> {
      const record = await store.get(this.model, this.key(id));
      if (!record) return undefined;
      if (this.model === 'RefreshToken' && !(await this.isCurrent(id, record))) return undefined;
      return this.toPayload(record, id);
    }

    /**
     * Whether a refresh token still belongs to its line: not a sibling retired because another
     * successor of its parent was used, nor (within the grace window) a token whose own
     * successor was already used. Both then read as unknown: invalid_grant without revoking the
     * grant. After the grace window a used token reads as consumed, and its reuse revokes.
     */
    async isCurrent(id: string, record: StoredRecord): Promise<boolean> {
      const key = this.key(id);
      const parent = parentOf(record);
      if (parent !== undefined) {
        const chosen = await supersededBy(store, parent);
        if (chosen !== undefined && chosen !== key) return false;
      }
      if (record.consumedAt !== undefined && this.inGrace(record)) {
        return (await supersededBy(store, key)) === undefined;
      }
      return true;
    }

    async findByUid(uid: string): Promise<Payload | undefined> {
      const record = await store.findByIndex(this.model, 'uid', uid);
      return record && this.toPayload(record);
    }

    async findByUserCode(userCode: string): Promise<Payload | undefined> {
      const record = await store.findByIndex(this.model, 'userCode', userCode);
      return record && this.toPayload(record);
    }

    async consume(id: string): Promise<void> {
      if (this.model === 'RefreshToken') return this.consumeRefreshToken(id);
      if (await store.consume(this.model, this.key(id), now())) return;
      // Another request consumed it first (or it expired in between): this one loses the race.
      // A code redeemed twice is a code reuse however close together the two requests came,
      // so what it issued is revoked, as oidc-provider does when it sees the code already
      // consumed (RFC 6749 §4.1.2). Deleting the grant is enough: the token
      // endpoint and the bearer check both refuse tokens whose grant is gone, including tokens
      // the winning request saves after this.
      if (this.model === 'AuthorizationCode') await this.revokeGrantOf(id);
      throw new errors.InvalidGrant(`${this.model === 'AuthorizationCode' ? 'authorization code' : 'grant'} already used`);
    }

    /**
     * A rotation: the token must be its parent's chosen successor (the first of the siblings to
     * be used claims that, atomically across replicas), then it is consumed; a second use within
     * the grace window passes while none of its own successors has been used.
     */
    async consumeRefreshToken(id: string): Promise<void> {
      const key = this.key(id);
      const record = await store.get(this.model, key);
      const parent = record && parentOf(record);
      if (record && parent !== undefined && !(await claimSuccession(store, parent, key, record))) {
        throw new errors.InvalidGrant('refresh token was superseded by another rotation');
      }
      if (await store.consume(this.model, key, now())) return;
      const latest = await store.get(this.model, key);
      if (latest && this.inGrace(latest) && (await supersededBy(store, key)) === undefined) return;
      throw new errors.InvalidGrant('grant already used');
    }

    async revokeGrantOf(id: string): Promise<void> {
      const record = await store.get(this.model, this.key(id));
      const grantId = record?.value.grantId;
      if (typeof grantId !== 'string') return;
      await revokeGrant(store, grantId);
    }

    async destroy(id: string): Promise<void> {
      await store.delete(this.model, this.key(id));
      // oidc-provider destroys a Grant when it revokes it (refresh-token reuse, /revoke of a
      // refresh token, code reuse it detects itself): the moment to tell the other replicas.
      if (this.model === 'Grant') await announceRevocation(store, id);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      // Not announced: oidc-provider calls this per model, and destroys the Grant after it
      // when the grant itself goes (`destroy` above announces that).
      await store.deleteByGrant(grantId);
    }

    inGrace(record: StoredRecord): boolean {
      return record.consumedAt !== undefined && now() - record.consumedAt <= refreshGraceSeconds;
    }

    toPayload(record: StoredRecord, id?: string): Payload {
      const payload: Payload = { ...record.value };
      delete payload[PARENT_FIELD];
      if (this.hashesIds && id !== undefined && payload.jti === undefined) payload.jti = id;
      if (record.consumedAt !== undefined) {
        const inGrace = this.model === 'RefreshToken' && this.inGrace(record);
        if (!inGrace) payload.consumed = record.consumedAt;
      }
      return payload;
    }
  };
}
