import t from 'tap';
import { newBindingValue, TRANSACTION_TTL_MS } from '../../src/oidc/transactions.js';
import { createRedisClient } from '../../src/session/redis-store.js';
import { CookieJar, cancelSignInWithoutBrowser, signInWithoutBrowser } from '../support/browserless.js';
import { startGraphStandIn, type GraphStandIn } from '../support/graph.js';
import { request } from '../support/http.js';
import { DEMO_USERS } from '../support/idp.js';
import { startStackWithTokenRelay } from '../support/idp-relay.js';
import { parseExposition } from '../support/metrics.js';
import { startRedis } from '../support/redis.js';
import { auditEvents, NAVIGATION, signIn, startStack, type Stack } from '../support/stack.js';

const JSON_ACCEPT = { accept: 'application/json' };

/** Starts a sign-in at `path` and returns the IdP URL, the binding cookie and the callback URL alice's sign-in yields. */
async function signInUpToCallback(stack: Stack, path = '/') {
  const start = await request(stack.sidecar.url + path, { headers: NAVIGATION });
  const binding = start.cookies[`${stack.config.session.cookie.name}_csrf`]!;
  const callback = new URL(await signInWithoutBrowser(String(start.headers.location), 'alice', 'alice-password'));
  return { start, binding, callbackPath: callback.pathname + callback.search };
}

function callbackRequest(stack: Stack, callbackPath: string, binding: string | undefined, baseUrl = stack.sidecar.url) {
  const headers: Record<string, string> = { ...NAVIGATION };
  if (binding !== undefined) headers.cookie = `${stack.config.session.cookie.name}_csrf=${binding}`;
  return request(baseUrl + callbackPath, { headers });
}

