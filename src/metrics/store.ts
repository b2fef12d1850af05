import type { Counter } from 'prom-client';
import type { KeyValueStore } from '../session/store.js';
import type { HistogramFamily, HistogramSeries } from './series.js';

/** The `operation` label of the session store metrics. */
const STORE_OPERATIONS = [
  'set',
  'replace',
  'get',
  'get_cached',
  'take',
  'ttl',
  'expire',
  'delete',
  'add_to_set',
  'remove_from_set',
  'set_members',
  'lock',
  'unlock',
  'ping',
  'audit_append',
] as const;
type StoreOperation = (typeof STORE_OPERATIONS)[number];

type ErrorChild = ReturnType<Counter<'operation'>['labels']>;

/** Times operations and counts their failures, each operation's series created once. */
export class StoreOperationTimer {
  readonly #duration = new Map<StoreOperation, HistogramSeries>();
  readonly #errors = new Map<StoreOperation, ErrorChild>();

  constructor(duration: HistogramFamily, errors: Counter<'operation'>) {
    for (const operation of STORE_OPERATIONS) {
      errors.inc({ operation }, 0);
      this.#duration.set(operation, duration.series({ operation }));
      this.#errors.set(operation, errors.labels(operation));
    }
  }

  /** Runs `operation`'s promise to its end, recording its duration and, when it rejects, the error. */
  async time<T>(operation: StoreOperation, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await run();
    } catch (error) {
      this.#errors.get(operation)!.inc();
      throw error;
    } finally {
      this.#duration.get(operation)!.observe((performance.now() - started) / 1000);
    }
  }
}

/**
 * A KeyValueStore decorator: the same store, every operation timed
 * (`session_store_operation_duration_seconds{operation}`) and its failures counted
 * (`session_store_errors_total{operation}`), whatever the store behind it.
 */
export class InstrumentedStore implements KeyValueStore {
  constructor(
    private readonly inner: KeyValueStore,
    private readonly timer: StoreOperationTimer,
  ) {}

  set(key: string, value: Buffer, ttlMs: number): Promise<void> {
    return this.timer.time('set', () => this.inner.set(key, value, ttlMs));
  }

  replace(key: string, value: Buffer, ttlMs: number): Promise<boolean> {
    return this.timer.time('replace', () => this.inner.replace(key, value, ttlMs));
  }

  get(key: string): Promise<Buffer | null> {
    return this.timer.time('get', () => this.inner.get(key));
  }

  getCached(key: string): Promise<Buffer | null> {
    return this.timer.time('get_cached', () => this.inner.getCached(key));
  }

  /** Not timed: no I/O, so not a store operation. */
  peek(key: string): Buffer | null | undefined {
    return this.inner.peek(key);
  }

  take(key: string): Promise<Buffer | null> {
    return this.timer.time('take', () => this.inner.take(key));
  }

  ttl(key: string): Promise<number | null> {
    return this.timer.time('ttl', () => this.inner.ttl(key));
  }

  expire(key: string, ttlMs: number): Promise<void> {
    return this.timer.time('expire', () => this.inner.expire(key, ttlMs));
  }

  delete(...keys: string[]): Promise<void> {
    return this.timer.time('delete', () => this.inner.delete(...keys));
  }

  addToSet(key: string, member: string, ttlMs: number): Promise<void> {
    return this.timer.time('add_to_set', () => this.inner.addToSet(key, member, ttlMs));
  }

  removeFromSet(key: string, member: string): Promise<void> {
    return this.timer.time('remove_from_set', () => this.inner.removeFromSet(key, member));
  }

  setMembers(key: string): Promise<string[]> {
    return this.timer.time('set_members', () => this.inner.setMembers(key));
  }

  async tryLock(key: string, ttlMs: number): Promise<(() => Promise<void>) | null> {
    const release = await this.timer.time('lock', () => this.inner.tryLock(key, ttlMs));
    return release && (() => this.timer.time('unlock', release));
  }

  ping(): Promise<void> {
    return this.timer.time('ping', () => this.inner.ping());
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
