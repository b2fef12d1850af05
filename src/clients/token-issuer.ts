import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { readConfiguredFile } from '../config/files.js';
import type { Clock } from '../session/store.js';

/** The claims of an access token the sidecar issued (RFC 9068 shape). */
export interface IssuedTokenClaims extends JWTPayload {
  client_id: string;
  scope: string;
  jti: string;
  exp: number;
}

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: KeyObject;
  publicJwk: JWK;
}

const TOKEN_TYPE = 'at+jwt';
const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g;
const MIN_RSA_BITS = 2048;

/**
 * Signs the short-lived access tokens of the client credentials grant and verifies them. Keys come
 * from `clients.signingKeyFile`, a PEM bundle: the first key signs, every key verifies, so a key can be
 * rotated by putting the new one first and dropping the old one after `clients.tokenTtlSeconds`.
 * Each key's `kid` is its JWK thumbprint (RFC 7638).
 */
export class TokenIssuer {
  readonly #keys: SigningKey[];
  readonly #verificationKeys: ReturnType<typeof createLocalJWKSet>;
  readonly #algorithms: string[];

  private constructor(
    keys: SigningKey[],
    readonly issuer: string,
    readonly ttlSeconds: number,
    private readonly clock: Clock,
  ) {
    this.#keys = keys;
    this.#verificationKeys = createLocalJWKSet({ keys: keys.map((key) => key.publicJwk) });
    this.#algorithms = [...new Set(keys.map((key) => key.alg))];
  }

  /** Reads the keys of `keyFile`, or generates one (valid for this process only) when it is unset. */
  static async create(options: { keyFile?: string; issuer: string; ttlSeconds: number; clock: Clock }): Promise<TokenIssuer> {
    const privateKeys = options.keyFile === undefined ? [generateKey()] : await readKeyFile(options.keyFile);
    const keys = await Promise.all(privateKeys.map(signingKey));
    return new TokenIssuer(keys, options.issuer, options.ttlSeconds, options.clock);
  }

  /** A new access token for `clientId`, valid for `ttlSeconds`. */
  async issue(clientId: string, scopes: readonly string[]): Promise<{ token: string; claims: IssuedTokenClaims }> {
    const [key] = this.#keys as [SigningKey];
    const iat = Math.floor(this.clock() / 1000);
    const claims: IssuedTokenClaims = { client_id: clientId, scope: scopes.join(' '), jti: randomBytes(16).toString('base64url'), exp: iat + this.ttlSeconds };
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: TOKEN_TYPE })
      .setIssuer(this.issuer)
      .setAudience(this.issuer)
      .setSubject(clientId)
      .setIssuedAt(iat)
      .sign(key.privateKey);
    return { token, claims };
  }

  /** The claims of a token this issuer signed and that has not expired; throws a jose error otherwise. */
  async verify(token: string): Promise<IssuedTokenClaims> {
    const { payload } = await jwtVerify<IssuedTokenClaims>(token, this.#verificationKeys, {
      issuer: this.issuer,
      audience: this.issuer,
      algorithms: this.#algorithms,
      typ: TOKEN_TYPE,
      currentDate: new Date(this.clock()),
      requiredClaims: ['jti', 'exp', 'iat', 'client_id'],
    });
    if (typeof payload.client_id !== 'string' || typeof payload.jti !== 'string') throw new TypeError('client_id and jti must be strings');
    return payload;
  }

  /** The public keys, for `GET /oauth2/jwks`. */
  jwks(): { keys: JWK[] } {
    return { keys: this.#keys.map((key) => key.publicJwk) };
  }
}

async function readKeyFile(file: string): Promise<KeyObject[]> {
  const text = (await readConfiguredFile('clients.signingKeyFile', file)).toString('utf8');
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new Error(`clients.signingKeyFile: "${file}" holds no PEM private key`);
  return blocks.map((block, index) => {
    try {
      return createPrivateKey(block);
    } catch {
      throw new Error(`clients.signingKeyFile: PEM block ${index + 1} of "${file}" is not a private key`);
    }
  });
}

function generateKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

async function signingKey(privateKey: KeyObject, index: number): Promise<SigningKey> {
  const alg = algorithmOf(privateKey);
  if (!alg) throw new Error(`clients.signingKeyFile: key ${index + 1} must be RSA (≥ ${MIN_RSA_BITS} bits), EC P-256/P-384 or Ed25519`);
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, alg, privateKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
}

function algorithmOf(key: KeyObject): string | undefined {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return (details?.modulusLength ?? 0) >= MIN_RSA_BITS ? 'RS256' : undefined;
    case 'ec':
      return details?.namedCurve === 'prime256v1' ? 'ES256' : details?.namedCurve === 'secp384r1' ? 'ES384' : undefined;
    case 'ed25519':
      return 'EdDSA';
    default:
      return undefined;
  }
}
