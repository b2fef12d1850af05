import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { setBounded } from './bounded.js';
import type { Clock } from './store.js';

const INVALIDATION_CHANNEL = '__redis__:invalidate';

export interface TrackedReadCacheOptions {
  maxEntries?: number;
  /** A safety net: a copy older than this is read again even without an invalidation. */
  maxAgeMs?: number;
  /** Any clock in milliseconds (tests step it); by default a monotonic one. */
  clock?: Clock;
  onError?: (error: unknown) => void;
  /** How often the invalidation path is proven to work: a key of its own read, written, its invalidation awaited. */
  canaryIntervalMs?: number;
  /** How long that invalidation may take before the path counts as broken. */
  canaryTimeoutMs?: number;
}

const CANARY_INTERVAL_MS = 10_000;
const CANARY_TIMEOUT_MS = 3_000;

interface Entry {
  value: Buffer;
  readAt: number;
}

/**
 * A local copy of values read from Redis, kept coherent by Redis' client-side caching protocol:
 * the data connection runs `CLIENT TRACKING ON REDIRECT <id>`, so Redis tells a second connection,
 * subscribed to `__redis__:invalidate`, whenever a key this replica read is changed, deleted,
 * expired or evicted — by any replica or tool — and the copy is dropped at once.
 *
 * Fail-safe rules: nothing is cached unless tracking is confirmed on the current connections; when
 * either connection closes, every copy is dropped; a value whose key was invalidated while its read
 * was in flight is returned but not kept. A connection can also die without a word (a firewall
 * dropping it, a failover that hands the REDIRECT id to another client): so every 10 s a canary key
 * is read and written, and if its invalidation does not arrive within 3 s every copy is dropped and
 * the subscriber connection made anew.
 */
export class TrackedReadCache {
  readonly #entries = new Map<string, Entry>();
  readonly #readsInFlight = new Map<string, number>();
  readonly #invalidatedInFlight = new Set<string>();
  readonly #subscriber: Redis;
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #clock: Clock;
  readonly #onError: (error: unknown) => void;
  /** Changes whenever a connection closes, so reads that straddle it are not kept. */
  #epoch = 0;
  #tracking = false;
  #closed = false;
  /** The subscriber connection's id while it is subscribed to the invalidations. */
  #subscriberId: number | undefined;
  /** This replica's canary key (without the prefix), and what its invalidation is awaited by. */
  readonly #canaryKey = `tracking-canary:${randomUUID()}`;
  readonly #canaryTimeoutMs: number;
  readonly #canaryTimer: NodeJS.Timeout;
  #canaryArrived: (() => void) | undefined;
  /** Subscriptions failed in a row: each waits twice as long before the next try (up to a minute). */
  #subscribeFailures = 0;
  #subscribing = false;
  /** The CLIENT TRACKING failure last reported: one Redis refuses (an old version, an ACL) is not reported at every canary tick. */
  #trackingFailure: string | undefined;

