import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { main, type CliIo } from '../../src/cli.js';
import { CookieJar, cancelSignInWithoutBrowser, signInWithoutBrowser, signOutWithoutBrowser } from '../support/browserless.js';
import { request, type HttpAnswer } from '../support/http.js';
import { DEMO_USERS } from '../support/idp.js';
import { startIdpRelay, type IdpRelay } from '../support/idp-relay.js';
import { scrape, type Scrape } from '../support/metrics.js';
import { startRedis } from '../support/redis.js';
import { auditEvents, CLIENT_ID, CLIENT_SECRET, NAVIGATION, signIn, startStack, type Stack } from '../support/stack.js';

const JSON_ACCEPT = { accept: 'application/json' };
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const QUERY_SECRET = 'query-secret-never-logged-4f1c';

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

function testIo(): CliIo & { stdout: Capture; stderr: Capture } {
  return { stdout: new Capture(), stderr: new Capture(), env: {} };
}

type Assert = Pick<typeof t, 'equal'>;
type Expected = Array<[name: string, labels: Record<string, string>, delta: number]>;

/** Runs `step`, then checks how much each named series moved on the metrics port. */
async function expectMoves(t: Assert, stack: Stack, step: () => Promise<unknown>, expected: Expected): Promise<Scrape> {
  const before = await scrape(stack.sidecar.metricsUrl);
  await step();
  const after = await scrape(stack.sidecar.metricsUrl);
  for (const [name, labels, delta] of expected) {
    t.equal(after.value(name, labels) - before.value(name, labels), delta, `${name}${JSON.stringify(labels)} moved by ${delta}`);
  }
  return after;
}

const m = (name: string) => `oidc_sidecar_${name}`;

