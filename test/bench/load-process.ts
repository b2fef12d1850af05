import autocannon from 'autocannon';
import { answerFromChild } from './children.js';

/** The load generator (autocannon), in a process of its own: one run, summarized. */

export interface LoadInput {
  url: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
}

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

answerFromChild(async (input: LoadInput): Promise<LoadResult> => {
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
});
