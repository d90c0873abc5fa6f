import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createSealer, decodeEncryptionKey, deriveSecret } from './sealed.ts';

const keyA = randomBytes(32).toString('base64');
const keyB = randomBytes(32).toString('base64');

/** Replaces part `index` of a sealed value (v1.id.iv.ciphertext.tag). */
function withPart(sealed: string, index: number, change: (bytes: Buffer) => Buffer): string {
  const parts = sealed.split('.');
  parts[index] = change(Buffer.from(parts[index]!, 'base64url')).toString('base64url');
  return parts.join('.');
}

function flipFirstBit(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  copy[0] = copy[0]! ^ 1;
  return copy;
}

describe('createSealer', () => {
  it('round-trips text, including empty and non-ASCII text', () => {
    const sealer = createSealer(keyA);
    for (const plaintext of ['', 'upstream refresh token', 'ünïcødé ✓ 🔑', 'x'.repeat(100_000)]) {
      expect(sealer.open(sealer.seal(plaintext, 'ctx'), 'ctx')).toBe(plaintext);
    }
  });

  it('seals as v1.<key id>.<iv>.<ciphertext>.<tag>, never containing the plaintext, fresh each time', () => {
    const sealer = createSealer(keyA);
    const first = sealer.seal('top secret value');
    const second = sealer.seal('top secret value');
    const [version, id, iv, ciphertext, tag] = first.split('.');
    expect(version).toBe('v1');
    expect(id).toBe(createHash('sha256').update(Buffer.from(keyA, 'base64')).digest('base64url').slice(0, 8));
    expect(Buffer.from(iv!, 'base64url')).toHaveLength(12);
    expect(Buffer.from(ciphertext!, 'base64url')).toHaveLength('top secret value'.length);
    expect(Buffer.from(tag!, 'base64url')).toHaveLength(16);
    expect(first).not.toContain('top secret');
    expect(first).not.toBe(second);
  });

  it('detects tampering with the iv, the ciphertext or the tag', () => {
    const sealer = createSealer(keyA);
    const sealed = sealer.seal('pay alice 10');
    for (const index of [2, 3, 4]) {
      expect(() => sealer.open(withPart(sealed, index, flipFirstBit)), `part ${index}`).toThrow(/unable to authenticate/);
    }
  });

  it('refuses a truncated authentication tag (no 32-bit forgeries)', () => {
    const sealer = createSealer(keyA);
    const sealed = sealer.seal('value');
    for (const length of [4, 8, 12, 15]) {
      expect(() => sealer.open(withPart(sealed, 4, (tag) => tag.subarray(0, length))), `${length} bytes`).toThrow();
    }
  });

  it('refuses a value opened in another context (values cannot be swapped between purposes)', () => {
    const sealer = createSealer(keyA);
    const sealed = sealer.seal('signing keys', 'gatehouse signing keys');
    expect(sealer.open(sealed, 'gatehouse signing keys')).toBe('signing keys');
    expect(() => sealer.open(sealed, 'upstream tokens')).toThrow(/unable to authenticate/);
    expect(() => sealer.open(sealed)).toThrow(/unable to authenticate/);
  });

  it('opens values sealed under a previous key, and seals new values under the current one', () => {
    const old = createSealer(keyA).seal('from before the rotation', 'ctx');
    const rotated = createSealer(keyB, [keyA]);
    expect(rotated.open(old, 'ctx')).toBe('from before the rotation');
    const fresh = rotated.seal('after', 'ctx');
    expect(fresh.split('.')[1]).not.toBe(old.split('.')[1]);
    expect(createSealer(keyB).open(fresh, 'ctx')).toBe('after');
    expect(() => createSealer(keyA).open(fresh, 'ctx')).toThrow(/not configured|neither/);
  });

  it('names the unknown key id and the settings to check when no configured key opens a value', () => {
    const sealed = createSealer(keyA).seal('x');
    const id = sealed.split('.')[1]!;
    expect(() => createSealer(keyB).open(sealed)).toThrow(
      `sealed under encryption key ${id}, which is neither secrets.encryption_key nor one of secrets.previous_encryption_keys`,
    );
  });

  it('refuses values that are not sealed values', () => {
    const sealer = createSealer(keyA);
    for (const value of ['', 'plain text', 'v2.a.b.c.d', 'v1.onlythree.parts', 'v1..iv.ct.tag']) {
      expect(() => sealer.open(value), value).toThrow('not a sealed value');
    }
  });

  it('refuses keys that are not 32 bytes', () => {
    expect(() => createSealer(randomBytes(16).toString('base64'))).toThrow(/32 bytes/);
    expect(() => createSealer(keyA, ['short'])).toThrow(/32 bytes/);
  });
});

describe('decodeEncryptionKey and deriveSecret', () => {
  it('accept base64 and base64url forms of the same key', () => {
    const bytes = randomBytes(32);
    expect(decodeEncryptionKey(bytes.toString('base64'))).toEqual(bytes);
    expect(decodeEncryptionKey(bytes.toString('base64url'))).toEqual(bytes);
    expect(decodeEncryptionKey(` ${bytes.toString('base64')}\n`)).toEqual(bytes);
  });

  it('derive distinct 32-byte secrets per purpose, stable for one key', () => {
    const cookies = deriveSecret(keyA, 'cookies');
    expect(cookies).toHaveLength(32);
    expect(deriveSecret(keyA, 'cookies')).toEqual(cookies);
    expect(deriveSecret(keyA, 'csrf')).not.toEqual(cookies);
    expect(deriveSecret(keyB, 'cookies')).not.toEqual(cookies);
    expect(cookies).not.toEqual(decodeEncryptionKey(keyA));
  });
});
