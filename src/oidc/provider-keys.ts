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
  /** Told why a background fetch failed (nobody waits for it; a waited-for one throws instead). */
  onBackgroundError?: (error: KeysUnavailableError) => void;
}

const DEFAULTS = { maxAgeMs: 10 * 60_000, cooldownMs: 30_000, retryMs: 10_000 };
const FETCH_TIMEOUT_MS = 5_000;

/** The provider's key set could not be had: the provider's fault, not the token's. */
export class KeysUnavailableError extends Error {
  /** False when no request was made: an earlier fetch failed less than `retryMs` ago. */
  readonly fetched: boolean;

  constructor(message: string, fetched: boolean, options?: ErrorOptions) {
    super(message, options);
    this.fetched = fetched;
  }
}

/**
 * The signing keys an identity provider publishes at its `jwks_uri`, for jose's `jwtVerify`. Unlike
 * jose's remote key set, a fetch that fails keeps the keys in hand (a JWKS endpoint that stumbles
 * while the keys are due for a refresh must not refuse every token), keys due for a refresh are
 * used while the refresh runs, and a failed fetch is not repeated for `retryMs`: during an outage
 * tokens are answered at once rather than each waiting for a request of its own.
 */
export class ProviderKeys {
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #retryMs: number;
  readonly #onBackgroundError: (error: KeysUnavailableError) => void;
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
    this.#onBackgroundError = options.onBackgroundError ?? (() => undefined);
  }

  /** The key a token names (jose's `getKey`); throws `KeysUnavailableError` when the key set cannot be had. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (!this.#keys) await this.#refresh();
    else if (this.clock() - this.#fetchedAt >= this.#maxAgeMs) this.#refresh().catch(this.#reportBackgroundError);
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
      return Promise.reject(new KeysUnavailableError(`the key set at ${this.url} could not be fetched a moment ago`, false));
    }
    this.#fetching = this.#fetch().then(
      (keys) => {
        this.#keys = keys;
        this.#fetchedAt = this.clock();
      },
      (error: unknown) => {
        this.#failedAt = this.clock();
        throw new KeysUnavailableError(`the key set at ${this.url} could not be fetched: ${error instanceof Error ? error.message : String(error)}`, true, { cause: error });
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

  readonly #reportBackgroundError = (error: unknown): void => {
    if (error instanceof KeysUnavailableError && error.fetched) this.#onBackgroundError(error);
  };
}
