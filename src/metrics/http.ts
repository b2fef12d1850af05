import type { Registry } from 'prom-client';
import { CounterFamily, HistogramFamily, type CounterSeries, type HistogramSeries } from './series.js';

/** The own endpoints' route names (DESIGN.md §3): the path after the prefix, `-` written `_`. */
export const ENDPOINT_ROUTES = ['start', 'callback', 'sign_out', 'userinfo', 'auth', 'token', 'revoke', 'jwks', 'backchannel_logout', 'frontchannel_logout'] as const;

/**
 * The `route` label: what kind of request the main port answered. A name, never a path:
 * `proxy` (to the portal, with or without identity, or answered 401/302 for want of it), `public`
 * (a public route), `invalid_path` (refused before any route decision), `not_found` (an unknown own
 * endpoint), and one name per own endpoint.
 */
const HTTP_ROUTES = ['proxy', 'public', 'invalid_path', 'not_found', ...ENDPOINT_ROUTES] as const;
export type HttpRoute = (typeof HTTP_ROUTES)[number];

/** The `method` label: the HTTP method, or `other` for anything else (so a client cannot add series). */
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'other'] as const;
const OTHER_METHOD = HTTP_METHODS.length - 1;

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One route's series: its durations and, by method, its counts by status. */
interface RouteSeries {
  duration: HistogramSeries;
  byMethod: Map<number, CounterSeries>[];
}

/**
 * `http_requests_total{route,method,status}` and `http_request_duration_seconds{route}`. Series are
 * created once (each route's duration up front, each status on first use) and kept: recording a
 * request is two lookups and two additions.
 */
export class HttpMetrics {
  readonly #requests: CounterFamily;
  readonly #routes = new Map<HttpRoute, RouteSeries>();

  constructor(prefix: string, registry: Registry) {
    this.#requests = new CounterFamily(registry, prefix + 'http_requests_total', 'Requests answered on the main port, by route name, HTTP method and status.');
    const duration = new HistogramFamily(
      registry,
      prefix + 'http_request_duration_seconds',
      'Time from a request to the end of its answer on the main port, by route name (portal time included).',
      DURATION_BUCKETS,
    );
    for (const route of HTTP_ROUTES) this.#routes.set(route, { duration: duration.series({ route }), byMethod: HTTP_METHODS.map(() => new Map()) });
  }

  /** Records one answered request; `method` is the request's HTTP method as received. */
  record(route: HttpRoute, method: string | undefined, status: number, seconds: number): void {
    const series = this.#routes.get(route)!;
    series.duration.observe(seconds);
    const methodIndex = methodIndexOf(method);
    const byStatus = series.byMethod[methodIndex]!;
    let counter = byStatus.get(status);
    if (!counter) {
      counter = this.#requests.series({ route, method: HTTP_METHODS[methodIndex]!, status: String(status) });
      byStatus.set(status, counter);
    }
    counter.inc();
  }
}

function methodIndexOf(method: string | undefined): number {
  const index = (HTTP_METHODS as readonly (string | undefined)[]).indexOf(method);
  return index === -1 ? OTHER_METHOD : index;
}
