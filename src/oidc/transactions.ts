import { randomBytes, timingSafeEqual } from 'node:crypto';
import { deriveKey, open, seal, sha256Base64url } from '../session/crypto.js';
import type { Clock, KeyValueStore } from '../session/store.js';
import type { AuthorizationChecks } from './provider.js';

/** One sign-in attempt in flight: what the callback needs to finish it. */
export interface LoginTransaction extends AuthorizationChecks {
  /** Where to send the browser after sign-in (absolute URL on the portal's origin). */
  returnTo: string;
  /** SHA-256 of the browser-binding cookie value of the browser that started the attempt. */
  bindingHash: string;
  /** Milliseconds since the epoch; the callback must come before. */
  expiresAt: number;
}

type SealedTransaction = Omit<LoginTransaction, 'state'>;

/** How long a sign-in may take between leaving for the provider and coming back. */
export const TRANSACTION_TTL_MS = 10 * 60 * 1000;
/** The state travels in two URLs: a return URL longer than this comes back to its path only, or to `/`. */
export const MAX_RETURN_URL_LENGTH = 2048;
/** Longer than any state `begin` makes from a return URL of MAX_RETURN_URL_LENGTH. */
const MAX_STATE_LENGTH = 4096;
const STATE_AAD = Buffer.from('login-transaction');
const USED = Buffer.from('1');

/**
 * A login transaction travels in its own `state`, sealed (AES-256-GCM) with a key derived from the
 * session secret: starting a sign-in writes nothing anywhere — an anonymous request costs no store
 * write —, every tab carries its own transaction, and any replica can finish it. A state is good
 * for TRANSACTION_TTL_MS and for one sign-in: once its code exchange succeeded, the state is marked
 * used in the store until it would have expired, so a replayed callback is refused.
 */
export class LoginTransactions {
  readonly #key: Buffer;

  constructor(
    private readonly store: KeyValueStore,
    secret: string,
    private readonly clock: Clock,
  ) {
    this.#key = deriveKey(secret, 'login-transaction');
  }

  /** A new transaction, its `state` the sealed rest. */
  begin(attempt: Omit<SealedTransaction, 'expiresAt'>): LoginTransaction {
    const sealed: SealedTransaction = { ...attempt, returnTo: boundedReturnUrl(attempt.returnTo), expiresAt: this.clock() + TRANSACTION_TTL_MS };
    const state = seal(this.#key, Buffer.from(JSON.stringify(sealed)), STATE_AAD).toString('base64url');
    return { ...sealed, state };
  }

  /** The transaction `state` carries; null when it is forged, expired or already used. */
  async open(state: string): Promise<LoginTransaction | null> {
    if (!state || state.length > MAX_STATE_LENGTH) return null;
    const plaintext = open(this.#key, Buffer.from(state, 'base64url'), STATE_AAD);
    if (!plaintext) return null;
    const sealed = JSON.parse(plaintext.toString('utf8')) as SealedTransaction;
    if (this.clock() >= sealed.expiresAt || (await this.store.get(usedKey(state))) !== null) return null;
    return { ...sealed, state };
  }

  /** After a successful code exchange: the state can sign no one in again. */
  async markUsed(transaction: LoginTransaction): Promise<void> {
    const ttlMs = transaction.expiresAt - this.clock();
    if (ttlMs > 0) await this.store.set(usedKey(transaction.state), USED, ttlMs);
  }
}

function usedKey(state: string): string {
  return 'tx-used:' + sha256Base64url(state);
}

/** `returnTo`, or its path alone, or the origin's `/`: whichever is the first short enough. */
function boundedReturnUrl(returnTo: string): string {
  if (returnTo.length <= MAX_RETURN_URL_LENGTH) return returnTo;
  const url = new URL(returnTo);
  const withoutQuery = url.origin + url.pathname;
  return withoutQuery.length <= MAX_RETURN_URL_LENGTH ? withoutQuery : url.origin + '/';
}

/** A new browser-binding value (set once per browser, shared by its tabs). */
export function newBindingValue(): string {
  return randomBytes(24).toString('base64url');
}

export function bindingHash(value: string): string {
  return sha256Base64url(value);
}

/** True when `cookieValue` is the binding the transaction was started with (constant time). */
export function isBoundTo(transaction: LoginTransaction, cookieValue: string | undefined): boolean {
  if (!cookieValue) return false;
  const expected = Buffer.from(transaction.bindingHash);
  const actual = Buffer.from(bindingHash(cookieValue));
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
