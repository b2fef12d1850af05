import http from 'node:http';
import type { OidcProvider } from '../oidc/provider.js';
import { withTimeout, type KeyValueStore } from '../session/store.js';

const READINESS_TIMEOUT_MS = 2000;

/**
 * The metrics port: `/healthz` (the process is alive), `/readyz` (session store reachable and provider
 * metadata loaded, and not shutting down; else 503) and `/metrics`.
 */
export function createMetricsServer(
  store: KeyValueStore,
  provider: OidcProvider,
  metrics: () => Promise<{ contentType: string; body: string }>,
  shuttingDown: () => boolean,
): http.Server {
  return http.createServer((req, res) => {
    const path = req.url?.split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      if (shuttingDown()) return send(res, 503, 'application/json', JSON.stringify({ shuttingDown: 'yes' }));
      return void readiness(store, provider).then(({ ready, checks }) => send(res, ready ? 200 : 503, 'application/json', JSON.stringify(checks)));
    }
    if (path === '/metrics') {
      return void metrics().then(
        ({ contentType, body }) => send(res, 200, contentType, body),
        () => send(res, 500, 'text/plain', 'metrics unavailable\n'),
      );
    }
    send(res, 404, 'text/plain', 'not found\n');
  });
}

async function readiness(store: KeyValueStore, provider: OidcProvider): Promise<{ ready: boolean; checks: Record<string, string> }> {
  const storeReachable = await withTimeout(store.ping(), READINESS_TIMEOUT_MS, 'the session store did not answer').then(
    () => true,
    () => false,
  );
  const providerLoaded = provider.isReady();
  return {
    ready: storeReachable && providerLoaded,
    checks: { sessionStore: storeReachable ? 'ok' : 'unreachable', provider: providerLoaded ? 'ok' : 'metadata not loaded' },
  };
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
