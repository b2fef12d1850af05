import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema.js';
import { withTimeout, type KeyValueStore } from './store.js';
import { TrackedReadCache } from './tracked-cache.js';

/** The `redis.*` configuration keys. */
export type RedisConfig = Config['redis'];
/** A standalone/Sentinel client or a Cluster client; the audit stream can share it. */
export type RedisClient = Redis | Cluster;

/** How long any store operation may take before it fails: a request never waits on a dead Redis. */
const OPERATION_TIMEOUT_MS = 2_000;

/** Reconnects forever, quickly: commands meanwhile fail after their time-out instead of queueing. */
const CONNECTION_OPTIONS = {
  connectTimeout: OPERATION_TIMEOUT_MS,
  commandTimeout: OPERATION_TIMEOUT_MS,
  maxRetriesPerRequest: 1,
  // Commands sent before the first connection completes wait for it (within their time-out).
  enableOfflineQueue: true,
  retryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
} satisfies RedisOptions;

/**
 * The ioredis client for `redis.url` (standalone; `rediss:` or `tls: true` for TLS), `redis.sentinel`
 * or `redis.cluster`, with `redis.password` and `redis.keyPrefix` applied. Connection errors go to
 * `onError` (ioredis prints them itself when nobody listens).
 */
export function createRedisClient(config: RedisConfig, onError?: (error: Error) => void): RedisClient {
  const client = buildClient(config);
  if (onError) client.on('error', onError);
  return client;
}

function buildClient(config: RedisConfig): RedisClient {
  const tls = config.tls ? {} : undefined;
  const options: RedisOptions = { ...CONNECTION_OPTIONS, keyPrefix: config.keyPrefix, password: config.password, tls };
  if (config.url) return new Redis(config.url, options);
  if (config.sentinel) {
    return new Redis({
      ...options,
      sentinels: config.sentinel.nodes.map(toNode),
      name: config.sentinel.masterName,
      enableTLSForSentinelMode: config.tls,
      sentinelTLS: tls,
    });
  }
  if (config.cluster) {
    return new Cluster(config.cluster.nodes.map(toNode), {
      keyPrefix: config.keyPrefix,
      enableOfflineQueue: true,
      enableAutoPipelining: true,
      redisOptions: { ...CONNECTION_OPTIONS, password: config.password, tls },
    });
  }
  throw new Error('redis: set one of redis.url, redis.sentinel, redis.cluster');
}

function toNode(hostPort: string): ClusterNode & { host: string; port: number } {
  const separator = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, separator), port: Number(hostPort.slice(separator + 1)) };
}

/** Deletes the lock only while it still holds this holder's token. */
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
/** SADD, then lengthen the set's TTL to ARGV[2] ms when shorter (PTTL is -1 for a new set). */
const ADD_TO_SET = `redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`;

interface ScriptCommands {
  releaseLock(key: string, token: string): Promise<number>;
  addToSetAtLeast(key: string, member: string, ttlMs: number): Promise<number>;
}

export interface RedisStoreOptions {
  /** Errors of the local copy's invalidation connection. */
  onError?: (error: unknown) => void;
  /** Keep local copies of session records (standalone and Sentinel; default true). A command-line tool reads each once. */
  localCopies?: boolean;
}

/**
 * The store for several replicas, over Redis (standalone, Sentinel or Cluster). Every operation
 * touches one key, so Cluster needs no hash tags; every operation fails after 2 s at most.
 * On standalone and Sentinel, `getCached` answers from a local copy kept coherent by Redis'
 * client-side caching (see TrackedReadCache); this replica's own writes drop its copy at once.
 */
export class RedisStore implements KeyValueStore {
  readonly #client: RedisClient & ScriptCommands;
  readonly #cache: TrackedReadCache | undefined;
  /** ioredis' commandTimeout bounds standalone and Sentinel commands; Cluster needs our own. */
  readonly #bounded: <T>(operation: Promise<T>) => Promise<T>;

