import { execFile } from 'node:child_process';
import { constants, createHmac, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Test helpers for machine clients: key pairs and certificates made with the OpenSSL commands of the
 * seed, and a JWT signer with full control over header and claims (including the malformed ones the
 * tests need, which a JWT library would refuse to make).
 */

export interface TestCertificate {
  commonName: string;
  privateKey: KeyObject;
  /** The private key as PKCS#8 PEM text. */
  privateKeyPem: string;
  /** The certificate as PEM (`.pem`) and DER (`.cer`) files, and the PEM text. */
  pemFile: string;
  derFile: string;
  pem: string;
}

const run = promisify(execFile);

/** A 2048-bit RSA key and a self-signed certificate for `CN=<commonName>` in `directory`, named after `name`. */
export async function makeCertificate(directory: string, name: string, commonName: string): Promise<TestCertificate> {
  const keyFile = join(directory, `${name}.key`);
  const pemFile = join(directory, `${name}.pem`);
  const derFile = join(directory, `${name}.cer`);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', pemFile, '-days', '2', '-utf8', '-subj', `/O=Example Org/CN=${commonName}`]);
  await run('openssl', ['x509', '-in', pemFile, '-outform', 'DER', '-out', derFile]);
  const privateKeyPem = await readFile(keyFile, 'utf8');
  return { commonName, privateKey: createPrivateKey(privateKeyPem), privateKeyPem, pemFile, derFile, pem: await readFile(pemFile, 'utf8') };
}

/** A fresh PKCS#8 PEM private key (`openssl genpkey`). */
export async function makePrivateKeyPem(algorithm: 'RSA' | 'EC'): Promise<string> {
  const options = algorithm === 'RSA' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  return (await run('openssl', ['genpkey', ...options])).stdout;
}

export type JwtHeader = Record<string, unknown> & { alg: string };

const HASHES: Record<string, string> = { 256: 'sha256', 384: 'sha384', 512: 'sha512' };

/**
 * A compact JWT signed as its header's `alg` says: RS*, PS*, ES* with a private key, HS* with `key`
 * as the HMAC secret (whatever bytes it is), `none` unsigned.
 */
export function signJwt(header: JwtHeader, payload: Record<string, unknown>, key: KeyObject | string | Buffer | undefined): string {
  const input = `${base64url(JSON.stringify({ typ: 'JWT', ...header }))}.${base64url(JSON.stringify(payload))}`;
  const family = header.alg.slice(0, 2);
  const hash = HASHES[header.alg.slice(2)] ?? 'sha256';
  let signature: Buffer;
  if (header.alg === 'none') signature = Buffer.alloc(0);
  else if (family === 'HS') signature = createHmac(hash, key as string | Buffer).update(input).digest();
  else if (family === 'RS') signature = sign(hash, Buffer.from(input), key as KeyObject);
  else if (family === 'PS') signature = sign(hash, Buffer.from(input), { key: key as KeyObject, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  else signature = sign(hash, Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

/** The claims of a valid client-certificate token for `clientId`, issued now, valid one hour. */
export function certificateClaims(clientId: string, commonName: string, nowSeconds = Math.floor(Date.now() / 1000)): Record<string, unknown> {
  return { iat: nowSeconds, exp: nowSeconds + 3600, clientid: clientId, iss: `CN=${commonName}`, aud: 'odataquery' };
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}
