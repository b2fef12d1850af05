/**
 * The storage behind sessions, login transactions, indexes and locks: a small key-value store with
 * time-to-live, one interface with two implementations (memory, redis) that pass one shared test
 * suite. Keys handed to a store never contain raw identifiers (callers hash them first); values are
 * opaque bytes (callers encrypt them first).
 */
export interface KeyValueStore {
  /** Stores `value` under `key` for `ttlMs` milliseconds, replacing any previous value. */
  set(key: string, value: Buffer, ttlMs: number): Promise<void>;
  /**
   * Replaces the value of an existing `key` and gives it `ttlMs` to live. Returns false, storing
   * nothing, when the key is absent: an update never brings back a record deleted meanwhile.
   */
  replace(key: string, value: Buffer, ttlMs: number): Promise<boolean>;
  /** The value under `key`, or null when absent or expired; callers may keep it but must not modify it. */
  get(key: string): Promise<Buffer | null>;
  /**
   * Like `get`, but may answer from a local copy that the store keeps coherent: dropped as soon as
   * the key changes, is deleted or expires anywhere (the hot path's read: one per proxied request).
   */
  getCached(key: string): Promise<Buffer | null>;
  /**
   * What `getCached` would answer, when the store can tell without any I/O (the memory store, or the
   * Redis store's local copy); undefined when only `getCached` can tell. Lets the hot path skip a wait.
   */
  peek(key: string): Buffer | null | undefined;
  /** Reads and deletes `key` in one atomic step: of two concurrent callers, only one gets the value. */
  take(key: string): Promise<Buffer | null>;
  /** Milliseconds `key` has left to live, or null when it is absent or expired. */
  ttl(key: string): Promise<number | null>;
  /** Sets a new time-to-live on an existing key; no effect when the key is absent. */
  expire(key: string, ttlMs: number): Promise<void>;
  /** Deletes keys; absent keys are ignored. */
  delete(...keys: string[]): Promise<void>;
  /** Adds `member` to the set at `key`, and gives the set at least `ttlMs` to live. */
  addToSet(key: string, member: string, ttlMs: number): Promise<void>;
  /** Removes `member` from the set at `key`. */
  removeFromSet(key: string, member: string): Promise<void>;
  /** The members of the set at `key` (empty when absent). */
  setMembers(key: string): Promise<string[]>;
  /**
   * Takes the lock `key` for at most `ttlMs` if nobody holds it. Returns a release function, or
   * null when another holder has it.
   */
  tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null>;
  /** Resolves when the store is reachable; rejects otherwise. */
  ping(): Promise<void>;
  /** Closes connections and timers. */
  close(): Promise<void>;
}

/** Milliseconds since the epoch; injected so expiry is tested without sleeping. */
export type Clock = () => number;
export const systemClock: Clock = () => Date.now();

/** `operation`, or a rejection with `message` once `ms` have passed (the operation itself goes on). */
export function withTimeout<T>(operation: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([operation, timeout]).finally(() => clearTimeout(timer));
}
