/**
 * The part of autocannon 9's programmatic API the benchmark uses. The package ships no type
 * declarations and @types/autocannon is not a dependency; extend this as the benchmark needs more.
 */
declare module 'autocannon' {
  export interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    headers?: Record<string, string>;
    method?: string;
    pipelining?: number;
    /** Seconds before a request counts as timed out. */
    timeout?: number;
  }

  /** A histogram summary; latency in milliseconds, requests and throughput per second. */
  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total: number;
    p50: number;
    p90: number;
    p97_5: number;
    p99: number;
    p99_9: number;
  }

  export interface Result {
    url: string;
    /** Seconds. */
    duration: number;
    requests: Histogram & { sent: number };
    latency: Histogram;
    throughput: Histogram;
    errors: number;
    timeouts: number;
    non2xx: number;
    mismatches: number;
  }

  export default function autocannon(options: Options): Promise<Result>;
}
