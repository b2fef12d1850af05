import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { idpEndpointOf, InstrumentedStore, Metrics, timedFetch, type IdpEndpoint } from '../../src/metrics/index.js';
import { ownEndpointRoute } from '../../src/server/endpoints.js';
import { MemoryStore } from '../../src/session/memory-store.js';
import type { KeyValueStore } from '../../src/session/store.js';
import { VERSION } from '../../src/version.js';
import { parseExposition } from '../support/metrics.js';
import { runStoreSuite } from '../session/store-suite.js';

/** DESIGN.md §8 (contract): every family, its type and its labels. */
const CONTRACT: Record<string, { type: string; labels: string[] }> = {
  oidc_sidecar_http_requests_total: { type: 'counter', labels: ['method', 'route', 'status'] },
  oidc_sidecar_http_request_duration_seconds: { type: 'histogram', labels: ['route'] },
  oidc_sidecar_upstream_request_duration_seconds: { type: 'histogram', labels: [] },
  oidc_sidecar_upstream_errors_total: { type: 'counter', labels: ['reason'] },
  oidc_sidecar_auth_events_total: { type: 'counter', labels: ['event', 'method', 'result'] },
  oidc_sidecar_sessions_created_total: { type: 'counter', labels: [] },
  oidc_sidecar_sessions_ended_total: { type: 'counter', labels: ['reason'] },
  oidc_sidecar_session_store_operation_duration_seconds: { type: 'histogram', labels: ['operation'] },
  oidc_sidecar_session_store_errors_total: { type: 'counter', labels: ['operation'] },
  oidc_sidecar_token_refresh_total: { type: 'counter', labels: ['result'] },
  oidc_sidecar_idp_request_duration_seconds: { type: 'histogram', labels: ['endpoint'] },
  oidc_sidecar_build_info: { type: 'gauge', labels: ['version'] },
};

/** One recording of each kind, so every family has samples. */
async function recordOneOfEach(metrics: Metrics): Promise<void> {
  metrics.http.record('proxy', 'GET', 200, 0.004);
  metrics.upstreamResponse(0.002);
  metrics.upstreamError('refused');
  metrics.authEvent('login', 'session', 'success');
  metrics.sessionCreated();
  metrics.sessionsEnded('logout');
  metrics.tokenRefresh('success');
  metrics.idpRequest('token', 0.05);
  await new InstrumentedStore(new MemoryStore(), metrics.store).get('k');
}

t.test('the metric set is exactly DESIGN.md §8: names, types and labels, plus the default process metrics', async (t) => {
  const metrics = new Metrics();
  await recordOneOfEach(metrics);
  const { body, contentType } = await metrics.exposition();
  t.match(contentType, /^text\/plain; version=0\.0\.4/);
  const families = new Map([...body.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => [name!, type!]));
  const ours = [...families.keys()].filter((name) => !/^oidc_sidecar_(process|nodejs)_/.test(name));
  t.same(ours.sort(), Object.keys(CONTRACT).sort(), 'no family missing, none extra');
  const scrape = parseExposition(body);
  for (const [name, { type, labels }] of Object.entries(CONTRACT)) {
    t.equal(families.get(name), type, `${name} is a ${type}`);
    const sampleName = type === 'histogram' ? `${name}_count` : name;
    const seen = new Set(scrape.samples.filter((sample) => sample.name === sampleName).flatMap((sample) => Object.keys(sample.labels)));
    t.same([...seen].sort(), labels, `${name} labels`);
  }
  t.equal(scrape.value('oidc_sidecar_build_info', { version: VERSION }), 1);
  for (const name of ['oidc_sidecar_process_cpu_seconds_total', 'oidc_sidecar_process_resident_memory_bytes', 'oidc_sidecar_nodejs_eventloop_lag_p99_seconds']) {
    t.ok(families.has(name), name);
  }
});

t.test('known label values start at zero, so the first failure is a visible increase', async (t) => {
  const scrape = parseExposition((await new Metrics().exposition()).body);
  t.same(scrape.labelValues('oidc_sidecar_upstream_errors_total', 'reason'), ['refused', 'reset', 'timeout']);
  t.same(scrape.labelValues('oidc_sidecar_sessions_ended_total', 'reason'), ['backchannel', 'expired', 'frontchannel', 'logout', 'refresh_failed']);
  t.same(scrape.labelValues('oidc_sidecar_token_refresh_total', 'result'), ['failure', 'success']);
  t.ok(scrape.labelValues('oidc_sidecar_session_store_errors_total', 'operation').includes('audit_append'));
  t.equal(scrape.value('oidc_sidecar_upstream_errors_total'), 0);
});

t.test('HTTP requests are counted by route name, a fixed set of methods and the status', async (t) => {
  const metrics = new Metrics();
  metrics.http.record('proxy', 'GET', 200, 0.004);
  metrics.http.record('proxy', 'GET', 200, 0.006);
  metrics.http.record('proxy', 'PROPFIND', 401, 0.001);
  metrics.http.record('proxy', undefined, 499, 0.3);
  metrics.http.record('callback', 'GET', 400, 0.02);
  const scrape = parseExposition((await metrics.exposition()).body);
  t.equal(scrape.value('oidc_sidecar_http_requests_total', { route: 'proxy', method: 'GET', status: '200' }), 2);
  t.equal(scrape.value('oidc_sidecar_http_requests_total', { route: 'proxy', method: 'other' }), 2, 'unknown methods are "other"');
  t.equal(scrape.value('oidc_sidecar_http_requests_total', { route: 'callback', status: '400' }), 1);
  t.equal(scrape.value('oidc_sidecar_http_request_duration_seconds_count', { route: 'proxy' }), 4);
  t.equal(scrape.value('oidc_sidecar_http_request_duration_seconds_bucket', { route: 'proxy', le: '0.005' }), 2, 'buckets are cumulative');
  t.equal(scrape.value('oidc_sidecar_http_request_duration_seconds_bucket', { route: 'proxy', le: '+Inf' }), 4);
  t.equal(scrape.value('oidc_sidecar_http_request_duration_seconds_sum', { route: 'callback' }), 0.02);
  t.same(scrape.labelValues('oidc_sidecar_http_requests_total', 'method'), ['GET', 'other']);
});

