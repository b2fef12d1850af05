import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Authenticated encryption of session records (AES-256-GCM) and the derivation of every key the
 * sessions use from the one configured secret (HKDF-SHA256, one key per purpose); and the hash
 * that names store keys by a value without revealing it.
 *
 * Sealed layout: version (1 byte) ‖ IV (12 bytes) ‖ ciphertext ‖ GCM tag (16 bytes).
 */

const VERSION = 1;
const HEADER = Buffer.from([VERSION]);
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const NO_AAD = Buffer.alloc(0);
const HKDF_SALT = 'oidc-sidecar/session';

/**
 * Encrypts `plaintext` under the 32-byte `key` with a fresh random IV. `aad` is authenticated but
 * not encrypted: `open` succeeds only with the same `aad`.
 */
export function seal(key: Buffer, plaintext: Buffer, aad: Buffer = NO_AAD): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.concat([HEADER, aad]));
  return Buffer.concat([HEADER, iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The plaintext of a `seal` result, or null when the input is malformed, altered or under another key/aad. */
export function open(key: Buffer, sealed: Buffer, aad: Buffer = NO_AAD): Buffer | null {
  if (key.length !== KEY_BYTES || sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) return null;
  const iv = sealed.subarray(1, 1 + IV_BYTES);
  const ciphertext = sealed.subarray(1 + IV_BYTES, sealed.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  decipher.setAAD(Buffer.concat([HEADER, aad]));
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    return null;
  }
}

/** A 32-byte key for one `purpose` (e.g. "session-ticket"), derived from `secret` with HKDF-SHA256. */
export function deriveKey(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, HKDF_SALT, purpose, KEY_BYTES));
}

/** The SHA-256 of `value`, base64url: names store keys and caches by a value without revealing it. */
export function sha256Base64url(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('base64url');
}
