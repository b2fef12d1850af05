import { setBounded } from '../session/bounded.js';
import type { Clock } from '../session/store.js';

/**
 * Counts failures per key (a source address and the client id it tried) in fixed windows. Past the
 * limit, that key's attempts are refused without hashing the secret: scrypt is deliberately
 * expensive, and guessing a client's secret is cut to `limit` tries per window, address and replica.
 * Bounded: past `maxKeys` the oldest key goes.
 */
export class FailureThrottle {
  readonly #failures = new Map<string, { count: number; windowStart: number }>();

  constructor(
    private readonly options: { limit: number; windowMs: number; maxKeys: number },
    private readonly clock: Clock,
  ) {}

  isThrottled(key: string): boolean {
    const entry = this.#current(key);
    return entry !== undefined && entry.count >= this.options.limit;
  }

  /** Takes back one failure: an attempt counted as failed before its outcome was known succeeded. */
  forgive(key: string): void {
    const entry = this.#current(key);
    if (entry && entry.count > 0) entry.count--;
  }

  recordFailure(key: string): void {
    const entry = this.#current(key);
    if (entry) {
      entry.count++;
      return;
    }
    setBounded(this.#failures, key, { count: 1, windowStart: this.clock() }, this.options.maxKeys);
  }

  #current(key: string) {
    const entry = this.#failures.get(key);
    if (entry && this.clock() - entry.windowStart >= this.options.windowMs) {
      this.#failures.delete(key);
      return undefined;
    }
    return entry;
  }
}
