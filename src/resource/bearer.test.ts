/**
 * The bearer check's caches against revocation events and key rotation: a grant revoked
 * elsewhere is refused as soon as its event arrives (not only when the one-second cache runs
 * out), a reconnect drops every cached grant answer, and a token signed with a key this process
 * has not loaded yet makes it re-read the key set once.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { createMemoryStore } from '../store/memory-store.ts';
import { REVOCATIONS_CHANNEL, type Store } from '../store/index.ts';
import { createBearerVerifier, type BearerVerifier } from './bearer.ts';

const ISSUER = 'https://gw.example.com/';
const AUDIENCE = 'https://gw.example.com/svc/mcp';

async function newKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, kid, publicJwk: { ...jwk, kid, alg: 'ES256', use: 'sig' } as JWK };
}

function sign(key: Awaited<ReturnType<typeof newKey>>, gid: string): Promise<string> {
  return new SignJWT({ client_id: 'c1', gid })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' })
    .setIssuer(ISSUER).setSubject('alice').setAudience(AUDIENCE).setIssuedAt().setExpirationTime('5m')
    .sign(key.privateKey);
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('bearer verification across replicas', () => {
  let store: Store;
  let verifier: BearerVerifier;
  let key: Awaited<ReturnType<typeof newKey>>;
  let keys: { publicJwks: { keys: JWK[] }; refreshes: number; refresh(): Promise<boolean> };
  let rotatedIn: JWK | undefined;

  beforeEach(async () => {
    store = createMemoryStore({ sweepIntervalMs: 0 });
    key = await newKey();
    rotatedIn = undefined;
    keys = {
      publicJwks: { keys: [key.publicJwk] },
      refreshes: 0,
      async refresh() {
        this.refreshes++;
        if (!rotatedIn) return false;
        this.publicJwks = { keys: [rotatedIn, ...this.publicJwks.keys] };
        rotatedIn = undefined;
        return true;
      },
    };
    verifier = await createBearerVerifier({ issuer: ISSUER, keys, store });
  });

  afterEach(async () => {
    await verifier.close();
    await store.close();
  });

  it('refuses a token as soon as the revocation event for its grant arrives', async () => {
    await store.put('Grant', 'g1', {});
    const token = await sign(key, 'g1');
    expect((await verifier.verify(token, AUDIENCE)).ok).toBe(true);
    // Removed by another replica: this one's answer is cached for up to a second…
    await store.delete('Grant', 'g1');
    expect((await verifier.verify(token, AUDIENCE)).ok).toBe(true);
    // …unless the event arrives, which drops it at once.
    await store.publish!(REVOCATIONS_CHANNEL, 'g1');
    await settle();
    expect(await verifier.verify(token, AUDIENCE)).toEqual({ ok: false, error: 'invalid_token', description: 'the access token was revoked' });
  });

  it('accepts a token signed with a key rotated in elsewhere after re-reading the keys once', async () => {
    await store.put('Grant', 'g3', {});
    const next = await newKey();
    rotatedIn = next.publicJwk;
    const token = await sign(next, 'g3');
    expect((await verifier.verify(token, AUDIENCE)).ok).toBe(true);
    expect(keys.refreshes).toBe(1);
    // An unknown key that no re-read brings is refused.
    const stranger = await newKey();
    expect((await verifier.verify(await sign(stranger, 'g3'), AUDIENCE)).ok).toBe(false);
    expect(keys.refreshes).toBe(2);
  });
});
