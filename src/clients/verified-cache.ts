import { hash } from 'node:crypto';
import { setBounded } from '../session/bounded.js';
import type { Clock } from '../session/store.js';

/**
 * Tokens already verified, by the SHA-256 of the token, so a client sending the same token on every
 * request is verified once. Bounded: past `maxEntries` the oldest entry goes. An entry is never
 * returned past the expiry it was stored with (the caller passes at most the token's `exp`).
 */
export class VerifiedTokenCache<T> {
  readonly #entries = new Map<string, { value: T; expiresAt: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly clock: Clock,
  ) {}

  get(key: string): T | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (this.clock() < entry.expiresAt) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  set(key: string, value: T, expiresAt: number): void {
    setBounded(this.#entries, key, { value, expiresAt }, this.maxEntries);
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** The cache key of a token. */
export function tokenKey(token: string): string {
  return hash('sha256', token, 'base64url');
}
