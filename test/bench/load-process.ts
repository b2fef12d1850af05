import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { answerFromChild } from './children.js';

/**
 * The load generator, in a process of its own: one run per input, all started at the same moment
 * (a paired run's two loads begin together, so neither proxy has the CPU to itself for a while),
 * each summarized. `wrk` (C, a few µs of CPU per request) when it is installed, so the load
 * generator is not what limits the proxies; else autocannon (Node). BENCH_LOADER=autocannon or wrk
 * forces one.
 */

export interface LoadInput {
  url: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
  loader: Loader;
}

export type Loader = 'wrk' | 'autocannon';

export interface LoadResult {
  requestsPerSecond: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  /** Completed requests in the measured run. */
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}

answerFromChild((inputs: LoadInput[]): Promise<LoadResult[]> => Promise.all(inputs.map((input) => (input.loader === 'wrk' ? runWrk(input) : runAutocannon(input)))));

async function runAutocannon(input: LoadInput): Promise<LoadResult> {
  const result = await autocannon({ url: input.url, headers: input.headers, connections: input.connections, duration: input.seconds });
  return {
    requestsPerSecond: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  };
}

async function runWrk(input: LoadInput): Promise<LoadResult> {
  const headers = Object.entries(input.headers).flatMap(([name, value]) => ['--header', `${name}: ${value}`]);
  const args = ['--threads', '1', '--connections', String(input.connections), '--duration', `${input.seconds}s`, '--latency', ...headers, input.url];
  const { stdout } = await promisify(execFile)('wrk', args, { timeout: (input.seconds + 30) * 1000 });
  return parseWrkOutput(stdout);
}

/** The figures of wrk's report (its `--latency` distribution gives the percentiles). */
export function parseWrkOutput(output: string): LoadResult {
  const number = (pattern: RegExp) => Number(pattern.exec(output)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  return {
    requestsPerSecond: number(/Requests\/sec:\s+([\d.]+)/),
    p50: latencyMs(output, '50%'),
    p99: latencyMs(output, '99%'),
    requests: number(/(\d+) requests in/),
    errors: errors ? Number(errors[1]) + Number(errors[2]) + Number(errors[3]) : 0,
    timeouts: errors ? Number(errors[4]) : 0,
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/),
  };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function latencyMs(output: string, percentile: string): number {
  const match = new RegExp(`^\\s+${percentile}\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(output);
  return match ? Number((Number(match[1]) * UNIT_MS[match[2]!]!).toFixed(2)) : NaN;
}
