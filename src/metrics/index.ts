import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { VERSION } from '../version.js';
import { HttpMetrics } from './http.js';
import type { IdpEndpoint } from './idp.js';
import { HistogramFamily, type HistogramSeries } from './series.js';
import { StoreOperationTimer } from './store.js';

export { ENDPOINT_ROUTES, type HttpRoute, type HttpMetrics } from './http.js';
export { idpEndpointOf, timedFetch, type IdpEndpoint } from './idp.js';
export { InstrumentedStore, type StoreOperationTimer } from './store.js';

const PREFIX = 'oidc_sidecar_';

/** How a session ended (`sessions_ended_total{reason}`). Idle time-outs are not seen: the store drops the record. */
const SESSION_END_REASONS = ['logout', 'backchannel', 'frontchannel', 'expired', 'refresh_failed'] as const;
export type SessionEndReason = (typeof SESSION_END_REASONS)[number];

/** Why a request to the portal failed (`upstream_errors_total{reason}`). */
const UPSTREAM_ERROR_REASONS = ['refused', 'reset', 'timeout'] as const;
export type UpstreamErrorReason = (typeof UPSTREAM_ERROR_REASONS)[number];

const REFRESH_RESULTS = ['success', 'failure'] as const;

const IDP_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const UPSTREAM_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * The sidecar's Prometheus registry and its metric set (DESIGN.md §8, contract: names and labels).
 * Labels are bounded: route names, HTTP methods, event names and stable result codes — never a
 * path, a user or a client id. Every sidecar (and every test replica) has its own registry.
 */
export class Metrics {
  readonly registry = new Registry();
  /** `http_requests_total` and `http_request_duration_seconds`, recorded once per request. */
  readonly http: HttpMetrics;
  readonly #upstreamDuration: HistogramSeries;
  readonly #upstreamErrors: Counter<'reason'>;
  readonly #authEvents: Counter<'event' | 'method' | 'result'>;
  readonly #sessionsCreated: Counter;
  readonly #sessionsEnded: Counter<'reason'>;
  readonly #tokenRefreshes: Counter<'result'>;
  readonly #idpDuration: Histogram<'endpoint'>;
  /**
   * `session_store_operation_duration_seconds{operation}` and `session_store_errors_total{operation}`:
   * for the store decorator and the audit stream.
   */
  readonly store: StoreOperationTimer;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    const buildInfo = new Gauge({ name: PREFIX + 'build_info', help: 'The running version of oidc-sidecar (always 1).', labelNames: ['version'], registers });
    buildInfo.set({ version: VERSION }, 1);
    this.http = new HttpMetrics(PREFIX, this.registry);
    this.#upstreamDuration = new HistogramFamily(
      this.registry,
      PREFIX + 'upstream_request_duration_seconds',
      'Time the portal took to answer with its response headers.',
      UPSTREAM_BUCKETS,
    ).series();
    this.#upstreamErrors = new Counter({ name: PREFIX + 'upstream_errors_total', help: 'Portal requests that failed, by reason (refused, reset, timeout).', labelNames: ['reason'], registers });
    this.#authEvents = new Counter({
      name: PREFIX + 'auth_events_total',
      help: 'Authentication events (the audit log), by event, method and result (success or a failure code).',
      labelNames: ['event', 'method', 'result'],
      registers,
    });
    this.#sessionsCreated = new Counter({ name: PREFIX + 'sessions_created_total', help: 'Browser sessions created by a sign-in.', registers });
    this.#sessionsEnded = new Counter({ name: PREFIX + 'sessions_ended_total', help: 'Browser sessions ended, by reason.', labelNames: ['reason'], registers });
    this.#tokenRefreshes = new Counter({ name: PREFIX + 'token_refresh_total', help: 'Token refreshes of browser sessions, by result (success, failure).', labelNames: ['result'], registers });
    this.#idpDuration = new Histogram({
      name: PREFIX + 'idp_request_duration_seconds',
      help: 'Requests to the identity provider, by endpoint (discovery, token, jwks, …).',
      labelNames: ['endpoint'],
      buckets: IDP_BUCKETS,
      registers,
    });
    this.store = new StoreOperationTimer(
      new HistogramFamily(this.registry, PREFIX + 'session_store_operation_duration_seconds', 'Session store operations (memory or Redis), by operation.', STORE_BUCKETS),
      new Counter({ name: PREFIX + 'session_store_errors_total', help: 'Session store operations that failed, by operation.', labelNames: ['operation'], registers }),
    );
    // Known label values start at 0, so that rate() and alerts see the first increase.
    for (const reason of UPSTREAM_ERROR_REASONS) this.#upstreamErrors.inc({ reason }, 0);
    for (const reason of SESSION_END_REASONS) this.#sessionsEnded.inc({ reason }, 0);
    for (const result of REFRESH_RESULTS) this.#tokenRefreshes.inc({ result }, 0);
  }

  /**
   * Counts one authentication event. The audit log calls it for every event it records (enabled or
   * not): record events through `services.audit`, and do not call this beside it.
   */
  authEvent(event: string, method: string, result: string): void {
    this.#authEvents.inc({ event, method, result });
  }

  sessionCreated(): void {
    this.#sessionsCreated.inc();
  }

  sessionsEnded(reason: SessionEndReason, count = 1): void {
    if (count > 0) this.#sessionsEnded.inc({ reason }, count);
  }

  tokenRefresh(result: (typeof REFRESH_RESULTS)[number]): void {
    this.#tokenRefreshes.inc({ result });
  }

  upstreamResponse(seconds: number): void {
    this.#upstreamDuration.observe(seconds);
  }

  upstreamError(reason: UpstreamErrorReason): void {
    this.#upstreamErrors.inc({ reason });
  }

  idpRequest(endpoint: IdpEndpoint, seconds: number): void {
    this.#idpDuration.observe({ endpoint }, seconds);
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