  constructor(
    private readonly client: Redis,
    private readonly keyPrefix: string,
    options: TrackedReadCacheOptions = {},
  ) {
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#maxAgeMs = options.maxAgeMs ?? 60_000;
    // Monotonic: a wall clock stepped back would keep copies past their maximum age.
    this.#clock = options.clock ?? (() => performance.now());
    this.#onError = options.onError ?? (() => undefined);
    this.#canaryTimeoutMs = options.canaryTimeoutMs ?? CANARY_TIMEOUT_MS;
    this.#canaryTimer = setInterval(() => this.#onCanaryTick(), options.canaryIntervalMs ?? CANARY_INTERVAL_MS).unref();
    this.#subscriber = client.duplicate({ keyPrefix: '', autoResubscribe: false, lazyConnect: true });
    this.#subscriber.on('messageBuffer', (_channel: Buffer, keys: unknown) => this.#invalidate(keys));
    this.#subscriber.on('error', (error: unknown) => this.#onError(error));
    this.#subscriber.on('ready', () => void this.#subscribe());
    this.#subscriber.on('close', () => {
      this.#subscriberId = undefined;
      this.#stopTracking();
    });
    client.on('ready', () => void this.#startTracking());
    client.on('close', () => this.#stopTracking());
    this.#subscriber.connect().catch((error: unknown) => this.#onError(error));
  }

  /** True while copies may be kept (tracking confirmed on both connections). */
  get tracking(): boolean {
    return this.#tracking;
  }

  /** The value of `key`: the local copy when there is one, else `read()` (whose result may be kept). */
  get(key: string, read: () => Promise<Buffer | null>): Promise<Buffer | null> {
    const copy = this.peek(key);
    if (copy) return Promise.resolve(copy);
    return this.#tracking ? this.#readAndKeep(key, read) : read();
  }

  /** The local copy of `key`, if there is a current one. */
  peek(key: string): Buffer | undefined {
    const entry = this.#entries.get(key);
    return entry && this.#clock() - entry.readAt < this.#maxAgeMs ? entry.value : undefined;
  }

  /** Reads, and keeps the value unless the key was invalidated (or a connection closed) meanwhile. */
  async #readAndKeep(key: string, read: () => Promise<Buffer | null>): Promise<Buffer | null> {
    const epoch = this.#epoch;
    this.#readsInFlight.set(key, (this.#readsInFlight.get(key) ?? 0) + 1);
    try {
      const value = await read();
      if (value && epoch === this.#epoch && !this.#invalidatedInFlight.has(key)) {
        setBounded(this.#entries, key, { value, readAt: this.#clock() }, this.#maxEntries);
      }
      return value;
    } finally {
      this.#readFinished(key);
    }
  }

  /** Drops the copy of `key` (this replica is changing it: its own reads must see the change). */
  forget(key: string): void {
    this.#dropCopy(key);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#canaryTimer);
    this.#stopTracking();
    this.#subscriber.disconnect();
  }

  #dropCopy(key: string): void {
    this.#entries.delete(key);
    if (this.#readsInFlight.has(key)) this.#invalidatedInFlight.add(key);
  }

  #readFinished(key: string): void {
    const left = this.#readsInFlight.get(key)! - 1;
    if (left > 0) {
      this.#readsInFlight.set(key, left);
      return;
    }
    this.#readsInFlight.delete(key);
    this.#invalidatedInFlight.delete(key);
  }

  #invalidate(keys: unknown): void {
    // A null payload means the whole database was flushed.
    if (!Array.isArray(keys)) {
      this.#canaryArrived?.();
      this.#entries.clear();
      for (const key of this.#readsInFlight.keys()) this.#invalidatedInFlight.add(key);
      return;
    }
    for (const key of keys as Buffer[]) {
      // Redis names keys with their prefix; the copies are kept without it.
      const fullKey = key.toString();
      if (fullKey === this.keyPrefix + this.#canaryKey) this.#canaryArrived?.();
      if (fullKey.startsWith(this.keyPrefix)) this.#dropCopy(fullKey.slice(this.keyPrefix.length));
    }
  }

  /** Every canary interval: proves the invalidation path, or starts tracking again if it is off while both connections are up. */
  #onCanaryTick(): void {
    if (this.#closed || this.#canaryArrived) return;
    if (this.#tracking) void this.#checkInvalidations();
    else if (this.#subscriberId !== undefined && this.client.status === 'ready') void this.#startTracking();
  }

  /** Reads the canary key (so it is tracked), writes it, and awaits its invalidation. */
  async #checkInvalidations(): Promise<void> {
    const epoch = this.#epoch;
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<boolean>((resolve) => (this.#canaryArrived = () => resolve(true)));
    try {
      await this.client.get(this.#canaryKey);
      await this.client.set(this.#canaryKey, '1', 'PX', 60_000);
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, this.#canaryTimeoutMs, false).unref()));
      if (!(await Promise.race([arrived, timedOut]))) this.#distrust(epoch, `Redis reported no change of a tracked key within ${this.#canaryTimeoutMs} ms`);
    } catch (error) {
      this.#distrust(epoch, error instanceof Error ? error.message : String(error));
    } finally {
      clearTimeout(timer);
      this.#canaryArrived = undefined;
    }
  }

  /** The invalidation path failed its check: no copy can be trusted, and the subscriber is made anew. */
  #distrust(epoch: number, why: string): void {
    if (epoch !== this.#epoch || this.#closed) return;
    this.#onError(new Error(`the check of the session copies' invalidations failed: ${why}; copies dropped, invalidation connection made anew`));
    this.#stopTracking();
    this.#subscriber.disconnect(true);
  }

  #stopTracking(): void {
    this.#epoch++;
    this.#tracking = false;
    this.#entries.clear();
  }

  /** Subscribes a new subscriber connection (its id first: a subscribed connection takes no other command). */
  async #subscribe(): Promise<void> {
    this.#subscribing = true;
    try {
      const id = (await this.#subscriber.client('ID')) as number;
      await this.#subscriber.subscribe(INVALIDATION_CHANNEL);
      this.#subscriberId = id;
      this.#subscribeFailures = 0;
      await this.#startTracking();
    } catch (error) {
      this.#onError(error);
      // Unsubscribed, the connection would never carry an invalidation: made anew, ever less often.
      const delayMs = Math.min(100 * 2 ** ++this.#subscribeFailures, 60_000);
      setTimeout(() => {
        if (!this.#closed && !this.#subscribing && this.#subscriberId === undefined) this.#subscriber.disconnect(true);
      }, delayMs).unref();
    } finally {
      this.#subscribing = false;
    }
  }

  /** (Re)starts tracking on the data connection; runs again after every reconnection of either. */
  async #startTracking(): Promise<void> {
    this.#stopTracking();
    const epoch = this.#epoch;
    const subscriberId = this.#subscriberId;
    if (this.#closed || subscriberId === undefined || this.client.status !== 'ready') return;
    try {
      await this.client.client('TRACKING', 'ON', 'REDIRECT', String(subscriberId));
      if (epoch === this.#epoch) this.#tracking = true;
      this.#trackingFailure = undefined;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message === this.#trackingFailure) return;
      this.#trackingFailure = message;
      this.#onError(new Error(`CLIENT TRACKING failed (${message}): no local session copies, every request reads Redis; tried again every canary interval, reported again only if the answer changes`, { cause: error }));
    }
  }
}
