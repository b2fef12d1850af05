import type { KeyObject } from 'node:crypto';
import { compactVerify, decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import { certificateRefusals as refusals, type Refusal } from './reasons.js';
import type { Application, ApplicationRegistry } from './registry.js';

/**
 * The `X-ClientCertificate-Token` of the seed (`002_9570ba0017425314.txt`): a JWT the application
 * signs itself, with its certificate's private key (RS*) or its shared secret (HS*).
 */

export const CERTIFICATE_TOKEN_HEADER = 'x-clientcertificate-token';
export const CERTIFICATE_TOKEN_AUDIENCE = 'odataquery';

/** Which of the application's keys verifies each allowed algorithm: chosen by the registration, never by the token. */
const KEY_BY_ALGORITHM: Record<string, (app: Application) => KeyObject | undefined> = {
  RS256: (app) => app.certificateKey,
  RS384: (app) => app.certificateKey,
  RS512: (app) => app.certificateKey,
  HS256: (app) => app.hmacKey,
  HS384: (app) => app.hmacKey,
  HS512: (app) => app.hmacKey,
};
const ALLOWED_CLAIMS = new Set(['iat', 'exp', 'clientid', 'iss', 'aud']);
const MAX_CLOCK_SKEW_SECONDS = 60;
const MAX_LIFETIME_SECONDS = 24 * 60 * 60;

export type CertificateTokenResult = { ok: true; app: Application; expiresAtSeconds: number } | { ok: false; refusal: Refusal; clientId?: string };

/**
 * Checks every rule of the seed except the request path (the caller checks the application's routes
 * per request). The `kid`, `jku`, `x5u`, `x5c` and `jwk` headers are ignored: the key is always the
 * registered one. Every rule but expiry is a property of the token alone, so a success stays valid
 * until `expiresAtSeconds`.
 */
export async function verifyCertificateToken(token: string, registry: ApplicationRegistry, nowSeconds: number): Promise<CertificateTokenResult> {
  const decoded = decode(token);
  if (!decoded) return { ok: false, refusal: refusals.malformed };
  const { alg, payload } = decoded;
  const keyOf = Object.hasOwn(KEY_BY_ALGORITHM, alg) ? KEY_BY_ALGORITHM[alg] : undefined;
  if (!keyOf) return { ok: false, refusal: refusals.algorithm(alg) };
  const app = typeof payload.clientid === 'string' ? registry.get(payload.clientid) : undefined;
  if (!app?.grantTypes.has('client_certificate')) return { ok: false, refusal: refusals.unknownClient };
  const failed = (refusal: Refusal): CertificateTokenResult => ({ ok: false, refusal, clientId: app.clientId });
  if (!(await signatureValid(token, alg, keyOf(app)))) return failed(refusals.signature);
  const refusal = claimsRefusal(payload, app, nowSeconds);
  return refusal ? failed(refusal) : { ok: true, app, expiresAtSeconds: payload.exp as number };
}

function decode(token: string): { alg: string; payload: JWTPayload } | undefined {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg === 'string' ? { alg, payload: decodeJwt(token) } : undefined;
  } catch {
    return undefined;
  }
}

async function signatureValid(token: string, alg: string, key: KeyObject | undefined): Promise<boolean> {
  if (!key) return false;
  try {
    await compactVerify(token, key, { algorithms: [alg] });
    return true;
  } catch {
    return false;
  }
}

function claimsRefusal(payload: JWTPayload, app: Application, now: number): Refusal | undefined {
  const extra = Object.keys(payload).filter((name) => !ALLOWED_CLAIMS.has(name));
  if (extra.length > 0) return refusals.extraClaims(extra);
  if (payload.aud !== CERTIFICATE_TOKEN_AUDIENCE) return refusals.audience;
  if (payload.iss !== app.issuerName && payload.iss !== `CN=${app.issuerName}`) return refusals.issuer;
  const { iat, exp } = payload;
  if (!isTimestamp(iat) || !isTimestamp(exp)) return refusals.lifetimeClaims;
  if (iat > now + MAX_CLOCK_SKEW_SECONDS) return refusals.notYetValid;
  if (exp <= now) return refusals.expired;
  if (exp - iat > MAX_LIFETIME_SECONDS) return refusals.tooLong;
  return undefined;
}

function isTimestamp(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}