for (const storeKind of ['memory', 'redis'] as const) {
  t.test(`sign-in with the ${storeKind} session store`, async (t) => {
    let storeConfig = {};
    if (storeKind === 'redis') {
      const redis = await startRedis();
      t.teardown(() => redis.stop());
      storeConfig = { session: { store: 'redis' }, redis: { url: redis.url } };
    }
    const stack = await startStack({ config: storeConfig });
    t.teardown(() => stack.stop());

    t.test('an unauthenticated navigation goes straight to the provider, with PKCE, state and nonce', async (t) => {
      const answer = await request(stack.sidecar.url + '/reports?year=2026', { headers: NAVIGATION });
      t.equal(answer.status, 302);
      const location = new URL(String(answer.headers.location));
      t.equal(location.origin, stack.idp.issuer);
      t.equal(location.searchParams.get('code_challenge_method'), 'S256');
      t.ok(location.searchParams.get('code_challenge'));
      t.ok(location.searchParams.get('state'));
      t.ok(location.searchParams.get('nonce'));
      t.equal(location.searchParams.get('redirect_uri'), `${stack.config.publicUrl}/oauth2/callback`);
      t.match(String(answer.headers['set-cookie']), /_oidc_sidecar_csrf=[^;]+; Path=\/; HttpOnly; SameSite=Lax/);
    });

    t.test('a signed-in user lands on the page first asked for and the portal gets the identity headers', async (t) => {
      const { cookieHeader, location } = await signIn(stack, { path: '/reports/q3?year=2026' });
      t.equal(location, `${stack.config.publicUrl}/reports/q3?year=2026`);
      const page = await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: `${cookieHeader}; portal_cookie=1` } });
      t.equal(page.status, 200);
      const received = JSON.parse(page.body) as { headers: Record<string, string> };
      t.match(received.headers, {
        'x-forwarded-user': 'alice',
        'x-forwarded-email': 'alice@example.com',
        'x-forwarded-name': 'Alice Zo%C3%AB Example',
        'x-forwarded-groups': 'portal-users,admins',
        'x-forwarded-roles': 'Portal.Admin',
        'x-forwarded-subject': DEMO_USERS.alice.sub,
        'x-auth-method': 'session',
        cookie: 'portal_cookie=1',
      });
      t.equal(decodeURIComponent(received.headers['x-forwarded-name']!), 'Alice Zoë Example');
      t.match(auditEvents(stack), [{ event: 'login', user: 'alice', method: 'session' }]);
    });

    t.test('several tabs signing in at once all succeed', async (t) => {
      const first = await request(stack.sidecar.url + '/tab-one', { headers: NAVIGATION });
      const binding = first.cookies._oidc_sidecar_csrf!;
      const bindingCookie = { cookie: `_oidc_sidecar_csrf=${binding}` };
      const second = await request(stack.sidecar.url + '/tab-two', { headers: { ...NAVIGATION, ...bindingCookie } });
      t.same(second.cookies._oidc_sidecar_csrf, binding, 'the second tab keeps the browser binding');
      const jar = new CookieJar();
      const callbackOne = new URL(await signInWithoutBrowser(String(first.headers.location), 'alice', 'alice-password', jar));
      const callbackTwo = new URL(await signInWithoutBrowser(String(second.headers.location), 'alice', 'alice-password', jar));
      const [answerTwo, answerOne] = await Promise.all([
        callbackRequest(stack, callbackTwo.pathname + callbackTwo.search, binding),
        callbackRequest(stack, callbackOne.pathname + callbackOne.search, binding),
      ]);
      t.equal(answerOne.headers.location, `${stack.config.publicUrl}/tab-one`);
      t.equal(answerTwo.headers.location, `${stack.config.publicUrl}/tab-two`);
      t.ok(answerOne.cookies._oidc_sidecar && answerTwo.cookies._oidc_sidecar);
    });

    t.test('tabs that all start signing in before the first binding cookie is set all succeed', async (t) => {
      // Restored tabs: every first request without a binding cookie; the browser keeps the last one set.
      const [first, second] = await Promise.all([request(stack.sidecar.url + '/tab-one', { headers: NAVIGATION }), request(stack.sidecar.url + '/tab-two', { headers: NAVIGATION })]);
      const kept = second.cookies._oidc_sidecar_csrf!;
      t.not(first.cookies._oidc_sidecar_csrf, kept);
      const jar = new CookieJar();
      const callbackOne = new URL(await signInWithoutBrowser(String(first.headers.location), 'alice', 'alice-password', jar));
      const callbackTwo = new URL(await signInWithoutBrowser(String(second.headers.location), 'alice', 'alice-password', jar));
      const restarted = await callbackRequest(stack, callbackOne.pathname + callbackOne.search, kept);
      t.equal(restarted.status, 302, "the first tab's callback, bound to the binding the browser lost, starts again …");
      t.ok(String(restarted.headers.location).startsWith(stack.idp.issuer));
      const again = new URL(await signInWithoutBrowser(String(restarted.headers.location), 'alice', 'alice-password', jar));
      const answerOne = await callbackRequest(stack, again.pathname + again.search, kept);
      t.equal(answerOne.headers.location, `${stack.config.publicUrl}/tab-one`, '… and signs in, back on its page');
      const answerTwo = await callbackRequest(stack, callbackTwo.pathname + callbackTwo.search, kept);
      t.equal(answerTwo.headers.location, `${stack.config.publicUrl}/tab-two`);
      t.ok(answerOne.cookies._oidc_sidecar && answerTwo.cookies._oidc_sidecar);
      t.ok(stack.logLines.some((line) => line.includes('the sign-in starts again')), 'the restart is logged');

      // A tab whose callback comes after another tab signed the browser in goes straight to its page.
      const [third, fourth] = await Promise.all([request(stack.sidecar.url + '/tab-three', { headers: NAVIGATION }), request(stack.sidecar.url + '/tab-four', { headers: NAVIGATION })]);
      const keptNow = fourth.cookies._oidc_sidecar_csrf!;
      const callbackThree = new URL(await signInWithoutBrowser(String(third.headers.location), 'alice', 'alice-password', jar));
      const signedIn = `_oidc_sidecar=${answerTwo.cookies._oidc_sidecar}`;
      const straight = await request(stack.sidecar.url + callbackThree.pathname + callbackThree.search, { headers: { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${keptNow}; ${signedIn}` } });
      t.equal(straight.headers.location, `${stack.config.publicUrl}/tab-three`, 'signed in meanwhile: on to its page, no second sign-in');
      t.notOk(straight.cookies._oidc_sidecar, 'and no second session');

      const once = await signInUpToCallback(stack);
      const restartedOnce = await callbackRequest(stack, once.callbackPath, newBindingValue());
      const afterRestart = new URL(await signInWithoutBrowser(String(restartedOnce.headers.location), 'alice', 'alice-password', jar));
      const notAgain = await callbackRequest(stack, afterRestart.pathname + afterRestart.search, newBindingValue());
      t.equal(notAgain.status, 400, 'a restarted sign-in that finds yet another binding fails: no loop');
      t.match(auditEvents(stack).at(-1), { event: 'login_failed', code: 'foreign_state' });
    });

    t.test('a replayed callback creates no session', async (t) => {
      const { binding, callbackPath } = await signInUpToCallback(stack);
      const first = await callbackRequest(stack, callbackPath, binding);
      t.equal(first.status, 302);
      const replay = await callbackRequest(stack, callbackPath, binding);
      t.equal(replay.status, 400);
      t.match(replay.body, /Sign-in failed/);
      t.notOk(replay.cookies._oidc_sidecar, 'no session cookie');
      t.match(auditEvents(stack).at(-1), { event: 'login_failed', reason: /the state was already used/ });
    });

    t.test("a callback with another browser's state creates no session (login CSRF), and does not spoil that browser's sign-in", async (t) => {
      const { binding: ownBinding, callbackPath } = await signInUpToCallback(stack);
      for (const binding of [undefined, 'not-a-binding-the-sidecar-makes']) {
        const answer = await callbackRequest(stack, callbackPath, binding);
        t.equal(answer.status, 400);
        t.notOk(answer.cookies._oidc_sidecar);
      }
      t.match(auditEvents(stack).at(-2), { event: 'login_failed', reason: /issued to another browser/ });
      const withItsOwnBinding = await callbackRequest(stack, callbackPath, newBindingValue());
      t.equal(withItsOwnBinding.status, 302, 'a browser with a binding of its own …');
      t.ok(String(withItsOwnBinding.headers.location).startsWith(stack.idp.issuer), '… is sent to sign in itself');
      t.notOk(withItsOwnBinding.cookies._oidc_sidecar, 'not signed in with the code it brought');
      const own = await callbackRequest(stack, callbackPath, ownBinding);
      t.equal(own.status, 302, 'the browser that started it still signs in');
      t.ok(own.cookies._oidc_sidecar);
    });

    t.test('a forged state and a failed code exchange show an error page and create no session', async (t) => {
      const forged = await callbackRequest(stack, '/oauth2/callback?code=abc&state=forged', 'x');
      t.equal(forged.status, 400);
      const { binding, callbackPath } = await signInUpToCallback(stack);
      const badCode = callbackPath.replace(/code=[^&]+/, 'code=not-a-real-code');
      const exchange = await callbackRequest(stack, badCode, binding);
      t.equal(exchange.status, 400);
      t.notOk(exchange.cookies._oidc_sidecar);
      t.notMatch(exchange.body, /invalid_grant/, 'the generic page does not say why');
      t.match(auditEvents(stack).at(-1), { event: 'login_failed', reason: /code exchange failed: invalid_grant/ });
    });

    t.test('a provider error answer is an error page: 403 for access_denied', async (t) => {
      const start = await request(stack.sidecar.url + '/', { headers: NAVIGATION });
      const cancelled = new URL(await cancelSignInWithoutBrowser(String(start.headers.location)));
      t.equal(cancelled.searchParams.get('error'), 'access_denied');
      const answer = await callbackRequest(stack, cancelled.pathname + cancelled.search, start.cookies._oidc_sidecar_csrf);
      t.equal(answer.status, 403);
      t.match(answer.body, /Access denied/);
      t.notOk(answer.cookies._oidc_sidecar);
      const other = await callbackRequest(stack, '/oauth2/callback?error=server_error&state=x', undefined);
      t.equal(other.status, 400);
    });

    t.test('sign-out ends the session in the store: the old cookie no longer works', async (t) => {
      const { cookieHeader } = await signIn(stack);
      const out = await request(stack.sidecar.url + '/oauth2/sign_out', { headers: { ...NAVIGATION, cookie: cookieHeader } });
      t.equal(out.status, 302);
      const endSession = new URL(String(out.headers.location));
      t.equal(endSession.origin, stack.idp.issuer, 'then the provider signs the user out');
      t.equal(endSession.searchParams.get('post_logout_redirect_uri'), `${stack.config.publicUrl}/oauth2/sign_out`);
      t.ok(endSession.searchParams.get('id_token_hint'));
      t.match(String(out.headers['set-cookie']), /_oidc_sidecar=; .*Max-Age=0/);
      const reuse = await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
      t.equal(reuse.status, 401);
      const signedOut = await request(stack.sidecar.url + '/oauth2/sign_out', { headers: NAVIGATION });
      t.equal(signedOut.status, 200);
      t.match(signedOut.body, /You have signed out/);
      t.match(auditEvents(stack).at(-1), { event: 'logout', user: 'alice' });
    });

    t.test('sign-out asked by another site (a link, a form) is confirmed first: the session stays until then', async (t) => {
      const { cookieHeader } = await signIn(stack);
      const crossSite: Array<[string, string, Record<string, string>]> = [
        ['a link on another site', 'GET', { 'sec-fetch-site': 'cross-site' }],
        ['a link on a sibling subdomain', 'GET', { 'sec-fetch-site': 'same-site' }],
        ['a form on another site', 'POST', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }],
        ['a form, from a browser without Fetch Metadata', 'POST', { origin: 'https://evil.example' }],
        ['an opaque origin', 'POST', { origin: 'null' }],
        ['a link, from a browser without Fetch Metadata', 'GET', { referer: 'https://evil.example/page' }],
      ];
      for (const [name, method, headers] of crossSite) {
        const answer = await request(stack.sidecar.url + '/oauth2/sign_out', { method, headers: { ...NAVIGATION, ...headers, cookie: cookieHeader } });
        t.equal(answer.status, 200, name);
        t.match(answer.body, /<form method="post" action="\/oauth2\/sign_out"><button type="submit">Sign out<\/button><\/form>/, `${name}: a button to confirm`);
        t.notOk(answer.cookies._oidc_sidecar, `${name}: the cookie is not cleared`);
        t.match(String(answer.headers['content-security-policy']), /frame-ancestors 'self'/, `${name}: another site cannot frame the page`);
        t.equal((await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } })).status, 200, `${name}: still signed in`);
      }
      t.notMatch(auditEvents(stack).at(-1), { event: 'logout' }, 'no logout was recorded');
      const confirmed = await request(stack.sidecar.url + '/oauth2/sign_out', { method: 'POST', headers: { ...NAVIGATION, 'sec-fetch-site': 'same-origin', origin: stack.config.publicUrl, cookie: cookieHeader } });
      t.equal(confirmed.status, 302, 'the button on the confirmation page signs out');
      t.equal((await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } })).status, 401);
      const back = await request(stack.sidecar.url + '/oauth2/sign_out', { headers: { ...NAVIGATION, 'sec-fetch-site': 'cross-site', cookie: cookieHeader } });
      t.match(back.body, /You have signed out/, "the provider's redirect back (cross-site, no session left) shows the signed-out page");
      const ownPages: Array<[string, Record<string, string>]> = [
        ['typed in or bookmarked', { 'sec-fetch-site': 'none' }],
        ["a link on the portal's own page, from a browser without Fetch Metadata", { referer: `${stack.config.publicUrl}/reports` }],
      ];
      for (const [name, headers] of ownPages) {
        const session = await signIn(stack);
        const out = await request(stack.sidecar.url + '/oauth2/sign_out', { headers: { ...NAVIGATION, ...headers, cookie: session.cookieHeader } });
        t.equal(out.status, 302, `${name}: signed out at once`);
      }
    });
  });
}

t.test('two replicas share one Redis: sign in through one, use the session on the other', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url } } });
  t.teardown(() => stack.stop());
  const replica = await stack.addReplica();
  const { cookieHeader } = await signIn(stack, { path: '/from-a', callbackBaseUrl: replica.url });
  const onB = await request(replica.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
  t.equal(onB.status, 200);
  t.match(JSON.parse(onB.body), { headers: { 'x-forwarded-user': 'alice' } });
  const out = await request(replica.url + '/oauth2/sign_out', { headers: { ...NAVIGATION, cookie: cookieHeader } });
  t.equal(out.status, 302);
  const onA = await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
  t.equal(onA.status, 401, 'signed out everywhere');
});

t.test('with Redis, anonymous navigations write nothing; a finished sign-in marks its state used until it would expire', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url } } });
  t.teardown(() => stack.stop());
  const client = createRedisClient(stack.config.redis);
  t.teardown(() => client.disconnect());
  const keysBefore = await client.dbsize();
  for (let i = 0; i < 50; i++) t.equal((await request(`${stack.sidecar.url}/page-${i}`, { headers: NAVIGATION })).status, 302);
  t.equal(await client.dbsize(), keysBefore, 'fifty sign-ins started, not one key written');
  const { binding, callbackPath } = await signInUpToCallback(stack);
  t.equal((await callbackRequest(stack, callbackPath, binding)).status, 302);
  const used = await client.keys(`${stack.config.redis.keyPrefix}tx-used:*`);
  t.equal(used.length, 1, 'one used-state mark');
  const ttl = await client.pttl(used[0]!.slice(stack.config.redis.keyPrefix.length));
  t.ok(ttl > 0 && ttl <= TRANSACTION_TTL_MS, 'kept no longer than the state is good for');
});

t.test('the same callback twice at once (a reload, a retrying ingress): one code exchange, one session', async (t) => {
  const { stack, relay } = await startStackWithTokenRelay(t);
  const { binding, callbackPath } = await signInUpToCallback(stack);
  relay.delayMs = 300;
  const answers = await Promise.all([callbackRequest(stack, callbackPath, binding), callbackRequest(stack, callbackPath, binding)]);
  t.same(answers.map((answer) => answer.status).sort(), [302, 400]);
  t.equal(relay.paths.filter((path) => path === '/token').length, 1, 'the code went to the provider once');
  t.match(auditEvents(stack).find((event) => event.event === 'login_failed'), { code: 'unknown_state', reason: 'the state was already used, or its callback is being handled' });

  relay.delayMs = 0;
  relay.outage = '503';
  const next = await signInUpToCallback(stack);
  t.equal((await callbackRequest(stack, next.callbackPath, next.binding)).status, 400, 'the provider down: the exchange failed …');
  relay.outage = undefined;
  const retried = await callbackRequest(stack, next.callbackPath, next.binding);
  t.equal(retried.status, 302, '… and the same callback, tried again, signs in');
  t.ok(retried.cookies._oidc_sidecar);
});

t.test('detailed error pages add the precise reason', async (t) => {
  const stack = await startStack({ config: { errors: { detailed: true } } });
  t.teardown(() => stack.stop());
  const answer = await callbackRequest(stack, '/oauth2/callback?code=abc&state=forged', 'x');
  t.equal(answer.status, 400);
  t.match(answer.body, /the state is unknown or expired/);
  t.match(answer.body, /Request ID: <code>[0-9a-f-]{36}<\/code>/);
});

t.test('users outside the allowed groups are refused at sign-in', async (t) => {
  const stack = await startStack({ config: { authorization: { allowedGroups: ['admins'] } } });
  t.teardown(() => stack.stop());
  await t.rejects(signIn(stack, { user: DEMO_USERS.bob }), /callback answered 403/);
  const alice = await signIn(stack, { user: DEMO_USERS.alice });
  t.ok(alice.cookie);
  t.match(auditEvents(stack), [{ event: 'login_failed', user: 'bob', code: 'not_allowed', reason: /allowedGroups/ }, { event: 'login', user: 'alice' }]);
});

t.test('a user taken out of the allowed groups loses access at the next token refresh', async (t) => {
  let offset = 0;
  const alice = { ...DEMO_USERS.alice, groups: [...DEMO_USERS.alice.groups] };
  const stack = await startStack({ clock: () => Date.now() + offset, idp: { accessTokenTtlSeconds: 600, users: [alice, DEMO_USERS.bob] }, config: { authorization: { allowedGroups: ['admins'] } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack, { user: alice });
  const status = async () => (await request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } })).status;
  t.equal(await status(), 200);
  alice.groups = ['portal-users'];
  t.equal(await status(), 200, 'until the tokens are due, the session stands');
  offset += 11 * 60_000;
  t.equal(await status(), 401, 'the refresh brought claims the rules refuse: the session ended');
  offset = 0;
  t.equal(await status(), 401, 'and stays ended');
  t.match(auditEvents(stack).at(-1), {
    event: 'refresh_failed',
    user: 'alice',
    code: 'not_allowed',
    reason: 'the renewed claims no longer pass the authorization rules: the user is in none of authorization.allowedGroups',
  });
});

t.test('Azure AD: with provider.azure.allowedTenants, only users of those tenants sign in', async (t) => {
  const contoso = '0b5e2f64-3c1d-4f7a-9e8b-6a2d1c0f4e31';
  const fabrikam = '7d1c9a20-5e4b-4b3f-8c2a-1f0e9d8c7b6a';
  const stack = await startStack({
    idp: { issuerPath: `/${contoso}/v2.0`, users: [{ ...DEMO_USERS.alice, tid: contoso }, { ...DEMO_USERS.bob, tid: fabrikam }] },
    config: async (idp) => ({
      provider: { type: 'azure', issuerUrl: undefined, azure: { tenant: contoso, authorityHost: new URL(idp.issuer).origin, allowedTenants: [contoso.toUpperCase()] } },
    }),
  });
  t.teardown(() => stack.stop());
  await t.rejects(signIn(stack, { user: DEMO_USERS.bob }), /callback answered 403/);
  const alice = await signIn(stack, { user: DEMO_USERS.alice, path: '/reports' });
  t.equal(alice.location, `${stack.config.publicUrl}/reports`);
  const page = await request(stack.sidecar.url + '/reports', { headers: { ...NAVIGATION, cookie: alice.cookieHeader } });
  t.equal(page.status, 200);
  t.equal(stack.portal.requests.at(-1)?.headers['x-forwarded-user'], 'alice');
  t.match(auditEvents(stack), [
    { event: 'login_failed', user: 'bob', code: 'not_allowed', reason: "the user's tenant (tid) is not in provider.azure.allowedTenants" },
    { event: 'login', user: 'alice' },
  ]);
});

t.test('Azure AD group overage: a user in too many groups for a token gets them from Microsoft Graph', async (t) => {
  const tenant = '0b5e2f64-3c1d-4f7a-9e8b-6a2d1c0f4e31';
  let offset = 0;
  let graph: GraphStandIn | undefined;
  const stack = await startStack({
    clock: () => Date.now() + offset,
    idp: { issuerPath: `/${tenant}/v2.0`, accessTokenTtlSeconds: 600, users: [{ ...DEMO_USERS.alice, groupOverage: true }, { ...DEMO_USERS.bob, groupOverage: true }] },
    config: async (idp) => {
      graph = await startGraphStandIn(idp);
      return {
        provider: { type: 'azure', issuerUrl: undefined, azure: { tenant, authorityHost: new URL(idp.issuer).origin, graphUrl: graph.url } },
        authorization: { allowedGroups: ['admins'] },
      };
    },
  });
  t.teardown(async () => {
    await stack.stop();
    await graph!.stop();
  });
  const groupsReceived = async (cookieHeader: string) => {
    const answer = await request(stack.sidecar.url + '/', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(answer.status, 200);
    return stack.portal.requests.at(-1)?.headers['x-forwarded-groups'];
  };
  const alice = await signIn(stack, { user: DEMO_USERS.alice });
  t.equal(graph!.calls, 1, 'one call to Graph at sign-in');
  t.equal(await groupsReceived(alice.cookieHeader), 'portal-users,admins', 'the groups Graph listed');
  await t.rejects(signIn(stack, { user: DEMO_USERS.bob }), /callback answered 403/, 'bob, in none of the allowed groups per Graph, is refused');
  const scrape = parseExposition((await request(stack.sidecar.metricsUrl + '/metrics')).body);
  t.equal(scrape.value('oidc_sidecar_idp_request_duration_seconds_count', { endpoint: 'graph' }), 2, 'Graph requests are timed');

  graph!.available = false;
  offset += 11 * 60_000;
  t.equal(await groupsReceived(alice.cookieHeader), 'portal-users,admins', 'a refresh while Graph is down keeps the groups read before');
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
  t.equal(graph!.calls, 3, 'the refresh asked Graph again');
  await t.rejects(signIn(stack, { user: DEMO_USERS.alice }), /callback answered 403/, 'with Graph down, a new sign-in has no groups: the group rule fails closed');
  const warnings = stack.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === "group overage: the user's groups could not be read from Microsoft Graph");
  t.equal(warnings.length, 2);
  t.match(warnings[0], { level: 40, subject: DEMO_USERS.alice.sub, err: { message: 'Microsoft Graph answered 503 to getMemberObjects' } });
  t.notOk(stack.logLines.join('\n').includes(alice.cookie), 'no cookie in the log');
});

t.test('users outside the allowed e-mail domains are refused at sign-in', async (t) => {
  // Anyone can claim an address the provider has not verified.
  const eve = { ...DEMO_USERS.bob, sub: 'e7e00000-0000-4000-8000-000000000001', username: 'eve', password: 'eve-password', email: 'ceo@example.com', emailVerified: false };
  const stack = await startStack({ idp: { users: [DEMO_USERS.alice, DEMO_USERS.bob, eve] }, config: { authorization: { allowedEmailDomains: ['EXAMPLE.com'] } } });
  t.teardown(() => stack.stop());
  await t.rejects(signIn(stack, { user: DEMO_USERS.bob }), /callback answered 403/, 'bob@example.org');
  await t.rejects(signIn(stack, { user: eve }), /callback answered 403/, 'ceo@example.com, not verified');
  t.match(auditEvents(stack).at(-1), { event: 'login_failed', user: 'eve', code: 'not_allowed', reason: /e-mail address is not verified/ });
  t.ok((await signIn(stack, { user: DEMO_USERS.alice })).cookie, 'alice@example.com, domain matched without regard to case');
});

t.test('an e-mail address the provider has not verified names nobody: not in the audit log, not in X-Forwarded-User or -Email', async (t) => {
  // Without the profile scope there is no preferred_username: the e-mail would be next in line.
  const eve = { ...DEMO_USERS.bob, sub: 'e7e00000-0000-4000-8000-000000000002', username: 'eve', password: 'eve-password', email: 'ceo@example.com', emailVerified: false };
  const stack = await startStack({ idp: { users: [eve] }, config: { provider: { scopes: ['openid', 'email'] } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack, { user: eve });
  t.match(auditEvents(stack).at(-1), { event: 'login', user: eve.sub });
  const portal = JSON.parse((await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } })).body) as { headers: Record<string, string> };
  t.equal(portal.headers['x-forwarded-user'], eve.sub);
  t.notOk(portal.headers['x-forwarded-email']);
  t.notOk(stack.logLines.join('\n').includes('ceo@example.com'), 'the address is in no log line either');
});

t.test('sign-out without provider logout goes straight to the logoff page; POST works too', async (t) => {
  const stack = await startStack({ config: { logout: { idpLogout: false, redirectUrl: 'https://intranet.example.com/logged-off' } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack);
  const out = await request(stack.sidecar.url + '/oauth2/sign_out', { method: 'POST', headers: { cookie: cookieHeader } });
  t.equal(out.status, 302);
  t.equal(out.headers.location, 'https://intranet.example.com/logged-off', 'no hop through the provider');
  t.equal((await request(stack.sidecar.url + '/echo', { headers: { ...JSON_ACCEPT, cookie: cookieHeader } })).status, 401);
  const again = await request(stack.sidecar.url + '/oauth2/sign_out', { headers: NAVIGATION });
  t.equal(again.headers.location, 'https://intranet.example.com/logged-off', 'without a session: the logoff page as well');
});
