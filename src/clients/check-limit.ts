/**
 * At most `maxRunning` checks at once, at most `maxWaiting` more queued in arrival order; past that
 * a check is not run at all. For client secret checks: scrypt runs on libuv's small thread pool,
 * which DNS lookups and file reads share, so a flood of attempts from many addresses must not take
 * all of it (the failure throttle counts per address).
 */
export class CheckLimit {
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
  ) {}

  /** The check's result, or `busy` when too many are running and waiting already. */
  async run<T>(check: () => Promise<T>): Promise<T | 'busy'> {
    if (this.#running < this.maxRunning) this.#running++;
    else if (this.#waiting.length < this.maxWaiting) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else return 'busy';
    try {
      return await check();
    } finally {
      // The slot goes straight to the next in line, if any.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