/** Signs in like a browser, keeping the IdP session in `jar` (for logouts the IdP starts). */
async function signInWithJar(stack: Stack, jar: CookieJar, user = DEMO_USERS.alice): Promise<string> {
  const start = await request(stack.sidecar.url + '/', { headers: NAVIGATION });
  const callback = new URL(await signInWithoutBrowser(String(start.headers.location), user.username, user.password, jar));
  const answer = await request(stack.sidecar.url + callback.pathname + callback.search, {
    headers: { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${start.cookies._oidc_sidecar_csrf}` },
  });
  return `_oidc_sidecar=${answer.cookies._oidc_sidecar}`;
}

t.test('metrics, the audit log and its stream follow sign-ins, failures, refreshes, logouts and portal outages', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  let offset = 0;
  const clock = () => Date.now() + offset;
  let tokenRelay: IdpRelay | undefined;
  const stack = await startStack({
    clock,
    backchannelLogout: true,
    idp: { accessTokenTtlSeconds: 600 },
    config: async (idp) => {
      tokenRelay = await startIdpRelay(idp.issuer);
      return {
        provider: { tokenEndpoint: `${tokenRelay.url}/token` },
        session: { store: 'redis' },
        redis: { url: redis.url },
        upstream: { timeoutSeconds: 0.5 },
        routes: { public: ['^/public/'] },
        identity: { passAccessToken: true, passIdToken: true },
        log: { access: true },
      };
    },
  });
  t.teardown(() => tokenRelay!.stop());
  t.teardown(() => stack.stop());
  const startedAt = new Date();
  /** Every credential the test sees: none may appear in a log line, the stream or the command's output. */
  const secrets = new Set([CLIENT_SECRET, stack.config.session.secret, QUERY_SECRET]);
  const keepCookie = (cookieHeader: string) => secrets.add(cookieHeader.slice(cookieHeader.indexOf('=') + 1));
  const get = (path: string, headers: Record<string, string> = {}) => request(stack.sidecar.url + path, { headers: { ...JSON_ACCEPT, ...headers } });
  let alice = '';

  await t.test('a sign-in', async (t) => {
    const scraped = await expectMoves(
      t,
      stack,
      async () => {
        alice = (await signIn(stack)).cookieHeader;
        keepCookie(alice);
      },
      [
        [m('auth_events_total'), { event: 'login', method: 'session', result: 'success' }, 1],
        [m('sessions_created_total'), {}, 1],
        [m('http_requests_total'), { route: 'proxy', method: 'GET', status: '302' }, 1],
        [m('http_requests_total'), { route: 'callback', method: 'GET', status: '302' }, 1],
        [m('idp_request_duration_seconds_count'), { endpoint: 'token' }, 1],
      ],
    );
    t.ok(scraped.value(m('idp_request_duration_seconds_count'), { endpoint: 'discovery' }) >= 1, 'discovery was timed');
    t.same(scraped.labelValues(m('idp_request_duration_seconds_count'), 'endpoint').filter((e) => e === 'other'), [], 'every IdP request was named');
  });

  await t.test('failed sign-ins, each with its reason', async (t) => {
    await expectMoves(
      t,
      stack,
      async () => {
        const forged = await get('/oauth2/callback?code=abc&state=forged', { ...NAVIGATION, cookie: '_oidc_sidecar_csrf=x', 'x-request-id': 'req-forged-state' });
        t.equal(forged.status, 400);
        const start = await request(stack.sidecar.url + '/', { headers: NAVIGATION });
        const cancelled = new URL(await cancelSignInWithoutBrowser(String(start.headers.location)));
        const denied = await get(cancelled.pathname + cancelled.search, { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${start.cookies._oidc_sidecar_csrf}` });
        t.equal(denied.status, 403);
      },
      [
        [m('auth_events_total'), { event: 'login_failed', method: 'session', result: 'unknown_state' }, 1],
        [m('auth_events_total'), { event: 'login_failed', method: 'session', result: 'access_denied' }, 1],
        [m('http_requests_total'), { route: 'callback', status: '400' }, 1],
        [m('http_requests_total'), { route: 'callback', status: '403' }, 1],
        [m('sessions_created_total'), {}, 0],
      ],
    );
    t.match(auditEvents(stack).at(-2), { event: 'login_failed', code: 'unknown_state', requestId: 'req-forged-state', reason: /state is unknown/ });
  });

  await t.test('requests without credentials, odd methods and bad paths: route names, never paths', async (t) => {
    const scraped = await expectMoves(
      t,
      stack,
      async () => {
        t.equal((await get('/api/items/42')).status, 401);
        t.equal((await request(stack.sidecar.url + '/x', { method: 'PROPFIND', headers: JSON_ACCEPT })).status, 401);
        t.equal((await get('/public/../admin')).status, 400);
        t.equal((await get('/oauth2/nothing-here')).status, 404);
      },
      [
        [m('http_requests_total'), { route: 'proxy', method: 'GET', status: '401' }, 1],
        [m('http_requests_total'), { route: 'proxy', method: 'other', status: '401' }, 1],
        [m('http_requests_total'), { route: 'invalid_path', status: '400' }, 1],
        [m('http_requests_total'), { route: 'not_found', status: '404' }, 1],
      ],
    );
    t.notMatch(scraped.text, /items\/42|nothing-here|PROPFIND|alice/, 'no path, method name or user in any label');
  });

  await t.test('sign-out, back-channel and front-channel logouts each end sessions', async (t) => {
    await expectMoves(
      t,
      stack,
      async () => {
        const bob = (await signIn(stack, { user: DEMO_USERS.bob })).cookieHeader;
        keepCookie(bob);
        t.equal((await get('/oauth2/sign_out', { ...NAVIGATION, cookie: bob })).status, 302);

        const backchannelJar = new CookieJar();
        keepCookie(await signInWithJar(stack, backchannelJar));
        const discovery = (await (await fetch(stack.idp.url('/.well-known/openid-configuration'))).json()) as { end_session_endpoint: string };
        await signOutWithoutBrowser(`${discovery.end_session_endpoint}?client_id=${CLIENT_ID}`, backchannelJar);

        const frontchannel = await signInWithJar(stack, new CookieJar());
        keepCookie(frontchannel);
        t.equal((await get('/echo', { cookie: frontchannel })).status, 200);
        const { sid } = JSON.parse(Buffer.from(String(stack.portal.requests.at(-1)!.headers.authorization).split('.')[1]!, 'base64url').toString()) as { sid: string };
        t.equal((await get(`/oauth2/frontchannel-logout?iss=${encodeURIComponent(stack.idp.issuer)}&sid=${encodeURIComponent(sid)}`)).status, 200);
        t.equal((await get('/echo', { cookie: frontchannel })).status, 401);
      },
      [
        [m('sessions_created_total'), {}, 3],
        [m('sessions_ended_total'), { reason: 'logout' }, 1],
        [m('sessions_ended_total'), { reason: 'backchannel' }, 1],
        [m('sessions_ended_total'), { reason: 'frontchannel' }, 1],
        [m('auth_events_total'), { event: 'logout', method: 'session' }, 1],
        [m('auth_events_total'), { event: 'logout', method: 'frontchannel' }, 1],
        [m('auth_events_total'), { event: 'backchannel_logout', method: 'backchannel', result: 'success' }, 1],
        [m('http_requests_total'), { route: 'sign_out', status: '302' }, 1],
        [m('http_requests_total'), { route: 'backchannel_logout', method: 'POST', status: '200' }, 1],
        [m('idp_request_duration_seconds_count'), { endpoint: 'jwks' }, 1],
      ],
    );
  });

  await t.test('a due token is refreshed, and the request id reaches the portal', async (t) => {
    offset += 11 * MINUTE;
    await expectMoves(
      t,
      stack,
      async () => {
        const answer = await get(`/echo?token=${QUERY_SECRET}`, { cookie: alice, 'x-request-id': 'req-refresh-1' });
        t.equal(answer.status, 200);
      },
      [
        [m('token_refresh_total'), { result: 'success' }, 1],
        [m('auth_events_total'), { event: 'token_refreshed', method: 'session', result: 'success' }, 1],
        [m('idp_request_duration_seconds_count'), { endpoint: 'token' }, 1],
        [m('upstream_request_duration_seconds_count'), {}, 1],
        [m('http_requests_total'), { route: 'proxy', method: 'GET', status: '200' }, 1],
      ],
    );
    const received = stack.portal.requests.at(-1)!.headers;
    t.equal(received['x-request-id'], 'req-refresh-1', 'the incoming request id is passed upstream');
    secrets.add(String(received['x-forwarded-access-token']));
    secrets.add(String(received.authorization).replace(/^Bearer /, ''));
    t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice', requestId: 'req-refresh-1' });
    const access = stack.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.log === 'access');
    t.match(access.at(-1), { method: 'GET', path: '/echo', route: 'proxy', status: 200, requestId: 'req-refresh-1', user: 'alice', durationMs: Number });
  });

  await t.test('a portal too slow is a timeout', async (t) => {
    await expectMoves(t, stack, async () => t.equal((await get('/slow?ms=3000', { cookie: alice })).status, 504), [
      [m('upstream_errors_total'), { reason: 'timeout' }, 1],
      [m('http_requests_total'), { route: 'proxy', status: '504' }, 1],
    ]);
  });

  await t.test('a refresh the provider refuses ends the session', async (t) => {
    const expiring = (await signIn(stack)).cookieHeader;
    keepCookie(expiring);
    offset += 11 * MINUTE;
    tokenRelay!.outage = 'invalid_grant';
    await expectMoves(t, stack, async () => t.equal((await get('/echo', { cookie: alice })).status, 401), [
      [m('token_refresh_total'), { result: 'failure' }, 1],
      [m('auth_events_total'), { event: 'refresh_failed', method: 'session', result: 'failure' }, 1],
      [m('sessions_ended_total'), { reason: 'refresh_failed' }, 1],
    ]);
    offset += 13 * HOUR;
    await expectMoves(t, stack, async () => t.equal((await get('/echo', { cookie: expiring })).status, 401), [
      [m('auth_events_total'), { event: 'session_expired', method: 'session', result: 'max_lifetime' }, 1],
      [m('sessions_ended_total'), { reason: 'expired' }, 1],
    ]);
  });

  await t.test('the portal down is a refused connection', async (t) => {
    await stack.portal.stop();
    await expectMoves(t, stack, async () => t.equal((await get('/public/app.js')).status, 502), [
      [m('upstream_errors_total'), { reason: 'refused' }, 1],
      [m('http_requests_total'), { route: 'public', status: '502' }, 1],
    ]);
  });

  const expectedEvents = [
    { event: 'login', user: 'alice', method: 'session' },
    { event: 'login_failed', code: 'unknown_state', reason: /state is unknown or expired/ },
    { event: 'login_failed', code: 'access_denied', reason: /identity provider answered access_denied/ },
    { event: 'login', user: 'bob' },
    { event: 'logout', user: 'bob', method: 'session', reason: 'the user signed out' },
    { event: 'login', user: 'alice' },
    { event: 'backchannel_logout', user: DEMO_USERS.alice.sub, method: 'backchannel', reason: '1 session(s) ended by the identity provider' },
    { event: 'login', user: 'alice' },
    { event: 'logout', method: 'frontchannel', reason: '1 session(s) ended by front-channel logout' },
    { event: 'token_refreshed', user: 'alice', requestId: 'req-refresh-1' },
    { event: 'login', user: 'alice' },
    { event: 'refresh_failed', user: 'alice', reason: /token refresh failed/ },
    { event: 'session_expired', user: 'alice', code: 'max_lifetime', reason: /maxLifetimeHours/ },
  ];

  await t.test('stdout and the Redis stream hold the same events, with their reasons', async (t) => {
    t.same(
      auditEvents(stack).map((entry) => entry.event),
      expectedEvents.map((entry) => entry.event),
    );
    t.match(auditEvents(stack), expectedEvents);
    const client = new Redis(redis.url);
    t.teardown(() => client.disconnect());
    const entries = await client.xrange('oidc-sidecar:authlog', '-', '+');
    const records = entries.map(([, fields]) => Object.fromEntries(fields.flatMap((_, i) => (i % 2 === 0 ? [[fields[i], fields[i + 1]]] : []))) as Record<string, string>);
    t.match(records, expectedEvents);
    t.same(
      records.map((record) => record.event),
      expectedEvents.map((entry) => entry.event),
    );
    for (const record of records) {
      t.ok(Date.parse(record.time!) >= startedAt.getTime() - 1000, 'each record has its time');
      t.ok(record.ip && record.requestId, 'ip and request id');
    }
    for (const line of entries.flat(2).concat(stack.logLines)) {
      for (const secret of secrets) if (line.includes(secret)) t.fail(`a secret is in: ${line.slice(0, 200)}`);
    }
  });

  await t.test('`oidc-sidecar audit` reads the stream, filtered, as a table or JSON lines', async (t) => {
    const file = join(
      t.testdir({
        'sidecar.yaml': toYaml({
          upstream: { url: stack.config.upstream.url },
          publicUrl: stack.config.publicUrl,
          provider: { issuerUrl: stack.idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
          session: { store: 'redis', secret: stack.config.session.secret },
          redis: { url: redis.url },
        }),
      }),
      'sidecar.yaml',
    );
    const run = async (...args: string[]) => {
      const io = testIo();
      const code = await main(['audit', '--config', file, ...args], io);
      for (const secret of secrets) if (io.stdout.text.includes(secret) || io.stderr.text.includes(secret)) t.fail(`a secret is in the output of audit ${args.join(' ')}`);
      return { code, stdout: io.stdout.text, stderr: io.stderr.text };
    };

    const bob = await run('--user', 'BOB');
    t.equal(bob.code, 0);
    const lines = bob.stdout.trimEnd().split('\n');
    t.match(lines[0], /^TIME\s+EVENT\s+USER\s+CLIENT\s+METHOD\s+IP\s+REASON$/);
    t.equal(lines.length, 3, 'a header and bob’s two events');
    t.match(lines[1], /^\d{4}-\d\d-\d\dT\S+Z\s+login\s+bob\s+-\s+session\s+\S+\s+-$/);
    t.match(lines[2], /logout\s+bob\s+-\s+session\s+\S+\s+the user signed out$/);

    const failures = await run('--event', 'login_failed', '--since', '2h', '--json');
    t.equal(failures.code, 0);
    const parsed = failures.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, string>);
    t.match(parsed, [{ event: 'login_failed', code: 'unknown_state' }, { event: 'login_failed', code: 'access_denied' }]);
    t.equal(parsed.length, 2);

    const newest = await run('--user', 'alice', '--limit', '2', '--json');
    t.same(
      newest.stdout.trimEnd().split('\n').map((line) => (JSON.parse(line) as Record<string, string>).event),
      ['refresh_failed', 'session_expired'],
      'the newest N, oldest first',
    );
    const before = await run('--until', new Date(startedAt.getTime() - 60_000).toISOString());
    t.same(before, { code: 0, stdout: 'no matching audit events\n', stderr: '' });
    t.match(await run('--event', 'signin'), { code: 2, stderr: /--event: "signin" is not an audit event \(login, login_failed/ });
    t.match(await run('--since', 'yesterday'), { code: 2, stderr: /--since: expected a duration ago/ });
  });
});

