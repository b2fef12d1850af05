import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { VERSION } from '../version.js';

/** The sidecar's Prometheus registry (DESIGN.md §8: prefix `oidc_sidecar_`). */
export class Metrics {
  readonly registry = new Registry();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'oidc_sidecar_' });
    new Gauge({ name: 'oidc_sidecar_build_info', help: 'The running version of oidc-sidecar.', labelNames: ['version'], registers: [this.registry] }).set({ version: VERSION }, 1);
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
