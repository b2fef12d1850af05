import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../session/store.js';

export type FetchKeys = (url: string, options: RequestInit) => Promise<Response>;

export interface ProviderKeysOptions {
  /** Keys fetched longer ago than this are fetched again in the background, and used meanwhile. */
  maxAgeMs?: number;
  /** A token naming a key not in hand fetches the key set again at most this often (key rotation). */
  cooldownMs?: number;
  /** After a failed fetch, none for this long: tokens meanwhile find the keys in hand, or none. */
  retryMs?: number;
  /** Told of each fetch that failed, once (however many tokens waited for it). */
  onFetchError?: (error: KeysUnavailableError) => void;
}

const DEFAULTS = { maxAgeMs: 10 * 60_000, cooldownMs: 30_000, retryMs: 10_000 };
/** Keys not fetched again for this long are not used any more: the provider may have withdrawn one. */
const MAX_STALE_MS = 24 * 60 * 60_000;
const FETCH_TIMEOUT_MS = 5_000;

/**
 * How far the provider's clock may be ahead of or behind ours for the tokens it signs (`iat`, `nbf`,
 * `exp`): as openid-client allows for ID tokens. Without it, a provider a second ahead has every fresh
 * token refused.
 */
export const PROVIDER_CLOCK_TOLERANCE_SECONDS = 30;

/** The provider's key set could not be had: the provider's fault, not the token's. */
export class KeysUnavailableError extends Error {}

/**
 * The signing keys an identity provider publishes at its `jwks_uri`, for jose's `jwtVerify`. Unlike
 * jose's remote key set, a fetch that fails keeps the keys in hand (a JWKS endpoint that stumbles
 * while the keys are due for a refresh must not refuse every token) — for a day at most —, keys due
 * for a refresh are used while the refresh runs, and a failed fetch is not repeated for `retryMs`:
 * during an outage tokens are answered at once rather than each waiting for a request of its own.
 */
export class ProviderKeys {
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #retryMs: number;
  readonly #onFetchError: (error: KeysUnavailableError) => void;
  #keys: JWTVerifyGetKey | undefined;
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #failedAt = Number.NEGATIVE_INFINITY;
  #fetching: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly fetchKeys: FetchKeys,
    private readonly clock: Clock,
    options: ProviderKeysOptions = {},
  ) {
    this.#maxAgeMs = options.maxAgeMs ?? DEFAULTS.maxAgeMs;
    this.#cooldownMs = options.cooldownMs ?? DEFAULTS.cooldownMs;
    this.#retryMs = options.retryMs ?? DEFAULTS.retryMs;
    this.#onFetchError = options.onFetchError ?? (() => undefined);
  }

  /** The key a token names (jose's `getKey`); throws `KeysUnavailableError` when the key set cannot be had. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const age = this.clock() - this.#fetchedAt;
    if (!this.#keys || age >= MAX_STALE_MS) await this.#refresh();
    else if (age >= this.#maxAgeMs) this.#refresh().catch(() => undefined);
    try {
      return await this.#keys!(header, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey) || this.clock() - this.#fetchedAt < this.#cooldownMs) throw error;
      await this.#refresh();
      return this.#keys!(header, token);
    }
  };

  /** Fetches the key set, once for all callers at a time; not within `retryMs` of a failure. */
  #refresh(): Promise<void> {
    if (this.#fetching) return this.#fetching;
    if (this.clock() - this.#failedAt < this.#retryMs) {
      return Promise.reject(new KeysUnavailableError(`the key set at ${this.url} could not be fetched a moment ago`));
    }
    this.#fetching = this.#fetch().then(
      (keys) => {
        this.#keys = keys;
        this.#fetchedAt = this.clock();
      },
      (error: unknown) => {
        this.#failedAt = this.clock();
        const unavailable = new KeysUnavailableError(`the key set at ${this.url} could not be fetched: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        this.#onFetchError(unavailable);
        throw unavailable;
      },
    ).finally(() => {
      this.#fetching = undefined;
    });
    return this.#fetching;
  }

  async #fetch(): Promise<JWTVerifyGetKey> {
    const response = await this.fetchKeys(this.url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'error', headers: { accept: 'application/json' } });
    if (!response.ok) throw new Error(`it answered ${response.status}`);
    return createLocalJWKSet((await response.json()) as JSONWebKeySet);
  }
}
