import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { request } from '../support/http.js';
import { startIdpRelay as startRelay, startStackWithTokenRelay, type IdpRelay as Relay } from '../support/idp-relay.js';
import { startRedis } from '../support/redis.js';
import { auditEvents, signIn, startStack } from '../support/stack.js';

t.test('provider.authorizationEndpoint and provider.tokenEndpoint override discovery', async (t) => {
  let relay: Relay | undefined;
  const stack = await startStack({
    config: async (idp) => {
      relay = await startRelay(idp.issuer);
      return {
        provider: { authorizationEndpoint: `${relay.url}/auth`, tokenEndpoint: `${relay.url}/token` },
      };
    },
  });
  t.teardown(async () => {
    await stack.stop();
    relay!.stop();
  });
  const start = await request(stack.sidecar.url + '/page', { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
  t.match(String(start.headers.location), new RegExp(`^${relay!.url}/auth\\?`), 'the browser goes to the configured authorization endpoint');
  const { cookieHeader } = await signIn(stack);
  t.ok(relay!.paths.includes('/token'), 'the code was exchanged at the configured token endpoint');
  const answer = await request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } });
  t.equal(answer.status, 200);
});

t.test('cookie type: "persistent" outlives the browser, "session" does not', async (t) => {
  for (const [type, expected] of [['persistent', /; Max-Age=43200/], ['session', /^(?!.*Max-Age)/]] as const) {
    const stack = await startStack({ config: { session: { cookie: { type } } } });
    const { setCookie } = await signIn(stack);
    await stack.stop();
    t.match(setCookie, expected, type);
    t.match(setCookie, /; HttpOnly; SameSite=Lax/, type);
  }
});

t.test('the session store stalls right after a refresh: the renewed session is saved once it is back, its rotated refresh token kept', async (t) => {
  const { stack, relay, admin, page, passTime, refreshAtTheProvider } = await signedInWithRotatingRefreshTokens(t);
  passTime(11 * 60_000);
  relay.delayMs = 1_000;
  const answer = page();
  await refreshAtTheProvider();
  await admin.call('CLIENT', 'PAUSE', '4000', 'WRITE');
  t.equal((await answer).status, 200, 'answered once the store took the renewed session …');
  t.ok(stack.logLines.some((line) => line.includes('saving the renewed session failed; trying again')), '… its first save having timed out');
  relay.delayMs = 0;
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
  passTime(11 * 60_000);
  t.equal((await page()).status, 200, 'the next refresh works: it used the rotated refresh token, which was saved');
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
  t.notOk(auditEvents(stack).some((event) => event.event === 'refresh_failed'));
});

t.test('the session store refuses the renewed session past every retry: 503, the loss logged, and the next refresh needs the rotated token it lost', async (t) => {
  const { stack, relay, admin, page, passTime, refreshAtTheProvider } = await signedInWithRotatingRefreshTokens(t);
  const portalRequests = stack.portal.requests.length;
  passTime(11 * 60_000);
  relay.delayMs = 1_000;
  const answer = page();
  await refreshAtTheProvider();
  // Every write of the session record now fails at once (as a Redis out of memory would refuse it).
  await admin.call('ACL', 'SETUSER', 'default', '-set');
  const refused = await answer;
  await admin.call('ACL', 'SETUSER', 'default', '+set');
  relay.delayMs = 0;
  t.equal(refused.status, 503, 'a store failure: try again later');
  t.equal(stack.portal.requests.length, portalRequests, 'the portal was not reached');
  const entries = stack.logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
  t.equal(entries.filter((entry) => entry.msg === 'saving the renewed session failed; trying again').length, 3, 'three more tries');
  t.match(entries.find((entry) => entry.level === 50), { msg: /^the renewed session could not be saved: its new refresh token is lost/, user: 'alice' });

  const next = await page();
  t.equal(next.status, 401, 'the stored refresh token was spent by the lost refresh: signed out, as the log line warned');
  t.match(auditEvents(stack).at(-1), { event: 'refresh_failed', user: 'alice' });
});

t.test('a refresh answered without an ID token keeps the one in hand', async (t) => {
  let offset = 0;
  const { stack, relay } = await startStackWithTokenRelay(t, { clock: () => Date.now() + offset, idp: { accessTokenTtlSeconds: 600 }, config: { identity: { passIdToken: true } } });
  const { cookieHeader } = await signIn(stack);
  const idTokenSent = async () => {
    t.equal((await request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } })).status, 200);
    return stack.portal.requests.at(-1)!.headers.authorization;
  };
  const signedIn = await idTokenSent();
  t.match(signedIn, /^Bearer ey/);
  relay.dropIdToken = true;
  offset += 11 * 60_000;
  t.equal(await idTokenSent(), signedIn, 'after the refresh, the portal still gets the ID token');
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
});

t.test('an outage of the token endpoint during a refresh is answered 503 and keeps the session', async (t) => {
  let offset = 0;
  const { stack, relay } = await startStackWithTokenRelay(t, { clock: () => Date.now() + offset, idp: { accessTokenTtlSeconds: 600 } });
  const { cookieHeader } = await signIn(stack);
  const page = () => request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } });
  offset += 11 * 60_000;
  for (const outage of ['503', 'drop'] as const) {
    relay.outage = outage;
    const answer = await page();
    t.equal(answer.status, 503, `the provider ${outage === '503' ? 'answering 503' : 'dropping the connection'}: try again soon`);
    t.match(JSON.parse(answer.body), { error: 'temporarily_unavailable' });
    t.equal(answer.headers['retry-after'], '5');
  }
  relay.outage = '503';
  relay.delayMs = 300;
  const together = await Promise.all([page(), page()]);
  t.same(together.map((answer) => answer.status), [503, 503], "the request that waited for the other one's refresh is answered 503 too, not signed out");
  relay.delayMs = 0;
  t.notOk(auditEvents(stack).some((event) => event.event === 'refresh_failed'), 'no session was ended');
  relay.outage = undefined;
  t.equal((await page()).status, 200, 'the provider back: the same session is refreshed and used');
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
});

/**
 * Alice signed in on a stack with Redis sessions, refresh tokens rotated at every use, access
 * tokens valid for 10 minutes, and the token endpoint behind a relay that can delay it; `admin`
 * talks to the same Redis, `passTime` moves the sidecar's clock, `refreshAtTheProvider` resolves
 * once a refresh (which holds the refresh lock) has reached the token endpoint.
 */
async function signedInWithRotatingRefreshTokens(t: Test) {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  let offset = 0;
  const { stack, relay } = await startStackWithTokenRelay(t, {
    clock: () => Date.now() + offset,
    idp: { accessTokenTtlSeconds: 600, rotateRefreshTokens: true },
    config: { session: { store: 'redis' }, redis: { url: redis.url } },
  });
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  const { cookieHeader } = await signIn(stack);
  const tokenRequests = () => relay.paths.filter((path) => path === '/token').length;
  let tokenRequestsSeen = tokenRequests();
  return {
    stack,
    relay,
    admin,
    page: () => request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } }),
    passTime: (ms: number) => void (offset += ms),
    async refreshAtTheProvider() {
      const deadline = Date.now() + 10_000;
      while (tokenRequests() === tokenRequestsSeen) {
        if (Date.now() > deadline) throw new Error('no refresh reached the token endpoint');
        await sleep(10);
      }
      tokenRequestsSeen = tokenRequests();
    },
  };
}