t.test('own endpoint paths map to route names; anything else under the prefix is not_found', async (t) => {
  const cases: Array<[string, string]> = [
    ['/oauth2/start', 'start'],
    ['/oauth2/callback', 'callback'],
    ['/oauth2/sign_out', 'sign_out'],
    ['/oauth2/userinfo', 'userinfo'],
    ['/oauth2/auth', 'auth'],
    ['/oauth2/token', 'token'],
    ['/oauth2/revoke', 'revoke'],
    ['/oauth2/jwks', 'jwks'],
    ['/oauth2/backchannel-logout', 'backchannel_logout'],
    ['/oauth2/frontchannel-logout', 'frontchannel_logout'],
    ['/oauth2/proxy', 'not_found'],
    ['/oauth2/public', 'not_found'],
    ['/oauth2/start/again', 'not_found'],
    ['/oauth2/', 'not_found'],
    ['/sso/return', 'callback'],
    // Near misses dispatch does not answer: not counted as the endpoint.
    ['/oauth2/sign-out', 'not_found'],
    ['/oauth2/backchannel_logout', 'not_found'],
    ['/oauth2/__proto__', 'not_found'],
  ];
  for (const [path, route] of cases) t.equal(ownEndpointRoute(path, '/oauth2', path === '/sso/return' ? '/sso/return' : '/oauth2/callback'), route, path);
  t.equal(ownEndpointRoute('/oauth2/callback', '/oauth2', '/sso/return'), 'not_found', 'the callback path when redirectPath is elsewhere');
});

t.test('IdP requests are named by the provider metadata, never by URL', async (t) => {
  const metadata = {
    issuer: 'https://idp.example.com',
    token_endpoint: 'https://idp.example.com/token',
    jwks_uri: 'https://idp.example.com/jwks',
    revocation_endpoint: 'https://idp.example.com/token/revocation',
    userinfo_endpoint: 'https://idp.example.com/me',
  };
  const cases: Array<[string, object | undefined, IdpEndpoint]> = [
    ['https://idp.example.com/.well-known/openid-configuration', undefined, 'discovery'],
    ['https://login.example.com/tenant/v2.0/.well-known/openid-configuration?appid=x', undefined, 'discovery'],
    ['https://idp.example.com/token', metadata, 'token'],
    ['https://idp.example.com/jwks', metadata, 'jwks'],
    ['https://idp.example.com/token/revocation', metadata, 'revocation'],
    ['https://idp.example.com/me?schema=openid', metadata, 'userinfo'],
    ['https://idp.example.com/token', undefined, 'other'],
    ['https://graph.example.com/v1.0/me/memberOf', metadata, 'other'],
  ];
  for (const [url, known, endpoint] of cases) t.equal(idpEndpointOf(url, known), endpoint, url);
});

t.test('timedFetch times answers and failures alike', async (t) => {
  const server = http.createServer((_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/openid-configuration`;
  const observed: Array<[IdpEndpoint, number]> = [];
  const fetchTimed = timedFetch((target) => idpEndpointOf(target, undefined), (endpoint, seconds) => observed.push([endpoint, seconds]));
  t.equal((await fetchTimed(url, {})).status, 200);
  await t.rejects(fetchTimed('http://127.0.0.1:1/token', {}));
  t.equal(observed.length, 2);
  t.match(observed, [['discovery', Number], ['other', Number]]);
  t.ok(observed.every(([, seconds]) => seconds > 0 && seconds < 5));
});

runStoreSuite(t, 'instrumented memory store', async () => {
  let now = Date.now();
  const inner = new MemoryStore({ clock: () => now });
  const store = new InstrumentedStore(inner, new Metrics().store);
  return { store, fastForward: async (ms) => void (now += ms), close: () => store.close() };
});

t.test('every store operation is timed by name, and its failures counted and passed on', async (t) => {
  const metrics = new Metrics();
  const store = new InstrumentedStore(new MemoryStore(), metrics.store);
  await store.set('k', Buffer.from('v'), 1000);
  await store.get('k');
  await store.get('absent');
  await store.ttl('k');
  const release = await store.tryLock('lock', 1000);
  await release!();
  await store.addToSet('s', 'm', 1000);
  const failing = new InstrumentedStore({ get: () => Promise.reject(new Error('Redis did not answer')) } as unknown as KeyValueStore, metrics.store);
  await t.rejects(failing.get('k'), /Redis did not answer/);
  const scrape = parseExposition((await metrics.exposition()).body);
  const count = (operation: string) => scrape.value('oidc_sidecar_session_store_operation_duration_seconds_count', { operation });
  t.same(
    ['set', 'get', 'ttl', 'lock', 'unlock', 'add_to_set', 'ping'].map(count),
    [1, 3, 1, 1, 1, 1, 0],
  );
  t.equal(scrape.value('oidc_sidecar_session_store_errors_total', { operation: 'get' }), 1);
  t.equal(scrape.value('oidc_sidecar_session_store_errors_total', { operation: 'set' }), 0);
});
