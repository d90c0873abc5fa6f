/**
 * The gateway's signing keys: generated at first start, kept sealed in the store, so tokens
 * stay valid across restarts and every replica signs and verifies with the same set.
 *
 * ES256 signs access tokens (cheap to sign, small tokens); an RS256 key is published too for
 * clients that insist on RS256 ID tokens.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Sealer, Store } from '../store/index.ts';
import { GatehouseError } from '../errors/index.ts';

const KIND = 'signing-keys';
const ID = 'current';
const SEAL_CONTEXT = 'gatehouse signing keys';

export interface SigningKeys {
  /** Private JWKs, for oidc-provider's `jwks`. */
  privateJwks: { keys: JWK[] };
  /** Public JWKs, for local token verification. */
  publicJwks: { keys: JWK[] };
}

async function generateKey(alg: 'ES256' | 'RS256'): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: await calculateJwkThumbprint(jwk) };
}

function toPublic(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...rest } = jwk;
  return rest;
}

function fromPrivate(keys: JWK[]): SigningKeys {
  return { privateJwks: { keys }, publicJwks: { keys: keys.map(toPublic) } };
}

/** Loads the stored keys, or generates, stores and returns a new set on first start. */
export async function loadSigningKeys(store: Store, sealer: Sealer): Promise<SigningKeys> {
  const stored = await readKeys(store, sealer);
  if (stored) return stored;
  const keys = [await generateKey('ES256'), await generateKey('RS256')];
  await store.put(KIND, ID, { sealed: sealer.seal(JSON.stringify(keys), SEAL_CONTEXT) });
  // Read back: if another replica stored its set at the same moment, everyone uses the same one.
  return (await readKeys(store, sealer)) ?? fromPrivate(keys);
}

async function readKeys(store: Store, sealer: Sealer): Promise<SigningKeys | undefined> {
  const record = await store.get(KIND, ID);
  if (!record) return undefined;
  try {
    return fromPrivate(JSON.parse(sealer.open(String(record.value.sealed), SEAL_CONTEXT)) as JWK[]);
  } catch (cause) {
    throw new GatehouseError(
      'KEYS_UNREADABLE',
      'the stored signing keys cannot be opened with secrets.encryption_key (or any of secrets.previous_encryption_keys); was the key changed without listing the old one?',
      { cause },
    );
  }
}
