import { setBounded } from './bounded.js';
import { systemClock, type Clock, type KeyValueStore } from './store.js';

export interface MemoryStoreOptions {
  clock?: Clock;
  /** Default 100 000. */
  maxEntries?: number;
  /** How often expired entries are swept out (default 60 s). */
  sweepIntervalMs?: number;
}

type Entry = { expiresAt: number } & ({ value: Buffer } | { members: Set<string> });

/**
 * The store of a single replica: everything in process memory, lost on restart. Bounded: expired
 * entries are invisible at once and swept periodically, and past `maxEntries` the oldest written
 * entry is evicted.
 */
export class MemoryStore implements KeyValueStore {
  readonly #entries = new Map<string, Entry>();
  readonly #clock: Clock;
  readonly #maxEntries: number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepIntervalMs ?? 60_000).unref();
  }

  /** Entries held, expired ones included until swept. */
  get size(): number {
    return this.#entries.size;
  }

  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    this.#put(key, { value: Buffer.from(value), expiresAt: this.#clock() + ttlMs });
  }

  async replace(key: string, value: Buffer, ttlMs: number): Promise<boolean> {
    if (!this.#live(key)) return false;
    this.#put(key, { value: Buffer.from(value), expiresAt: this.#clock() + ttlMs });
    return true;
  }

  /** The memory store is local already: the same as `get`. */
  getCached(key: string): Promise<Buffer | null> {
    return this.get(key);
  }

  peek(key: string): Buffer | null {
    return this.#value(key);
  }

  async get(key: string): Promise<Buffer | null> {
    return this.#value(key);
  }

  async take(key: string): Promise<Buffer | null> {
    // Read and delete without yielding in between: that is what makes it atomic.
    const value = this.#value(key);
    this.#entries.delete(key);
    return value;
  }

  async ttl(key: string): Promise<number | null> {
    const entry = this.#live(key);
    return entry ? entry.expiresAt - this.#clock() : null;
  }

  async expire(key: string, ttlMs: number): Promise<void> {
    const entry = this.#live(key);
    if (entry) entry.expiresAt = this.#clock() + ttlMs;
  }

  async delete(...keys: string[]): Promise<void> {
    for (const key of keys) this.#entries.delete(key);
  }

  async addToSet(key: string, member: string, ttlMs: number): Promise<void> {
    const expiresAt = this.#clock() + ttlMs;
    const entry = this.#live(key);
    if (entry && 'members' in entry) {
      entry.members.add(member);
      entry.expiresAt = Math.max(entry.expiresAt, expiresAt);
    } else {
      this.#put(key, { members: new Set([member]), expiresAt });
    }
  }

  async removeFromSet(key: string, member: string): Promise<void> {
    const entry = this.#live(key);
    if (!entry || !('members' in entry)) return;
    entry.members.delete(member);
    if (entry.members.size === 0) this.#entries.delete(key);
  }

  async setMembers(key: string): Promise<string[]> {
    const entry = this.#live(key);
    return entry && 'members' in entry ? [...entry.members] : [];
  }

  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    if (this.#live(key)) return null;
    const lock: Entry = { value: Buffer.alloc(0), expiresAt: this.#clock() + ttlMs };
    this.#put(key, lock);
    return async () => {
      // Only this holder's lock: after its TTL it may belong to someone else.
      if (this.#entries.get(key) === lock) this.#entries.delete(key);
    };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#entries.clear();
  }

  #put(key: string, entry: Entry): void {
    setBounded(this.#entries, key, entry, this.#maxEntries);
  }

  #value(key: string): Buffer | null {
    const entry = this.#live(key);
    return entry && 'value' in entry ? entry.value : null;
  }

  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt <= this.#clock()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #sweep(): void {
    const now = this.#clock();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt <= now) this.#entries.delete(key);
    }
  }
}
