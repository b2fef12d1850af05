import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { isHttpsOrLoopback } from '../config/schema.js';
import { timedFetch, type IdpEndpoint } from '../metrics/index.js';
import { KeysUnavailableError, PROVIDER_CLOCK_TOLERANCE_SECONDS, ProviderKeys } from '../oidc/provider-keys.js';
import type { Clock } from '../session/store.js';
import { bearerRefusals as refusals, type Refusal } from './reasons.js';

export interface IdpTokenSettings {
  issuer: string;
  audience: string | string[];
  requiredRoles: readonly string[];
}

export interface IdpTokenOptions {
  /** Tests shorten the refetch cooldown to show a rotation without waiting; production keeps 30 s. */
  jwksCooldownMs?: number;
  /** Told of each request to the provider (discovery, key set) and how long it took. */
  onIdpRequest?: (endpoint: IdpEndpoint, seconds: number) => void;
}

export type IdpTokenResult = { ok: true; clientId: string; roles: string[]; expiresAtSeconds: number } | { ok: false; refusal: Refusal; clientId?: string };

/** Asymmetric algorithms only: an IdP token is never verified with a shared secret. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const DISCOVERY_TIMEOUT_MS = 10_000;
/** After a failed discovery the provider is not asked again for this long: tokens meanwhile are refused at once. */
const DISCOVERY_RETRY_MS = 10_000;

/**
 * JWT access tokens the identity provider issued to its own client-credentials applications
 * (`clients.idpTokens`): issuer, audience, signature by a key of the provider's JWKS (found by
 * discovery, cached, refetched when the provider rotates), and the required roles.
 */
export class IdpTokenVerifier {
  #keys: Promise<ProviderKeys> | undefined;
  /** When discovery last failed: until DISCOVERY_RETRY_MS later, no new attempt. */
  #discoveryFailedAt: number | undefined;

  constructor(
    private readonly settings: IdpTokenSettings,
    private readonly clock: Clock,
    /** Told why the provider's keys could not be loaded: discovery or the JWKS fetch failed. */
    private readonly onKeysError: (error: unknown) => void,
    private readonly options: IdpTokenOptions = {},
  ) {}

  get issuer(): string {
    return this.settings.issuer;
  }

  async verify(token: string): Promise<IdpTokenResult> {
    const keys = await this.#keySet();
    if (!keys) return { ok: false, refusal: refusals.idpUnavailable };
    let payload: JWTPayload;
    try {
      payload = await verifyWithCandidates(token, keys.getKey, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        algorithms: ALGORITHMS,
        currentDate: new Date(this.clock()),
        clockTolerance: PROVIDER_CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp'],
      });
    } catch (error) {
      // A key set that cannot be fetched (the JWKS endpoint is down, say) is the provider's fault, not the token's.
      if (error instanceof KeysUnavailableError) return { ok: false, refusal: refusals.idpUnavailable };
      const { code, message } = error instanceof errors.JOSEError ? error : { code: 'invalid_token', message: 'the token is not acceptable' };
      return { ok: false, refusal: refusals.rejected(code, message) };
    }
    return this.#authorize(payload);
  }

  #authorize(payload: JWTPayload): IdpTokenResult {
    const clientId = [payload.client_id, payload.azp, payload.appid].find((value) => typeof value === 'string' && value !== '') as string | undefined;
    if (!clientId) return { ok: false, refusal: refusals.noClientId };
    if (isForSignedInUser(payload)) return { ok: false, refusal: refusals.delegated, clientId };
    const roles = Array.isArray(payload.roles) ? payload.roles.filter((role): role is string => typeof role === 'string') : [];
    const missing = this.settings.requiredRoles.filter((role) => !roles.includes(role));
    if (missing.length > 0) return { ok: false, refusal: refusals.missingRoles(missing), clientId };
    return { ok: true, clientId, roles, expiresAtSeconds: payload.exp! };
  }

  /** Finds the provider's key set by discovery: its only two requests are the metadata and the key set it names. */
  async #discover(): Promise<ProviderKeys> {
    const { issuer } = this.settings;
    const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const fetchTimed = timedFetch((target) => (target === url ? 'discovery' : 'jwks'), this.options.onIdpRequest ?? (() => undefined));
    const response = await fetchTimed(url, { signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS), redirect: 'error' });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    const metadata = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown };
    if (metadata.issuer !== issuer) throw new Error(`${url} names another issuer`);
    if (typeof metadata.jwks_uri !== 'string' || !isHttpsOrLoopback(metadata.jwks_uri)) throw new Error(`${url} names no usable jwks_uri`);
    return new ProviderKeys(metadata.jwks_uri, fetchTimed, this.clock, { cooldownMs: this.options.jwksCooldownMs, onFetchError: this.onKeysError });
  }

  /**
   * The provider's key set, found once by discovery. A failed discovery is said once and tried
   * again on a token at least DISCOVERY_RETRY_MS later: tokens naming the provider (anyone can
   * make one) must not turn into one request to a failing provider each.
   */
  async #keySet(): Promise<ProviderKeys | undefined> {
    if (this.#keys === undefined && this.#discoveryFailedAt !== undefined && this.clock() - this.#discoveryFailedAt < DISCOVERY_RETRY_MS) return undefined;
    const keys = (this.#keys ??= this.#discover());
    try {
      return await keys;
    } catch (error) {
      if (this.#keys === keys) {
        this.#keys = undefined;
        this.#discoveryFailedAt = this.clock();
        this.onKeysError(error);
      }
      return undefined;
    }
  }
}

/**
 * A token issued to an application acting for a signed-in user, or for the user: the portal would
 * take the user's request for the application's own. Azure says so with `scp` or `idtyp: user`; an
 * ID token carries a `nonce`. (Its subject tells nothing for certain: providers name an application
 * in `sub` their own way — the client id, `<client id>@clients`, a service account's id.)
 */
function isForSignedInUser(payload: JWTPayload): boolean {
  return payload.scp !== undefined || payload.idtyp === 'user' || payload.nonce !== undefined;
}

/**
 * Verifies `token` with the key set; a token without `kid` that several of the provider's keys could
 * have signed is tried against each of them (as jose documents), the first whose signature matches wins.
 */
async function verifyWithCandidates(token: string, getKey: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, getKey, options)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    for await (const key of error) {
      try {
        return (await jwtVerify(token, key, options)).payload;
      } catch (candidateError) {
        if (!(candidateError instanceof errors.JWSSignatureVerificationFailed)) throw candidateError;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}