t.test('error pages: generic by default, with the precise reason when errors.detailed is on', async (t) => {
  for (const detailed of [false, true]) {
    await t.test(`errors.detailed: ${detailed}`, async (t) => {
      const stack = await startStack({ config: { errors: { detailed }, upstream: { timeoutSeconds: 0.5 } } });
      t.teardown(() => stack.stop());
      /** The text of the page's <main>, as a screen reader reads it. */
      const page = (answer: HttpAnswer) =>
        /<main>(.*)<\/main>/s
          .exec(answer.body)![1]!
          .replace(/<[^>]+>/g, ' ')
          .replace(/\s+/g, ' ')
          .trim();

      const forged = await request(stack.sidecar.url + '/oauth2/callback?code=abc&state=forged', { headers: { ...NAVIGATION, 'x-request-id': 'req-page-1' } });
      t.equal(forged.status, 400);
      t.match(forged.headers['content-type'], /^text\/html/);
      const reason = ' Reason: the state is unknown or expired';
      t.equal(
        page(forged),
        `Sign-in failed Sign-in failed. Please try again.${detailed ? reason : ''} Sign in again Request ID: req-page-1`,
      );
      t.match(forged.body, /<html lang="en">.*<title>Sign-in failed<\/title>.*<main><h1>Sign-in failed<\/h1>/);

      const start = await request(stack.sidecar.url + '/', { headers: NAVIGATION });
      const cancelled = new URL(await cancelSignInWithoutBrowser(String(start.headers.location)));
      const denied = await request(stack.sidecar.url + cancelled.pathname + cancelled.search, {
        headers: { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${start.cookies._oidc_sidecar_csrf}` },
      });
      t.equal(denied.status, 403);
      t.match(page(denied), /^Access denied You could not be signed in to this portal\./);
      t.equal(page(denied).includes('Reason: the identity provider answered access_denied'), detailed);

      const { cookieHeader } = await signIn(stack);
      const slow = await request(stack.sidecar.url + '/slow?ms=2000', { headers: { ...NAVIGATION, cookie: cookieHeader, 'x-request-id': 'req-page-2' } });
      t.equal(slow.status, 504);
      t.equal(page(slow), 'Portal too slow The portal took too long to answer. Please try again in a moment. Request ID: req-page-2');
      await stack.portal.stop();
      const down = await request(stack.sidecar.url + '/reports', { headers: { ...NAVIGATION, cookie: cookieHeader, 'x-request-id': 'req-page-3' } });
      t.equal(down.status, 502);
      t.equal(page(down), 'Portal unavailable The portal is not answering right now. Please try again in a moment. Request ID: req-page-3');
      const api = await request(stack.sidecar.url + '/api/reports', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
      t.equal(api.status, 502);
      t.match(JSON.parse(api.body), { error: 'bad_gateway' }, 'API clients get JSON');

      for (const answer of [forged, denied, slow, down]) {
        t.notMatch(answer.body, /\bat \w+ \(|node:internal|\.ts:\d+/, 'no stack trace');
        for (const leak of [CLIENT_SECRET, stack.config.session.secret, stack.portal.url, stack.idp.issuer]) t.notOk(answer.body.includes(leak), 'no configuration');
      }
    });
  }
});
