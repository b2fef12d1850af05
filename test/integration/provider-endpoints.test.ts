import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import t from 'tap';
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
  const redis = await startRedis();
  let offset = 0;
  let relay: Relay | undefined;
  const stack = await startStack({
    clock: () => Date.now() + offset,
    idp: { accessTokenTtlSeconds: 600, rotateRefreshTokens: true },
    config: async (idp) => {
      relay = await startRelay(idp.issuer);
      return { session: { store: 'redis' }, redis: { url: redis.url }, provider: { tokenEndpoint: `${relay.url}/token` } };
    },
  });
  const admin = new Redis(redis.url);
  t.teardown(async () => {
    admin.disconnect();
    await stack.stop();
    relay!.stop();
    await redis.stop();
  });
  const { cookieHeader } = await signIn(stack);
  const page = () => request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } });
  offset += 11 * 60_000;
  relay!.delayMs = 300;
  const answer = page();
  await sleep(150); // the refresh lock is taken and the refresh is at the provider
  await admin.call('CLIENT', 'PAUSE', '3000', 'WRITE');
  t.equal((await answer).status, 200, 'answered once the store took the renewed session (its first save timed out)');
  relay!.delayMs = 0;
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
  offset += 11 * 60_000;
  t.equal((await page()).status, 200, 'the next refresh works: it used the rotated refresh token, which was saved');
  t.match(auditEvents(stack).at(-1), { event: 'token_refreshed', user: 'alice' });
  t.notOk(auditEvents(stack).some((event) => event.event === 'refresh_failed'));
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
