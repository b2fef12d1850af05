import { randomBytes, timingSafeEqual } from 'node:crypto';
import { deriveKey, open, seal, sha256Base64url } from '../session/crypto.js';
import type { KeyValueStore } from '../session/store.js';
import type { AuthorizationChecks } from './provider.js';

/** One sign-in attempt in flight: what the callback needs to finish it. */
export interface LoginTransaction extends AuthorizationChecks {
  /** Where to send the browser after sign-in (absolute URL on the portal's origin). */
  returnTo: string;
  /** SHA-256 of the browser-binding cookie value of the browser that started the attempt. */
  bindingHash: string;
}

/** How long a sign-in may take between leaving for the provider and coming back. */
export const TRANSACTION_TTL_MS = 10 * 60 * 1000;

/**
 * Login transactions live in the shared store under a hash of their `state`, sealed with a key
 * derived from the session secret: every tab gets its own, any replica can finish it, and taking
 * one deletes it atomically, so a replayed callback finds nothing.
 */
export class LoginTransactions {
  readonly #key: Buffer;

  constructor(private readonly store: KeyValueStore, secret: string) {
    this.#key = deriveKey(secret, 'login-transaction');
  }

  /** Stores the transaction; returns its `state`. */
  async begin(transaction: Omit<LoginTransaction, 'state'>): Promise<LoginTransaction> {
    const state = randomBytes(24).toString('base64url');
    const complete: LoginTransaction = { ...transaction, state };
    const sealed = seal(this.#key, Buffer.from(JSON.stringify(complete)), Buffer.from(state));
    await this.store.set(storeKey(state), sealed, TRANSACTION_TTL_MS);
    return complete;
  }

  /** Takes (and so ends) the transaction of `state`; null when unknown, used or expired. */
  async take(state: string): Promise<LoginTransaction | null> {
    if (!state || state.length > 256) return null;
    const sealed = await this.store.take(storeKey(state));
    if (!sealed) return null;
    const plaintext = open(this.#key, sealed, Buffer.from(state));
    return plaintext ? (JSON.parse(plaintext.toString('utf8')) as LoginTransaction) : null;
  }
}

function storeKey(state: string): string {
  return 'tx:' + sha256Base64url(state);
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
