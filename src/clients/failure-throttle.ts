import { isIP } from 'node:net';
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

const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * The part of a client's address it cannot change at will, for throttling: an IPv4 address as it is,
 * an IPv6 address's /64 — a host is routinely given a whole /64 and can pick a new address in it for
 * every attempt. Anything else (not an address) as it is.
 */
export function throttleSource(address: string): string {
  if (isIP(address) !== 6) return address;
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped) return mapped[1]!;
  const [head = '', tail] = address.split('%')[0]!.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  // An IPv4 tail (`64:ff9b::192.0.2.1`) stands for two groups.
  const written = [...headGroups, ...tailGroups].reduce((count, group) => count + (group.includes('.') ? 2 : 1), 0);
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - written).fill('0'), ...tailGroups];
  return `${groups.slice(0, 4).map((group) => parseInt(group, 16).toString(16)).join(':')}::/64`;
}
