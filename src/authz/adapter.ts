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
 */
import { createHash } from 'node:crypto';
import { errors } from 'oidc-provider';
import type { Store, StoredRecord } from '../store/index.ts';
import { epochSeconds } from '../store/index.ts';
import { hashClientSecret } from './client-secret.ts';

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

/** Keeps a registered client for good, once a person consented to it. */
export async function keepClient(store: Store, clientId: string): Promise<void> {
  const existing = await store.get('Client', clientId);
  if (existing?.expiresAt !== undefined) await store.put('Client', clientId, existing.value);
}

export function digestId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
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
      if (typeof value.grantId === 'string') putOptions.grantId = value.grantId;
      if (typeof value.uid === 'string') putOptions.uid = value.uid;
      if (typeof value.userCode === 'string') putOptions.userCode = value.userCode;
      await store.put(this.model, this.key(id), value, putOptions);
    }

    async find(id: string): Promise<Payload | undefined> {
      const record = await store.get(this.model, this.key(id));
      return record && this.toPayload(record, id);
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
      if (await store.consume(this.model, this.key(id), now())) return;
      if (this.model === 'RefreshToken' && (await this.withinGrace(id))) return;
      // Another request consumed it first (or it expired in between): this one loses the race.
      // A code redeemed twice is a code reuse however close together the two requests came,
      // so what it issued is revoked, as oidc-provider does when it sees the code already
      // consumed (RFC 6749 §4.1.2). Deleting the grant is enough: the token
      // endpoint and the bearer check both refuse tokens whose grant is gone, including tokens
      // the winning request saves after this.
      if (this.model === 'AuthorizationCode') await this.revokeGrantOf(id);
      throw new errors.InvalidGrant(`${this.model === 'AuthorizationCode' ? 'authorization code' : 'grant'} already used`);
    }

    async revokeGrantOf(id: string): Promise<void> {
      const record = await store.get(this.model, this.key(id));
      const grantId = record?.value.grantId;
      if (typeof grantId !== 'string') return;
      await store.deleteByGrant(grantId);
      await store.delete('Grant', grantId);
    }

    async destroy(id: string): Promise<void> {
      await store.delete(this.model, this.key(id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await store.deleteByGrant(grantId);
    }

    async withinGrace(id: string): Promise<boolean> {
      const record = await store.get(this.model, this.key(id));
      return record?.consumedAt !== undefined && now() - record.consumedAt <= refreshGraceSeconds;
    }

    toPayload(record: StoredRecord, id?: string): Payload {
      const payload: Payload = { ...record.value };
      if (this.hashesIds && id !== undefined && payload.jti === undefined) payload.jti = id;
      if (record.consumedAt !== undefined) {
        const inGrace = this.model === 'RefreshToken' && now() - record.consumedAt <= refreshGraceSeconds;
        if (!inGrace) payload.consumed = record.consumedAt;
      }
      return payload;
    }
  };
}
