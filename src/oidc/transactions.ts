import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { deriveKey, open, seal, sha256Base64url } from '../session/crypto.js';
import type { Clock, KeyValueStore } from '../session/store.js';
import type { AuthorizationChecks } from './provider.js';

/** One sign-in attempt in flight: what the callback needs to finish it. */
export interface LoginTransaction extends AuthorizationChecks {
  /** Where to send the browser after sign-in (absolute URL on the portal's origin). */
  returnTo: string;
  /** A hash of the browser-binding cookie value of the browser that started the attempt. */
  bindingHash: string;
  /** Milliseconds since the epoch; the callback must come before. */
  expiresAt: number;
  /** Started again for a callback that found another binding (see BrowserSignIn.complete): not again. */
  restarted: boolean;
}

/** What the state carries, sealed, under short names: the state travels in two URLs. */
interface SealedFields {
  /** Random id; the nonce and the PKCE verifier are derived from it. */
  i: string;
  r: string;
  b: string;
  /** Expiry, seconds since the epoch. */
  e: number;
  /** 1 when restarted. */
  s?: 1;
}

/** How long a sign-in may take between leaving for the provider and coming back. */
export const TRANSACTION_TTL_MS = 10 * 60 * 1000;
/** A return URL longer than this comes back to its path only, or to `/`: the state stays short. */
export const MAX_RETURN_URL_IN_STATE = 1024;
/** Longer than any state `begin` makes from a return URL of MAX_RETURN_URL_IN_STATE. */
const MAX_STATE_LENGTH = 2048;
const ID_BYTES = 16;
const STATE_AAD = Buffer.from('login-transaction');

/**
 * A login transaction travels in its own `state`, sealed (AES-256-GCM) with a key derived from the
 * session secret: starting a sign-in writes nothing anywhere — an anonymous request costs no store
 * write —, every tab carries its own transaction, and any replica can finish it. The state holds a
 * random id, the return URL, a hash of the browser binding and the expiry, about 200 characters for
 * a short return URL (ingresses and gateways often refuse query strings over 2 KB, and the
 * provider's code shares the callback's); the nonce and the PKCE verifier are derived from the id
 * with keys only the sidecar holds. A state is good for TRANSACTION_TTL_MS and for one code
 * exchange: the callback claims it in the store first (`claim`), so a replayed callback, or two at
 * once, cannot exchange a code twice.
 */
export class LoginTransactions {
  readonly #key: Buffer;
  readonly #nonceKey: Buffer;
  readonly #verifierKey: Buffer;

  constructor(
    private readonly store: KeyValueStore,
    secret: string,
    private readonly clock: Clock,
  ) {
    this.#key = deriveKey(secret, 'login-transaction');
    this.#nonceKey = deriveKey(secret, 'login-transaction-nonce');
    this.#verifierKey = deriveKey(secret, 'login-transaction-pkce');
  }

  /** A new transaction, its `state` the sealed rest. */
  begin(attempt: { returnTo: string; bindingHash: string; restarted?: boolean }): LoginTransaction {
    const fields: SealedFields = {
      i: randomBytes(ID_BYTES).toString('base64url'),
      r: boundedReturnUrl(attempt.returnTo),
      b: attempt.bindingHash,
      e: Math.floor((this.clock() + TRANSACTION_TTL_MS) / 1000),
      ...(attempt.restarted ? { s: 1 as const } : {}),
    };
    const state = seal(this.#key, Buffer.from(JSON.stringify(fields)), STATE_AAD).toString('base64url');
    return this.#transaction(state, fields);
  }

  /** The transaction `state` carries; null when it is forged or expired. Whether it was used, `claim` tells. */
  open(state: string): LoginTransaction | null {
    if (!state || state.length > MAX_STATE_LENGTH) return null;
    const plaintext = open(this.#key, Buffer.from(state, 'base64url'), STATE_AAD);
    if (!plaintext) return null;
    const transaction = this.#transaction(state, JSON.parse(plaintext.toString('utf8')) as SealedFields);
    return this.clock() < transaction.expiresAt ? transaction : null;
  }

  /**
   * Takes the transaction for its code exchange, on every replica at once: null when another
   * callback of the same state took it — one that finished (a replay) or one still at the provider
   * (a reload, a retrying ingress): a code exchanged twice makes a provider revoke what it granted.
   * Taken, it stays so until it would have expired, unless given back with the function returned
   * (the exchange failed: the same callback may be tried again).
   */
  async claim(transaction: LoginTransaction): Promise<(() => Promise<void>) | null> {
    const ttlMs = transaction.expiresAt - this.clock();
    if (ttlMs <= 0) return null;
    return this.store.tryLock(usedKey(transaction.state), ttlMs);
  }

  #transaction(state: string, fields: SealedFields): LoginTransaction {
    return {
      state,
      nonce: createHmac('sha256', this.#nonceKey).update(fields.i).digest('base64url'),
      codeVerifier: createHmac('sha256', this.#verifierKey).update(fields.i).digest('base64url'),
      returnTo: fields.r,
      bindingHash: fields.b,
      expiresAt: fields.e * 1000,
      restarted: fields.s === 1,
    };
  }
}

function usedKey(state: string): string {
  return 'tx-used:' + sha256Base64url(state);
}

/** `returnTo`, or its path alone, or the origin's `/`: whichever is the first short enough. */
function boundedReturnUrl(returnTo: string): string {
  if (returnTo.length <= MAX_RETURN_URL_IN_STATE) return returnTo;
  const url = new URL(returnTo);
  const withoutQuery = url.origin + url.pathname;
  return withoutQuery.length <= MAX_RETURN_URL_IN_STATE ? withoutQuery : url.origin + '/';
}

/** A new browser-binding value (set once per browser, shared by its tabs). */
export function newBindingValue(): string {
  return randomBytes(24).toString('base64url');
}

const BINDING_VALUE = /^[A-Za-z0-9_-]{32}$/;

/** True for a value `newBindingValue` could have made. */
export function isBindingValue(value: string): boolean {
  return BINDING_VALUE.test(value);
}

/** The binding value's SHA-256 cut to 22 base64url characters (132 bits): all a state needs to tell browsers apart. */
export function bindingHash(value: string): string {
  return sha256Base64url(value).slice(0, 22);
}

/** True when `cookieValue` is the binding the transaction was started with (constant time). */
export function isBoundTo(transaction: LoginTransaction, cookieValue: string | undefined): boolean {
  if (!cookieValue) return false;
  const expected = Buffer.from(transaction.bindingHash);
  const actual = Buffer.from(bindingHash(cookieValue));
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
