import { errors, jwtVerify, type JWTPayload } from 'jose';
import { PROVIDER_CLOCK_TOLERANCE_SECONDS, ProviderKeys, type FetchKeys } from './provider-keys.js';

const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const MAX_LOGOUT_TOKEN_AGE_SECONDS = 300;

/** Whose sessions a valid logout token ends: an IdP session (`sid`), a user (`sub`), or both. */
export interface LogoutTarget {
  sid?: string;
  sub?: string;
  /** The token id, for replay protection. */
  jti: string;
  /** When the token stops being acceptable (seconds since epoch). */
  exp: number;
}

/**
 * Validates OpenID Connect Back-Channel Logout 1.0 logout tokens: signature by the provider's keys
 * (fetched from its `jwks_uri`: see ProviderKeys), issuer, audience, age, the
 * logout event, `sid` or `sub`, and no `nonce`.
 */
export class LogoutTokenVerifier {
  readonly #keys: ProviderKeys;

  constructor(
    private readonly issuer: string,
    jwksUri: string,
    private readonly clientId: string,
    private readonly clockSeconds: () => number,
    fetchKeys: FetchKeys = fetch,
    onKeysError: (error: Error) => void = () => undefined,
  ) {
    this.#keys = new ProviderKeys(jwksUri, fetchKeys, () => this.clockSeconds() * 1000, { onFetchError: onKeysError });
  }

  /**
   * The target of a valid token. An unacceptable token throws `LogoutTokenError` with the precise
   * reason; a failure to fetch the provider's keys throws as it came (the provider may retry).
   */
  async verify(token: string): Promise<LogoutTarget> {
    const { payload } = await jwtVerify(token, this.#keys.getKey, {
      issuer: this.issuer,
      audience: this.clientId,
      maxTokenAge: MAX_LOGOUT_TOKEN_AGE_SECONDS,
      clockTolerance: PROVIDER_CLOCK_TOLERANCE_SECONDS,
      typ: undefined,
      currentDate: new Date(this.clockSeconds() * 1000),
      requiredClaims: ['iat', 'jti'],
    }).catch((error: unknown) => {
      if (error instanceof errors.JOSEError) throw new LogoutTokenError(error.message);
      throw error;
    });
    return logoutTarget(payload);
  }
}

/** A logout token that is not acceptable: its signature, claims or shape. */
export class LogoutTokenError extends Error {}

function logoutTarget(payload: JWTPayload): LogoutTarget {
  const events = payload.events as Record<string, unknown> | undefined;
  if (typeof events !== 'object' || events === null || !(BACKCHANNEL_LOGOUT_EVENT in events)) throw new LogoutTokenError('the token has no back-channel logout event');
  if ('nonce' in payload) throw new LogoutTokenError('a logout token must not contain a nonce');
  const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
  const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
  if (!sid && !sub) throw new LogoutTokenError('the token names neither sid nor sub');
  const exp = payload.exp ?? payload.iat! + MAX_LOGOUT_TOKEN_AGE_SECONDS;
  return { sid, sub, jti: String(payload.jti), exp };
}
