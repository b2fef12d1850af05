import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Client secrets are stored as `scrypt$N$r$p$salt$hash` (salt and hash base64url), the line printed
 * by `oidc-sidecar hash-secret`. The parameters travel with the hash, so they can be raised later
 * without invalidating the secrets already issued.
 */

interface SecretHash {
  params: { N: number; r: number; p: number };
  salt: Buffer;
  hash: Buffer;
}

const DEFAULTS = { N: 2 ** 15, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
const FORMAT = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9_-]{22,})\$([A-Za-z0-9_-]{43,})$/;
/** Bounds that keep a hand-edited hash from costing more than a fraction of a second or 256 MiB. */
const LIMITS = { minN: 2 ** 10, maxN: 2 ** 20, maxR: 32, maxP: 16 };

/** Hashes a secret with fresh salt and the default parameters. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(secret, { params: DEFAULTS, salt, hash: Buffer.alloc(HASH_BYTES) });
  return ['scrypt', DEFAULTS.N, DEFAULTS.r, DEFAULTS.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

/** True when `encoded` is a hash in our format with parameters within bounds. */
export function isSecretHash(encoded: string): boolean {
  return parseSecretHash(encoded) !== undefined;
}

/** True when `secret` hashes to `encoded`; compared in constant time. False for a malformed hash. */
export async function verifySecret(secret: string, encoded: string): Promise<boolean> {
  const parsed = parseSecretHash(encoded);
  if (!parsed) return false;
  return timingSafeEqual(await derive(secret, parsed), parsed.hash);
}

function parseSecretHash(encoded: string): SecretHash | undefined {
  const match = FORMAT.exec(encoded);
  if (!match) return undefined;
  const [N, r, p] = [match[1], match[2], match[3]].map(Number) as [number, number, number];
  const powerOfTwo = (N & (N - 1)) === 0;
  if (!powerOfTwo || N < LIMITS.minN || N > LIMITS.maxN || r < 1 || r > LIMITS.maxR || p < 1 || p > LIMITS.maxP) return undefined;
  return { params: { N, r, p }, salt: Buffer.from(match[4]!, 'base64url'), hash: Buffer.from(match[5]!, 'base64url') };
}

function derive(secret: string, { params, salt, hash }: SecretHash): Promise<Buffer> {
  // scrypt needs 128·N·r bytes; its default ceiling (32 MiB) is exactly the default parameters' need.
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(secret.normalize('NFC'), salt, hash.length, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}
