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
/**
 * Bounds on a hand-edited hash: scrypt needs 128·N·r bytes (at most 256 MiB here) and its time grows
 * with N·r·p (at most 64 × the defaults'). An unknown client id pays the costliest registered hash too.
 */
const LIMITS = { minN: 2 ** 10, maxN: 2 ** 20, maxR: 32, maxP: 16, maxMemoryBytes: 256 * 2 ** 20, maxWork: 64 * DEFAULTS.N * DEFAULTS.r * DEFAULTS.p };

/** Hashes a secret with fresh salt and the default parameters. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(secret, { params: DEFAULTS, salt, hash: Buffer.alloc(HASH_BYTES) });
  return encode(DEFAULTS, salt, hash);
}

/** True when `encoded` is a hash in our format with parameters within bounds. */
export function isSecretHash(encoded: string): boolean {
  return parseSecretHash(encoded) !== undefined;
}

/**
 * A hash no secret matches, made without hashing, with the parameters (N, r, p, key and salt length)
 * of the most expensive of `hashes` — largest N·r·p, then key length — or the defaults when none is a
 * hash in our format. Checking a secret against it costs what checking against that hash does, so
 * that an unknown client id takes as long to refuse as a known one.
 */
export function decoySecretHash(hashes: Iterable<string | undefined>): string {
  let costliest: SecretHash | undefined;
  for (const encoded of hashes) {
    const parsed = encoded === undefined ? undefined : parseSecretHash(encoded);
    if (parsed && (!costliest || compareCost(parsed, costliest) > 0)) costliest = parsed;
  }
  const { params, salt, hash } = costliest ?? { params: DEFAULTS, salt: { length: SALT_BYTES }, hash: { length: HASH_BYTES } };
  // Random bytes stand in for the derived key: a match would need scrypt to hit them (2^-256).
  return encode(params, randomBytes(salt.length), randomBytes(hash.length));
}

/** True when `encoded` is a hash in our format that costs less to check than `other` (see `decoySecretHash`). */
export function costsLessThan(encoded: string, other: string): boolean {
  const [mine, theirs] = [parseSecretHash(encoded), parseSecretHash(other)];
  return mine !== undefined && theirs !== undefined && compareCost(mine, theirs) < 0;
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
  if (128 * N * r > LIMITS.maxMemoryBytes || N * r * p > LIMITS.maxWork) return undefined;
  return { params: { N, r, p }, salt: Buffer.from(match[4]!, 'base64url'), hash: Buffer.from(match[5]!, 'base64url') };
}

function encode({ N, r, p }: SecretHash['params'], salt: Buffer, hash: Buffer): string {
  return ['scrypt', N, r, p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

/** scrypt's work grows with N·r·p; the key and salt lengths add a little to its PBKDF2 steps. */
function compareCost(a: SecretHash, b: SecretHash): number {
  const work = ({ params: { N, r, p } }: SecretHash) => N * r * p;
  return work(a) - work(b) || a.hash.length - b.hash.length || a.salt.length - b.salt.length;
}

function derive(secret: string, { params, salt, hash }: SecretHash): Promise<Buffer> {
  // scrypt needs 128·N·r bytes; its default ceiling (32 MiB) is exactly the default parameters' need.
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(secret.normalize('NFC'), salt, hash.length, options, (error, key) => (error ? reject(error) : resolve(key)));
  });
}
