import type { Metric, Registry } from 'prom-client';

/**
 * Metric families for the hot path. prom-client hashes and validates the labels on every `inc` and
 * `observe` (about a microsecond each); here the caller creates each labelled series once and keeps
 * it, recording is an addition to a plain number, and the samples are built only when scraped.
 */

type Labels = Readonly<Record<string, string>>;

/** One counter series. */
export class CounterSeries {
  value = 0;

  constructor(readonly labels: Labels) {}

  inc(): void {
    this.value++;
  }
}

/** One histogram series: how many observations fell in each bucket (not cumulative), their sum and count. */
export class HistogramSeries {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let bucket = 0;
    while (bucket < this.bounds.length && value > this.bounds[bucket]!) bucket++;
    this.counts[bucket]!++;
    this.sum += value;
    this.count++;
  }
}

interface Sample {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/** A family of series, registered in a prom-client registry, which renders it like its own metrics. */
abstract class Family<S extends { labels: Labels }> {
  readonly aggregator = 'sum';
  readonly #series: S[] = [];

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
  ) {
    // The registry reads any object with this shape (name, help, type, aggregator, get); its types only name prom-client's classes.
    registry.registerMetric(this as unknown as Metric);
  }

  /** A new series with these labels; keep it and record on it. */
  series(labels: Labels = {}): S {
    const series = this.create(labels);
    this.#series.push(series);
    return series;
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.#series.flatMap((series) => this.samples(series)) };
  }

  protected abstract create(labels: Labels): S;
  protected abstract samples(series: S): Sample[];
}

export class CounterFamily extends Family<CounterSeries> {
  constructor(registry: Registry, name: string, help: string) {
    super(registry, name, help, 'counter');
  }

  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }

  protected samples(series: CounterSeries): Sample[] {
    return [{ labels: { ...series.labels }, value: series.value }];
  }
}

export class HistogramFamily extends Family<HistogramSeries> {
  constructor(
    registry: Registry,
    name: string,
    help: string,
    private readonly bounds: readonly number[],
  ) {
    super(registry, name, help, 'histogram');
  }

  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }

  protected samples({ labels, counts, sum, count }: HistogramSeries): Sample[] {
    let cumulative = 0;
    const buckets = counts.map((inBucket, i) => {
      cumulative += inBucket;
      return { metricName: `${this.name}_bucket`, labels: { ...labels, le: i < this.bounds.length ? this.bounds[i]! : '+Inf' }, value: cumulative };
    });
    return [...buckets, { metricName: `${this.name}_sum`, labels: { ...labels }, value: sum }, { metricName: `${this.name}_count`, labels: { ...labels }, value: count }];
  }
}
