/**
 * Sealing: authenticated encryption (AES-256-GCM) of secrets kept in the store, such as signing
 * keys and upstream identity-provider tokens.
 *
 * Sealed text is `v1.<key id>.<iv>.<ciphertext>.<tag>` (base64url parts). The key id is a short
 * digest of the key, so after a rotation values sealed under a previous key still open as long
 * as that key is listed in `secrets.previous_encryption_keys`; new values always use the current key.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

export interface Sealer {
  seal(plaintext: string, context?: string): string;
  /** The plaintext; throws when no configured key opens it or it was tampered with. */
  open(sealed: string, context?: string): string;
}

const TAG_BYTES = 16;

function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 8);
}

/** Decodes a base64 or base64url 32-byte key; throws with a usable message otherwise. */
export function decodeEncryptionKey(text: string): Buffer {
  const key = Buffer.from(text.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== 32) throw new Error('an encryption key must be 32 bytes, base64-encoded (openssl rand -base64 32)');
  return key;
}

export function createSealer(current: string, previous: readonly string[] = []): Sealer {
  const currentKey = decodeEncryptionKey(current);
  const currentId = keyId(currentKey);
  const keys = new Map<string, Buffer>([[currentId, currentKey]]);
  for (const text of previous) {
    const key = decodeEncryptionKey(text);
    keys.set(keyId(key), key);
  }

  return {
    seal(plaintext, context = '') {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', currentKey, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(context));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return ['v1', currentId, iv.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },
    open(sealed, context = '') {
      const [version, id, iv, ciphertext, tag] = sealed.split('.');
      if (version !== 'v1' || !id || iv === undefined || ciphertext === undefined || tag === undefined) {
        throw new Error('not a sealed value');
      }
      const key = keys.get(id);
      if (!key) {
        throw new Error(`sealed under encryption key ${id}, which is neither secrets.encryption_key nor one of secrets.previous_encryption_keys`);
      }
      // A full 16-byte tag only: without authTagLength, Node accepts a tag truncated to as little
      // as 4 bytes, which cuts the cost of forging a sealed value to 2^32 tries (NIST SP 800-38D §5.2.1.2).
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}

/**
 * A secret for one purpose (cookie signing, CSRF tokens), derived from the encryption key with
 * HKDF-SHA256, so operators manage one secret and the purposes never share key material.
 */
export function deriveSecret(encryptionKey: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', decodeEncryptionKey(encryptionKey), Buffer.alloc(0), `gatehouse ${purpose}`, 32));
}
