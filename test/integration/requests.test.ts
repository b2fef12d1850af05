import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { request } from '../support/http.js';
import { scrape } from '../support/metrics.js';
import { startPortal } from '../support/portal.js';
import { auditEvents, NAVIGATION, signIn, startStack } from '../support/stack.js';

const JSON_ACCEPT = { accept: 'application/json' };
/** What a client may claim about itself or the URL it asked for, in the headers proxies use for that. */
const CLIENT_CLAIMS = {
  'X-Forwarded-For': '10.0.0.1',
  Forwarded: 'for=10.0.0.1;host=evil.example;proto=https',
  'X-Real-IP': '10.0.0.1',
  'Client-IP': '10.0.0.1',
  'True-Client-IP': '10.0.0.1',
  'X-Forwarded-Port': '8443',
  X_Forwarded_Prefix: '/admin',
  'X-Forwarded-Server': 'evil.example',
  'X-Original-Host': 'evil.example',
  'X-ARR-ClientCert': 'MIIB-spoofed-certificate',
};
/** The claims the portal must not get from a client: all but X-Forwarded-For, which the sidecar rewrites. */
const DROPPED_CLAIMS = Object.keys(CLIENT_CLAIMS).filter((name) => name !== 'X-Forwarded-For');

t.test('requests through a running sidecar', async (t) => {
  const stack = await startStack({ config: { routes: { public: ['^/public/', '^/health$'] } } });
  t.teardown(() => stack.stop());
  const { cookieHeader, cookie } = await signIn(stack);
  const url = (path: string) => stack.sidecar.url + path;
  const lastPortalRequest = () => stack.portal.requests.at(-1)!;

  t.test('API routes, non-GET, XHR/fetch and non-HTML Accept get 401 JSON, never a redirect', async (t) => {
    const cases: Array<[string, string, Record<string, string>]> = [
      ['API route', '/api/items', NAVIGATION],
      ['OData route', '/odata/data/cases', NAVIGATION],
      ['POST', '/form', { ...NAVIGATION }],
      ['XHR', '/page', { ...NAVIGATION, 'x-requested-with': 'XMLHttpRequest' }],
      ['fetch()', '/page', { accept: 'text/html', 'sec-fetch-mode': 'cors' }],
      ['JSON client', '/page', JSON_ACCEPT],
    ];
    for (const [name, path, headers] of cases) {
      const answer = await request(url(path), { method: name === 'POST' ? 'POST' : 'GET', headers });
      t.equal(answer.status, 401, name);
      t.match(answer.headers['www-authenticate'], /^Bearer realm=/, name);
      t.match(JSON.parse(answer.body), { error: 'unauthorized' }, name);
    }
  });

  t.test('spoofed identity headers never reach the portal, in any spelling, on any route', async (t) => {
    const spoofed = {
      'X-Forwarded-User': 'mallory',
      X_Forwarded_User: 'mallory',
      'x-forwarded-email': 'mallory@evil.example',
      'X-FORWARDED-GROUPS': 'spoofed-group',
      X_Auth_Method: 'spoofed-method',
      'X-Forwarded-Client-Id': 'spoofed-client',
    };
    for (const [path, extra] of [['/public/app.js', {}], ['/echo', { cookie: cookieHeader }]] as const) {
      const answer = await request(url(path), { headers: { ...JSON_ACCEPT, ...spoofed, ...extra } });
      t.equal(answer.status, 200, path);
      const received = lastPortalRequest().headers;
      for (const name of Object.keys(received)) t.notMatch(String(received[name]), /mallory|spoofed/, `${path}: ${name}`);
      t.notOk(received.x_forwarded_user, path);
    }
    t.equal(lastPortalRequest().headers['x-forwarded-user'], 'alice', 'the real identity is still set');
  });

  t.test('public routes are proxied without identity, matched on the normalized path only', async (t) => {
    const open = await request(url('/public/app.js?x=1'), { headers: JSON_ACCEPT });
    t.equal(open.status, 200);
    t.notOk(lastPortalRequest().headers['x-forwarded-user']);
    t.equal((await request(url('/%70ublic/app.js'), { headers: JSON_ACCEPT })).status, 200, 'encoded unreserved characters are decoded');
    t.equal(lastPortalRequest().url, '/%70ublic/app.js', 'the portal receives the path as sent');
    t.equal((await request(url('//health'), { headers: JSON_ACCEPT })).status, 200, 'repeated slashes count as one …');
    t.equal(lastPortalRequest().url, '/health', '… as they do for the portal: the route decided on the path it gets');
    const notPublic: Array<[string, number]> = [
      ['/admin?/public/', 401],
      ['/admin#/public/', 400],
      ['/admin%23/public/', 401],
      ['/public/../admin', 400],
      ['/public/%2e%2e/admin', 400],
      ['/public/..;/admin', 400],
      ['/public%2fadmin', 400],
      ['/public/..%2fadmin', 400],
      ['/public/%5c..%5cadmin', 400],
      ['/a%00/public/', 400],
      ['/healthz', 401],
    ];
    for (const [path, status] of notPublic) {
      const before = stack.portal.requests.length;
      const answer = await request(url(path), { headers: JSON_ACCEPT });
      t.equal(answer.status, status, path);
      t.equal(stack.portal.requests.length, before, `${path} never reached the portal`);
    }
    const forwarded = await request(url('/admin'), { headers: { ...JSON_ACCEPT, 'x-original-url': '/public/x', 'x-forwarded-uri': '/public/x' } });
    t.equal(forwarded.status, 401, 'a forwarded header does not make a route public');
    const rewriting = await request(url('/public/x'), { headers: { ...JSON_ACCEPT, 'x-original-url': '/admin', 'X-Rewrite-URL': '/admin', X_Original_URL: '/admin' } });
    t.equal(rewriting.status, 200);
    t.notOk(lastPortalRequest().headers['x-original-url'], 'no header that makes IIS or a framework serve another path reaches the portal');
    t.notOk(lastPortalRequest().headers['x-rewrite-url']);
    t.notOk(lastPortalRequest().headers.x_original_url, 'in no spelling (CGI-style portals read X_Original_URL as X-Original-URL)');
  });

  t.test('a tampered, unknown or garbage cookie is a sign-in, never an error page', async (t) => {
    const tampered = cookie.slice(0, -2) + (cookie.endsWith('AA') ? 'BB' : 'AA');
    const cookies = [tampered, 'v1.garbage.garbage', '', 'x'.repeat(4000), cookie.replace(/^v1\./, 'v2.'), `v1.${randomBytes(48).toString('base64url')}.${randomBytes(32).toString('base64url')}`];
    for (const value of cookies) {
      const navigation = await request(url('/page'), { headers: { ...NAVIGATION, cookie: `_oidc_sidecar=${value}` } });
      t.equal(navigation.status, 302, `navigation with ${value.slice(0, 20)}`);
      t.equal(new URL(String(navigation.headers.location)).origin, stack.idp.issuer);
      const api = await request(url('/api/x'), { headers: { ...JSON_ACCEPT, cookie: `_oidc_sidecar=${value}` } });
      t.equal(api.status, 401);
    }
  });

  t.test("another deployment's session cookie of the same name, sent first, does not hide this one's", async (t) => {
    // What a browser sends when a sidecar on a parent domain (session.cookie.domain) uses the same name.
    const foreign = `v1.${randomBytes(48).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    const answer = await request(url('/echo'), { headers: { ...JSON_ACCEPT, cookie: `_oidc_sidecar=${foreign}; portal=1; _oidc_sidecar=${cookie}` } });
    t.equal(answer.status, 200);
    t.equal(lastPortalRequest().headers['x-forwarded-user'], 'alice');
    t.equal(lastPortalRequest().headers.cookie, 'portal=1', 'neither reaches the portal');
  });

  t.test('request bodies are streamed to the portal unchanged', async (t) => {
    const body = randomBytes(3 * 1024 * 1024);
    const answer = await request(url('/echo'), { method: 'POST', headers: { ...JSON_ACCEPT, cookie: cookieHeader, 'content-type': 'application/octet-stream' }, body });
    t.equal(answer.status, 200);
    t.match(JSON.parse(answer.body), { bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex') });
  });

  t.test("the portal's answer reaches the client whole, without its hop-by-hop headers", async (t) => {
    const answer = await request(url('/hop-by-hop'), { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(answer.status, 200);
    t.equal(answer.statusMessage, 'Fine Thanks');
    t.equal(answer.body, 'hop-by-hop\n');
    t.same(answer.headers['set-cookie'], ['portal_a=1; Path=/', 'portal_b=2; Path=/'], 'repeated headers kept in order');
    t.equal(answer.headers['content-type'], 'text/plain; charset=utf-8');
    t.equal(answer.headers['x-portal-hop'], undefined, 'a header the portal named in Connection is dropped');
    t.equal(answer.headers.trailer, undefined);
    t.not(answer.headers.connection, 'X-Portal-Hop', "the sidecar's own connection handling");
  });

  t.test("a large answer reaches a client that reads slowly, whole and in order", async (t) => {
    const kib = 16 * 1024;
    const received = await readSlowly(url(`/big?kb=${kib}`), { cookie: cookieHeader }, 300);
    t.equal(received.status, 200);
    t.equal(received.bytes, kib * 1024);
    const portalKib = Buffer.alloc(1024, 'legacy portal payload 0123456789\n');
    const sent = createHash('sha256');
    for (let i = 0; i < kib; i++) sent.update(portalKib);
    t.equal(received.sha256, sent.digest('hex'), 'the very bytes the portal sent');
  });

  t.test('hop-by-hop request headers stop at the sidecar, and cannot take its own headers away', async (t) => {
    const headers = { ...JSON_ACCEPT, cookie: cookieHeader, connection: 'keep-alive, X-Client-Hop, X-Forwarded-User, Host', 'x-client-hop': 'next hop only', 'keep-alive': 'timeout=9', te: 'trailers', 'proxy-connection': 'keep-alive' };
    const answer = await request(url('/echo'), { headers });
    t.equal(answer.status, 200);
    const received = lastPortalRequest().headers;
    for (const name of ['x-client-hop', 'keep-alive', 'te', 'proxy-connection']) t.equal(received[name], undefined, `${name} not passed on`);
    t.not(received.connection, headers.connection);
    t.equal(received['x-forwarded-user'], 'alice', "the sidecar's identity header stays");
    t.equal(received.host, new URL(stack.sidecar.url).host, "the client's Host stays");
  });

  t.test('a Connection header naming the body framing cannot strip it: the portal gets the whole body, framed as sent', async (t) => {
    const body = randomBytes(10 * 1024);
    for (const connection of ['content-length', 'keep-alive, Content-Length', 'transfer-encoding']) {
      const answer = await request(url('/echo'), { method: 'POST', headers: { ...JSON_ACCEPT, cookie: cookieHeader, connection, 'content-type': 'application/octet-stream' }, body });
      t.equal(answer.status, 200, connection);
      t.match(JSON.parse(answer.body), { bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex') }, connection);
      t.equal(lastPortalRequest().headers['content-length'], String(body.length), `${connection}: Content-Length stays`);
    }
  });

  t.test('a chunked DELETE or OPTIONS reaches the portal with its body, which cannot smuggle a request of its own', async (t) => {
    for (const method of ['DELETE', 'OPTIONS']) {
      const before = stack.portal.requests.length;
      // What the portal would take for a second request had the body been sent unframed (node-http-proxy#1720).
      const smuggled = `GET /public/smuggled HTTP/1.1\r\nHost: portal\r\nX-Forwarded-User: admin\r\n\r\n`;
      const head = `${method} /public/items/1 HTTP/1.1\r\nHost: ${new URL(stack.sidecar.url).host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`;
      const answer = await rawExchange(url('/'), head + `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`);
      t.match(answer, /^HTTP\/1.1 200 /, method);
      await waitFor(() => stack.portal.requests.length > before);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const received = stack.portal.requests.slice(before);
      t.same(received.map(({ method, url }) => `${method} ${url}`), [`${method} /public/items/1`], `${method}: one request reached the portal`);
      t.equal(received[0]!.bodyLength, smuggled.length, `${method}: with its whole body`);
      t.equal(received[0]!.headers['transfer-encoding'], 'chunked', `${method}: framed as sent`);
    }
  });

  t.test('a POST without a body reaches the portal as one of length 0, as it came', async (t) => {
    const head = `POST /public/empty HTTP/1.1\r\nHost: ${new URL(stack.sidecar.url).host}\r\nConnection: close\r\n\r\n`;
    t.match(await rawExchange(url('/'), head), /^HTTP\/1.1 200 /);
    t.equal(lastPortalRequest().url, '/public/empty');
    t.equal(lastPortalRequest().headers['content-length'], '0', 'not chunked: a portal may refuse a chunked request or take it for one with a body');
    t.equal(lastPortalRequest().headers['transfer-encoding'], undefined);
  });

  t.test('a request that expects 100-continue is forwarded like any other', async (t) => {
    const body = randomBytes(64 * 1024);
    const answer = await request(url('/echo'), { method: 'PUT', headers: { ...JSON_ACCEPT, cookie: cookieHeader, expect: '100-continue' }, body });
    t.equal(answer.status, 200);
    t.match(JSON.parse(answer.body), { method: 'PUT', bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex') });
    t.equal(lastPortalRequest().headers.expect, undefined, 'the sidecar answered the 100 itself');
  });

  t.test('X-Forwarded-For/-Proto/-Host and X-Request-Id go to the portal', async (t) => {
    await request(url('/echo'), { headers: { ...JSON_ACCEPT, cookie: cookieHeader, 'x-forwarded-for': '203.0.113.9', 'x-request-id': 'req-123', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' } });
    const received = lastPortalRequest().headers;
    t.equal(received['x-forwarded-for'], '127.0.0.1', "the client's own X-Forwarded-For is dropped: it is no trusted proxy");
    t.equal(received['x-forwarded-proto'], 'http', 'the public URL says http');
    t.equal(received['x-forwarded-host'], new URL(stack.config.publicUrl).host);
    t.equal(received['x-request-id'], 'req-123');
    await request(url('/echo'), { headers: { ...JSON_ACCEPT, cookie: cookieHeader, 'x-request-id': 'bad id\twith spaces' } });
    t.match(lastPortalRequest().headers['x-request-id'], /^[0-9a-f-]{36}$/, 'an unacceptable request id is replaced');
  });

  t.test('forwarding headers from a client (not a trusted proxy) never reach the portal, on any route', async (t) => {
    for (const [path, extra] of [['/public/app.js', {}], ['/echo', { cookie: cookieHeader }]] as const) {
      const answer = await request(url(path), { headers: { ...JSON_ACCEPT, ...CLIENT_CLAIMS, ...extra } });
      t.equal(answer.status, 200, path);
      const received = lastPortalRequest().headers;
      for (const name of DROPPED_CLAIMS) t.equal(received[name.toLowerCase()], undefined, `${path}: ${name}`);
      t.equal(received['x-forwarded-for'], '127.0.0.1', `${path}: X-Forwarded-For names the peer only`);
      t.equal(received['x-forwarded-host'], new URL(stack.config.publicUrl).host, path);
    }
    t.equal(lastPortalRequest().headers['x-forwarded-user'], 'alice', 'the identity headers are still set');
    t.match(await upgrade(url('/ws'), { cookie: cookieHeader, ...CLIENT_CLAIMS }), /^HTTP\/1.1 101/);
    const upgraded = lastPortalRequest().headers;
    for (const name of DROPPED_CLAIMS) t.equal(upgraded[name.toLowerCase()], undefined, `upgrade: ${name}`);
    t.equal(upgraded['x-forwarded-for'], '127.0.0.1', 'upgrade: X-Forwarded-For names the peer only');
  });

  t.test('/oauth2/userinfo and /oauth2/auth answer for the current identity', async (t) => {
    const info = await request(url('/oauth2/userinfo'), { headers: { cookie: cookieHeader } });
    t.equal(info.status, 200);
    t.match(JSON.parse(info.body), { user: 'alice', email: 'alice@example.com', name: 'Alice Zoë Example', groups: ['portal-users', 'admins'] });
    t.equal((await request(url('/oauth2/userinfo'), { headers: NAVIGATION })).status, 401);
    const auth = await request(url('/oauth2/auth'), { headers: { cookie: cookieHeader } });
    t.equal(auth.status, 202);
    t.equal(auth.headers['x-forwarded-user'], 'alice');
    t.equal(auth.headers['x-auth-method'], 'session');
    t.equal((await request(url('/oauth2/auth'), { headers: NAVIGATION })).status, 401);
    t.equal((await request(url('/oauth2/nothing'), { headers: JSON_ACCEPT })).status, 404);
    t.equal((await request(url('/oauth2/userinfo'), { method: 'DELETE' })).status, 405);
  });

  t.test('oversized request headers are refused before any work', async (t) => {
    const before = stack.portal.requests.length;
    const answer = await request(url('/echo'), { headers: { cookie: cookieHeader, 'x-big': 'a'.repeat(20_000) } });
    t.equal(answer.status, 431);
    t.equal(stack.portal.requests.length, before);
  });

  t.test('WebSocket upgrades are authenticated like any request', async (t) => {
    const refused = await upgrade(url('/ws'), {});
    t.match(refused, /^HTTP\/1.1 401/);
    const accepted = await upgrade(url('/ws'), { cookie: cookieHeader, 'x-forwarded-user': 'mallory' });
    t.match(accepted, /^HTTP\/1.1 101/);
    t.equal(lastPortalRequest().headers['x-forwarded-user'], 'alice');
    t.equal(lastPortalRequest().headers.connection, 'Upgrade');
  });

  t.test('an upgrade to another protocol than WebSocket (h2c) is refused: no tunnel past the sidecar', async (t) => {
    const before = stack.portal.requests.length;
    for (const path of ['/public/x', '/ws']) {
      const answer = await upgrade(url(path), { cookie: cookieHeader }, { Upgrade: 'h2c', Connection: 'Upgrade, HTTP2-Settings', 'HTTP2-Settings': 'AAMAAABkAARAAAAAAAIAAAAA' });
      t.match(answer, /^HTTP\/1.1 400/, path);
    }
    t.equal(stack.portal.requests.length, before, 'nothing reached the portal');
  });

  t.test("an upgrade's other connection-level headers stop at the sidecar", async (t) => {
    const accepted = await upgrade(url('/ws'), { cookie: cookieHeader, 'keep-alive': 'timeout=9', 'x-client-hop': 'next hop only', te: 'trailers' }, { Connection: 'Upgrade, X-Client-Hop, X-Forwarded-User' });
    t.match(accepted, /^HTTP\/1.1 101/);
    const received = lastPortalRequest().headers;
    for (const name of ['keep-alive', 'x-client-hop', 'te']) t.equal(received[name], undefined, `${name} not passed on`);
    t.equal(received.connection, 'Upgrade');
    t.equal(received.upgrade, 'websocket');
    t.equal(received['x-forwarded-user'], 'alice', "the sidecar's identity header stays");
  });
});

t.test('CORS preflights: 401 by default; with routes.corsPreflight, to the portal without sign-in, and only true preflights', async (t) => {
  const preflight = { origin: 'https://reports.example.com', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'authorization' };
  const byDefault = await startStack();
  t.teardown(() => byDefault.stop());
  const refused = await request(byDefault.sidecar.url + '/api/items', { method: 'OPTIONS', headers: preflight });
  t.equal(refused.status, 401, 'by default a preflight is a request without credentials like any other');
  t.equal(byDefault.portal.requests.length, 0);

  const stack = await startStack({ config: { routes: { corsPreflight: true } } });
  t.teardown(() => stack.stop());
  const options = (headers: Record<string, string>) => request(stack.sidecar.url + '/api/items', { method: 'OPTIONS', headers });
  const passed = await options({ ...preflight, 'x-forwarded-user': 'mallory' });
  t.equal(passed.status, 200, 'the portal answers the preflight');
  const received = stack.portal.requests.at(-1)!;
  t.match(received, { method: 'OPTIONS', url: '/api/items' });
  t.equal(received.headers['x-forwarded-user'], undefined, 'without identity, spoofed identity stripped');
  t.equal(received.headers['access-control-request-method'], 'PUT');
  const notPreflights: Array<[string, Record<string, string>]> = [
    ['OPTIONS without Access-Control-Request-Method', { origin: preflight.origin }],
    ['OPTIONS without Origin', { 'access-control-request-method': 'PUT' }],
    ['a "preflight" carrying a bearer token', { ...preflight, authorization: 'Bearer junk' }],
    ['a "preflight" carrying a cookie', { ...preflight, cookie: '_oidc_sidecar=junk' }],
  ];
  for (const [name, headers] of notPreflights) t.equal((await options(headers)).status, 401, `${name}: authenticated like any request`);
  const withBody = await request(stack.sidecar.url + '/api/items', { method: 'OPTIONS', headers: { ...preflight, 'content-type': 'text/plain', 'content-length': '6' }, body: 'rm -rf' });
  t.equal(withBody.status, 401, 'a "preflight" with a body: authenticated like any request');
  t.equal(stack.portal.requests.length, 1, 'the portal saw only the true preflight');
});

t.test("behind a trusted proxy (listen.trustedProxies), the proxy's forwarding headers reach the portal", async (t) => {
  const stack = await startStack({ config: { listen: { trustedProxies: ['127.0.0.1'] }, routes: { public: ['^/public/'] } } });
  t.teardown(() => stack.stop());
  const spelledWithUnderscores = { X_Forwarded_Host: 'evil.example', X_Real_IP: '10.6.6.6' };
  const answer = await request(stack.sidecar.url + '/public/app.js', { headers: { ...CLIENT_CLAIMS, ...spelledWithUnderscores, 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-User': 'mallory' } });
  t.equal(answer.status, 200);
  const received = stack.portal.requests.at(-1)!.headers;
  t.equal(received['x-forwarded-for'], '10.0.0.1, 127.0.0.1', 'appended to');
  t.equal(received.forwarded, CLIENT_CLAIMS.Forwarded);
  t.equal(received['x-real-ip'], '10.0.0.1');
  t.equal(received['x-forwarded-port'], '8443');
  t.equal(received['x-arr-clientcert'], CLIENT_CLAIMS['X-ARR-ClientCert']);
  t.equal(received.x_forwarded_prefix, undefined, 'spelled with _, from no proxy: dropped (a CGI-style portal reads it as X-Forwarded-Prefix)');
  t.equal(received.x_forwarded_host, undefined, 'X_Forwarded_Host cannot stand in for the X-Forwarded-Host the sidecar sets');
  t.equal(received.x_real_ip, undefined);
  t.equal(received['x-forwarded-host'], new URL(stack.config.publicUrl).host, 'the public URL is still the sidecar\'s to say');
  t.equal(received['x-forwarded-user'], undefined, 'identity headers are stripped whoever sends them');
});

t.test('a custom identity.headers map, tokens passed on, WebSockets off', async (t) => {
  const stack = await startStack({
    config: { identity: { headers: { 'X-Remote-User': 'preferred_username', 'X-Remote-Teams': ['teams', 'groups'] }, passAccessToken: true }, upstream: { websockets: false } },
  });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack);
  const spoofed = { 'X-Forwarded-User': 'mallory', X_Remote_User: 'mallory', 'X-Forwarded-Access-Token': 'forged' };
  const answer = await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, ...spoofed, cookie: cookieHeader } });
  t.equal(answer.status, 200);
  const received = stack.portal.requests.at(-1)!.headers;
  t.equal(received['x-remote-user'], 'alice');
  t.equal(received['x-remote-teams'], 'portal-users,admins', 'the first present claim of the list');
  t.notOk(received['x-forwarded-user'], 'a default header name is stripped even when the map leaves it out');
  t.notOk(received.x_remote_user);
  t.match(received['x-forwarded-access-token'], /^[\w.-]{20,}$/, "the session's access token, not the forged one");
  const auth = await request(stack.sidecar.url + '/oauth2/auth', { headers: { cookie: cookieHeader } });
  t.equal(auth.status, 202);
  t.equal(auth.headers['x-remote-user'], 'alice');
  t.equal(auth.headers['x-forwarded-access-token'], received['x-forwarded-access-token'], 'forward-auth answers the same headers');
  t.match(await upgrade(stack.sidecar.url + '/ws', { cookie: cookieHeader }), /^HTTP\/1.1 403/, 'upgrades refused when upstream.websockets is off');
});

t.test('when the portal fails', async (t) => {
  const stack = await startStack({ config: { upstream: { timeoutSeconds: 0.5 } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack);

  t.test('too slow: 504 page; the portal request is abandoned', async (t) => {
    const answer = await request(stack.sidecar.url + '/slow?ms=3000', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(answer.status, 504);
    t.match(answer.body, /Portal too slow/);
    await waitFor(() => stack.portal.requests.at(-1)!.aborted);
    t.equal(stack.portal.requests.at(-1)!.aborted, true);
  });

  t.test('an upload longer than upstream.timeoutSeconds is not a slow portal: its time starts once the body is sent', async (t) => {
    const body = randomBytes(6 * 16 * 1024);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const { hostname, port } = new URL(stack.sidecar.url);
      const req = http.request({ hostname, port, path: '/echo', method: 'POST', agent: false, headers: { ...JSON_ACCEPT, cookie: cookieHeader, 'content-length': String(body.length) } }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += String(chunk)));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on('error', reject);
      let sent = 0;
      const sendNext = () => {
        req.write(body.subarray(sent, sent + 16 * 1024));
        sent += 16 * 1024;
        if (sent < body.length) setTimeout(sendNext, 200);
        else req.end();
      };
      sendNext();
    });
    t.equal(answer.status, 200, 'sent over about 1 s, twice the 0.5 s');
    t.match(JSON.parse(answer.body), { bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex') });
  });

  t.test('the client goes away: the portal request is destroyed', async (t) => {
    const req = http.request(stack.sidecar.url + '/slow?ms=400', { headers: { cookie: cookieHeader } });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => stack.portal.requests.at(-1)?.url === '/slow?ms=400');
    req.destroy();
    await waitFor(() => stack.portal.requests.at(-1)!.aborted);
    t.equal(stack.portal.requests.at(-1)!.aborted, true);
  });

  t.test('the client goes away mid-upload: the portal request is destroyed, and no portal failure counted', async (t) => {
    const failures = async () => (await scrape(stack.sidecar.metricsUrl)).value('oidc_sidecar_upstream_errors_total', { reason: 'reset' });
    const before = await failures();
    const req = http.request(stack.sidecar.url + '/echo?upload', { method: 'POST', headers: { cookie: cookieHeader, 'content-length': '1048576' }, agent: false });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(64 * 1024));
    await waitFor(() => stack.portal.requests.at(-1)?.url === '/echo?upload');
    req.destroy();
    await waitFor(() => stack.portal.requests.at(-1)!.aborted);
    t.equal(stack.portal.requests.at(-1)!.aborted, true);
    t.equal(await failures(), before);
    t.equal((await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } })).status, 200, 'the sidecar serves on');
  });

  t.test('the client goes away mid-upload after the portal answered early (a 413): the portal request goes too', async (t) => {
    const req = http.request(stack.sidecar.url + '/early', { method: 'POST', headers: { cookie: cookieHeader, 'content-length': '1048576' }, agent: false });
    req.on('error', () => undefined);
    const answered = new Promise<number>((resolve) => req.on('response', (res) => resolve(res.statusCode!)));
    req.write(Buffer.alloc(64 * 1024));
    t.equal(await answered, 413, 'the answer comes while the client is still sending');
    req.destroy();
    await waitFor(() => stack.portal.requests.at(-1)!.aborted);
    t.equal(stack.portal.requests.at(-1)!.aborted, true, 'the portal is not left waiting for the rest of the body');
  });

  t.test('the portal breaks off mid-answer: the client is cut off too, not left waiting', async (t) => {
    const cut = await readSlowly(stack.sidecar.url + '/cut?kb=64', { cookie: cookieHeader }, 0);
    t.equal(cut.status, 200);
    t.equal(cut.headers['content-length'], String(128 * 1024));
    t.equal(cut.error, 'aborted', 'the client sees the answer end early');
    t.ok(cut.bytes <= 64 * 1024, 'nothing made up');
    t.match(await scrape(stack.sidecar.metricsUrl).then((s) => s.value('oidc_sidecar_upstream_errors_total', { reason: 'reset' })), 1);
  });

  t.test('the client goes away mid-answer: the portal request is destroyed, and no portal failure counted', async (t) => {
    const resets = async () => (await scrape(stack.sidecar.metricsUrl)).value('oidc_sidecar_upstream_errors_total', { reason: 'reset' });
    const before = await resets();
    await new Promise<void>((resolve, reject) => {
      const req = http.get(stack.sidecar.url + '/big?kb=65536', { headers: { cookie: cookieHeader }, agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (error) => (req.destroyed ? undefined : reject(error)));
    });
    await waitFor(() => stack.portal.requests.at(-1)!.aborted);
    t.equal(stack.portal.requests.at(-1)!.url, '/big?kb=65536');
    t.equal(await resets(), before);
  });

  t.test('a WebSocket upgrade the portal never answers: 504, and the portal request is dropped', async (t) => {
    const silent = () => stack.portal.requests.filter((entry) => entry.url === '/ws-silent').length;
    const started = Date.now();
    t.match(await upgrade(stack.sidecar.url + '/ws-silent', { cookie: cookieHeader }), /^HTTP\/1.1 504 /);
    t.ok(Date.now() - started >= 450, 'after upstream.timeoutSeconds');
    t.equal(silent(), 1, 'the portal got the upgrade');
    await waitFor(() => stack.portal.openUpgrades() === 0);
    t.equal(stack.portal.openUpgrades(), 0, "the portal's connection was closed");
    t.match(await scrape(stack.sidecar.metricsUrl).then((s) => s.value('oidc_sidecar_upstream_errors_total', { reason: 'timeout' })), 2);
  });

  t.test('a client that resets its connection before the portal answers its WebSocket upgrade: the portal connection goes too', async (t) => {
    const { hostname, port } = new URL(stack.sidecar.url);
    const socket = net.connect(Number(port), hostname, () => {
      const lines = [`GET /ws?delayMs=300 HTTP/1.1`, `Host: ${hostname}:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, 'Sec-WebSocket-Version: 13', `Cookie: ${cookieHeader}`];
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
    socket.on('error', () => undefined);
    await waitFor(() => stack.portal.requests.at(-1)?.url === '/ws?delayMs=300');
    const resets = () => scrape(stack.sidecar.metricsUrl).then((s) => s.value('oidc_sidecar_upstream_errors_total', { reason: 'reset' }));
    const before = await resets();
    socket.resetAndDestroy();
    await new Promise((resolve) => setTimeout(resolve, 600));
    t.equal(stack.portal.openUpgrades(), 0, 'no portal connection is left open for a client that is gone');
    t.equal(await resets(), before, 'and no portal failure counted');
  });

  t.test('an answered WebSocket outlives upstream.timeoutSeconds', async (t) => {
    const socket = net.connect(Number(new URL(stack.sidecar.url).port), '127.0.0.1');
    t.teardown(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    const key = randomBytes(16).toString('base64');
    socket.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nCookie: ${cookieHeader}\r\n\r\n`);
    const handshake = await new Promise<string>((resolve) => socket.once('data', (data) => resolve(data.toString('latin1'))));
    t.match(handshake, /^HTTP\/1.1 101 /);
    await new Promise((resolve) => setTimeout(resolve, 800));
    socket.write('still here');
    const echoed = await new Promise<string>((resolve) => socket.once('data', (data) => resolve(data.toString('latin1'))));
    t.equal(echoed, 'still here');
  });

  t.test('a WebSocket ended in order delivers its last bytes both ways before it closes', async (t) => {
    const socket = net.connect({ port: Number(new URL(stack.sidecar.url).port), host: '127.0.0.1', allowHalfOpen: true });
    t.teardown(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nCookie: ${cookieHeader}\r\n\r\n`);
    const handshake = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
    t.match(handshake.toString('latin1'), /^HTTP\/1.1 101 /);
    socket.pause();
    // The portal echoes it all and then ends too, while the client is not reading: what the sidecar still holds must not be cut off.
    const last = randomBytes(4 * 1024 * 1024);
    socket.end(last);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.resume();
    await new Promise((resolve) => socket.once('end', resolve));
    t.equal(bytes, last.length, 'every byte came back');
    t.equal(hash.digest('hex'), createHash('sha256').update(last).digest('hex'), 'in order');
  });

  t.test('a client that stops reading is disconnected after twice upstream.timeoutSeconds, and its portal request dropped', async (t) => {
    const socket = net.connect(Number(new URL(stack.sidecar.url).port), '127.0.0.1');
    t.teardown(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`GET /big?kb=65536 HTTP/1.1\r\nHost: x\r\nCookie: ${cookieHeader}\r\n\r\n`);
    socket.pause();
    await waitFor(() => stack.portal.requests.at(-1)?.url === '/big?kb=65536');
    const started = Date.now();
    await waitFor(() => stack.portal.requests.at(-1)!.aborted, 5000);
    t.equal(stack.portal.requests.at(-1)!.aborted, true, "the portal's answer was abandoned");
    t.ok(Date.now() - started >= 700, 'not before the idle time-out (1 s here)');
  });

  t.test('down: 502 page, JSON for API clients', async (t) => {
    await stack.portal.stop();
    const page = await request(stack.sidecar.url + '/', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(page.status, 502);
    t.match(page.body, /Portal unavailable/);
    t.notMatch(page.body, /ECONNREFUSED|127\.0\.0\.1|at /, 'no internals leak');
    const api = await request(stack.sidecar.url + '/api/x', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
    t.equal(api.status, 502);
    t.match(JSON.parse(api.body), { error: 'bad_gateway' });
  });
});

t.test('a portal that does not take the connection: 504 after upstream.timeoutSeconds, during an upload too', async (t) => {
  const portalUrl = await startPortalTakingNoConnection(t);
  const stack = await startStack({ config: { upstream: { url: portalUrl, timeoutSeconds: 1 } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack);
  const page = await request(stack.sidecar.url + '/page', { headers: { ...NAVIGATION, cookie: cookieHeader } });
  t.equal(page.status, 504);
  t.match(page.body, /Portal too slow/);

  const upload = http.request(stack.sidecar.url + '/form', { method: 'POST', headers: { ...JSON_ACCEPT, cookie: cookieHeader, 'content-length': String(1024 * 1024) }, agent: false });
  const answered = new Promise<number>((resolve, reject) => {
    upload.on('response', (res) => resolve(res.statusCode!));
    upload.on('error', reject);
  });
  t.teardown(() => upload.destroy());
  upload.write(Buffer.alloc(64 * 1024));
  t.equal(await answered, 504, 'answered while the body waits, not cut off when the connection falls idle (2 s)');
});

/**
 * A portal whose process is stopped: once the system's queue of connections waiting for it is
 * full, every further connection attempt goes unanswered.
 */
async function startPortalTakingNoConnection(t: Test): Promise<string> {
  const listener = "const s = require('net').createServer().listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => console.log(s.address().port));";
  const child = spawn(process.execPath, ['-e', listener], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const [portLine] = (await once(child.stdout, 'data', { signal: AbortSignal.timeout(10_000) })) as [Buffer];
  child.kill('SIGSTOP');
  const port = Number(String(portLine).trim());
  for (let queued = 0; queued < 10; queued++) {
    const filler = net.connect(port, '127.0.0.1');
    filler.on('error', () => undefined);
    t.teardown(() => filler.destroy());
    const connected = await Promise.race([once(filler, 'connect').then(() => true), new Promise<boolean>((resolve) => setTimeout(resolve, 1_000, false))]);
    if (!connected) return `http://127.0.0.1:${port}`;
  }
  throw new Error('the system kept taking connections for a portal that accepts none');
}

t.test('session lifetime follows the injected clock', async (t) => {
  let offset = 0;
  const clock = () => Date.now() + offset;
  const stack = await startStack({ clock, config: { session: { idleTimeoutMinutes: 20, maxLifetimeHours: 1 } }, idp: { accessTokenTtlSeconds: 7200 } });
  t.teardown(() => stack.stop());
  const minutes = (n: number) => n * 60_000;
  const status = async (cookieHeader: string) => (await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } })).status;

  t.test('idle time-out is sliding', async (t) => {
    const { cookieHeader } = await signIn(stack);
    offset += minutes(15);
    t.equal(await status(cookieHeader), 200, 'used within the idle time-out');
    offset += minutes(15);
    t.equal(await status(cookieHeader), 200, 'the use above extended it');
    offset += minutes(21);
    t.equal(await status(cookieHeader), 401, 'idle too long');
  });

  t.test('absolute lifetime is hard', async (t) => {
    const { cookieHeader } = await signIn(stack);
    for (let i = 0; i < 4; i++) {
      offset += minutes(14);
      t.equal(await status(cookieHeader), 200);
    }
    offset += minutes(5);
    t.equal(await status(cookieHeader), 401, 'past session.maxLifetimeHours even though active');
  });
});

t.test("the session's token expiry is respected", async (t) => {
  let offset = 0;
  const clock = () => Date.now() + offset;

  t.test('tokens are refreshed when due, transparently', async (t) => {
    const stack = await startStack({ clock, idp: { accessTokenTtlSeconds: 600 } });
    t.teardown(() => stack.stop());
    const { cookieHeader } = await signIn(stack);
    offset += 11 * 60_000;
    const answer = await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
    t.equal(answer.status, 200);
    t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
    offset = 0;
  });

  t.test('without refresh, expired tokens mean signing in again', async (t) => {
    const stack = await startStack({ clock, config: { session: { refreshTokens: false } }, idp: { accessTokenTtlSeconds: 600 } });
    t.teardown(() => stack.stop());
    const { cookieHeader } = await signIn(stack);
    offset += 11 * 60_000;
    const answer = await request(stack.sidecar.url + '/page', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(answer.status, 302);
    t.equal(new URL(String(answer.headers.location)).origin, stack.idp.issuer);
    t.match(auditEvents(stack).at(-1), { event: 'session_expired', reason: /session.refreshTokens is off/ });
    offset = 0;
  });
});

t.test('readiness follows the provider and the store', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.stop());
  const ready = await request(stack.sidecar.metricsUrl + '/readyz');
  t.equal(ready.status, 200);
  t.same(JSON.parse(ready.body), { sessionStore: 'ok', provider: 'ok' });
  t.equal((await request(stack.sidecar.metricsUrl + '/healthz')).status, 200);
  t.match((await request(stack.sidecar.metricsUrl + '/metrics')).body, /oidc_sidecar_build_info\{version="/);
});

t.test('a portal under a path of its own gets every request target below it, as sent', async (t) => {
  const portal = await startPortal();
  t.teardown(() => portal.stop());
  const stack = await startStack({ config: { upstream: { url: `${portal.url}/legacy/` }, routes: { public: ['^/public/'] } } });
  t.teardown(() => stack.stop());
  const targets: Array<[sent: string, received: string]> = [
    ['/public/a?x=1', '/legacy/public/a?x=1'],
    ['/public//a///b?next=//x', '/legacy/public/a/b?next=//x'],
    ['/public/a?q=1#part', '/legacy/public/a?q=1'],
    ['/public/%7Bx%7D/%41?q=%2F', '/legacy/public/%7Bx%7D/%41?q=%2F'],
    [`/public/'x'{y}|^?z="<>"`, `/legacy/public/'x'{y}|^?z="<>"`],
  ];
  for (const [sent, received] of targets) {
    const answer = await rawExchange(stack.sidecar.url, `GET ${sent} HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n`);
    t.match(answer, /^HTTP\/1.1 200 /, sent);
    t.equal(portal.requests.at(-1)!.url, received, sent);
  }
  const old = await rawExchange(stack.sidecar.url, 'GET /public/old HTTP/1.0\r\n\r\n');
  t.match(old, /^HTTP\/1.1 200 /, 'HTTP/1.0 without Host');
  t.equal(portal.requests.at(-1)!.headers.host, new URL(portal.url).host, "a request without Host gets the portal's");
});

t.test("a portal status text Node will not write (a control character) goes out as the standard one: the sidecar serves on", async (t) => {
  const portal = net.createServer((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 O\x01K\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello'));
  });
  await new Promise<void>((resolve) => portal.listen(0, '127.0.0.1', resolve));
  t.teardown(() => portal.close());
  const { port } = portal.address() as net.AddressInfo;
  const stack = await startStack({ config: { upstream: { url: `http://127.0.0.1:${port}` }, routes: { public: ['^/public/'] } } });
  t.teardown(() => stack.stop());
  for (const attempt of [1, 2]) {
    const answer = await rawExchange(stack.sidecar.url, `GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    t.match(answer, /^HTTP\/1.1 200 OK\r\n/, `attempt ${attempt}`);
    t.match(answer, /\r\n\r\nhello$/, `attempt ${attempt}: with the portal's body`);
  }
});

/** A WebSocket upgrade request with `headers`; `protocol` replaces its Upgrade and Connection headers. */
function upgrade(url: string, headers: Record<string, string>, protocol: Record<string, string> = { Connection: 'Upgrade' }): Promise<string> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      const lines = [
        `GET ${pathname} HTTP/1.1`,
        `Host: ${hostname}:${port}`,
        ...Object.entries({ Upgrade: 'websocket', ...protocol }).map(([name, value]) => `${name}: ${value}`),
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      ];
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
    socket.once('data', (data) => {
      resolve(data.toString('latin1'));
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** Sends `bytes` as they are on a new connection; resolves to everything read until the sidecar closes it. */
function rawExchange(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(bytes));
    let received = '';
    socket.on('data', (data) => (received += data.toString('latin1')));
    socket.once('close', () => resolve(received));
    socket.once('error', reject);
  });
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
}

/**
 * Reads a response after `pauseMs` without reading (so a proxy in between meets back-pressure),
 * hashing the body; `error` is how the body ended early, if it did.
 */
function readSlowly(url: string, headers: Record<string, string>, pauseMs: number): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number; sha256: string; error?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      res.pause();
      const hash = createHash('sha256');
      let bytes = 0;
      const done = (error?: string) => resolve({ status: res.statusCode!, headers: res.headers, bytes, sha256: hash.digest('hex'), error });
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      res.on('end', () => done());
      res.on('error', (error) => done(error.message));
      setTimeout(() => res.resume(), pauseMs);
    });
    req.on('error', reject);
  });
}