  constructor(client: RedisClient, options: RedisStoreOptions = {}) {
    client.defineCommand('releaseLock', { numberOfKeys: 1, lua: RELEASE_LOCK });
    client.defineCommand('addToSetAtLeast', { numberOfKeys: 1, lua: ADD_TO_SET });
    this.#client = client as RedisClient & ScriptCommands;
    const standalone = client instanceof Redis;
    this.#cache = standalone && options.localCopies !== false ? new TrackedReadCache(client, client.options.keyPrefix ?? '', { onError: options.onError }) : undefined;
    this.#bounded = standalone ? (operation) => operation : redisTimeout;
  }

  async set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    this.#cache?.forget(key);
    await this.#bounded(this.#client.set(key, value, 'PX', milliseconds(ttlMs)));
  }

  async replace(key: string, value: Buffer, ttlMs: number): Promise<boolean> {
    this.#cache?.forget(key);
    return (await this.#bounded(this.#client.set(key, value, 'PX', milliseconds(ttlMs), 'XX'))) === 'OK';
  }

  /**
   * An owned copy: ioredis hands out views of its socket buffers, which must not be kept. A local
   * copy that differs from what Redis just answered is stale (its invalidation late, or lost with a
   * connection that died silently): it goes, so the next `getCached` reads Redis.
   */
  async get(key: string): Promise<Buffer | null> {
    const value = await this.#bounded(this.#client.getBuffer(key));
    const owned = value && Buffer.from(value);
    const copy = this.#cache?.peek(key);
    if (copy !== undefined && (owned === null || !copy.equals(owned))) this.#cache!.forget(key);
    return owned;
  }

  getCached(key: string): Promise<Buffer | null> {
    return this.#cache ? this.#cache.get(key, () => this.get(key)) : this.get(key);
  }

  peek(key: string): Buffer | undefined {
    return this.#cache?.peek(key);
  }

  take(key: string): Promise<Buffer | null> {
    this.#cache?.forget(key);
    return this.#bounded(this.#client.getdelBuffer(key));
  }

  /** Every key the sidecar writes has a time-to-live; one without (-1) would count as absent. */
  async ttl(key: string): Promise<number | null> {
    const remaining = await this.#bounded(this.#client.pttl(key));
    return remaining >= 0 ? remaining : null;
  }

  async expire(key: string, ttlMs: number): Promise<void> {
    await this.#bounded(this.#client.pexpire(key, milliseconds(ttlMs)));
  }

  async delete(...keys: string[]): Promise<void> {
    for (const key of keys) this.#cache?.forget(key);
    // One DEL per key: on Cluster the keys live in different slots (sent together all the same).
    await this.#bounded(Promise.all(keys.map((key) => this.#client.del(key))));
  }

  async addToSet(key: string, member: string, ttlMs: number): Promise<void> {
    await this.#bounded(this.#client.addToSetAtLeast(key, member, milliseconds(ttlMs)));
  }

  async removeFromSet(key: string, member: string): Promise<void> {
    await this.#bounded(this.#client.srem(key, member));
  }

  setMembers(key: string): Promise<string[]> {
    return this.#bounded(this.#client.smembers(key));
  }

  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const token = randomBytes(16).toString('base64url');
    const taken = await this.#bounded(this.#client.set(key, token, 'PX', milliseconds(ttlMs), 'NX'));
    if (taken !== 'OK') return null;
    return async () => {
      await this.#bounded(this.#client.releaseLock(key, token));
    };
  }

  async ping(): Promise<void> {
    await this.#bounded(this.#client.ping());
  }

  async close(): Promise<void> {
    this.#cache?.close();
    try {
      await redisTimeout(this.#client.quit());
    } catch {
      this.#client.disconnect();
    }
  }
}

/** Redis wants a positive whole number of milliseconds. */
function milliseconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs));
}

/**
 * ioredis times commands out itself, except those a Cluster queues while it has no node: this
 * bounds every operation whatever the topology.
 */
function redisTimeout<T>(operation: Promise<T>): Promise<T> {
  return withTimeout(operation, OPERATION_TIMEOUT_MS, `Redis did not answer within ${OPERATION_TIMEOUT_MS} ms`);
}
