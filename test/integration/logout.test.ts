import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import t from 'tap';
import { CookieJar, signInWithoutBrowser, signOutWithoutBrowser } from '../support/browserless.js';
import { request } from '../support/http.js';
import { DEMO_USERS } from '../support/idp.js';
import { startRedis } from '../support/redis.js';
import { auditEvents, CLIENT_ID, CLIENT_SECRET, NAVIGATION, signIn, startStack, type Stack } from '../support/stack.js';

const JSON_ACCEPT = { accept: 'application/json' };

/** Signs alice in with an IdP session kept in `jar`; returns the sidecar cookie header and the ID token's sid. */
async function signInKeepingIdpSession(stack: Stack, jar: CookieJar, baseUrl = stack.sidecar.url) {
  const start = await request(baseUrl + '/', { headers: NAVIGATION });
  const callback = new URL(await signInWithoutBrowser(String(start.headers.location), 'alice', 'alice-password', jar));
  const answer = await request(baseUrl + callback.pathname + callback.search, {
    headers: { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${start.cookies._oidc_sidecar_csrf}` },
  });
  return `_oidc_sidecar=${answer.cookies._oidc_sidecar}`;
}

const status = async (url: string, cookie: string) => (await request(url + '/echo', { headers: { ...JSON_ACCEPT, cookie } })).status;

t.test('back-channel logout from the provider ends the session on every replica', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ backchannelLogout: true, config: { session: { store: 'redis' }, redis: { url: redis.url } } });
  t.teardown(() => stack.stop());
  const replica = await stack.addReplica();
  const jar = new CookieJar();
  const cookie = await signInKeepingIdpSession(stack, jar);
  t.equal(await status(replica.url, cookie), 200);

  const discovery = (await (await fetch(stack.idp.url('/.well-known/openid-configuration'))).json()) as { end_session_endpoint: string };
  await signOutWithoutBrowser(`${discovery.end_session_endpoint}?client_id=${CLIENT_ID}`, jar);
  t.equal(await status(stack.sidecar.url, cookie), 401, 'ended on the replica that received the logout token');
  t.equal(await status(replica.url, cookie), 401, 'ended on the other replica');
  t.match(auditEvents(stack).at(-1), { event: 'backchannel_logout', method: 'backchannel', reason: '1 session(s) ended by the identity provider' });
});

t.test("back-channel logout works with a provider whose clock is ahead of the sidecar's (tolerance 30 s)", async (t) => {
  const stack = await startStack({ backchannelLogout: true, clock: () => Date.now() - 20_000 });
  t.teardown(() => stack.stop());
  const jar = new CookieJar();
  const cookie = await signInKeepingIdpSession(stack, jar);
  t.equal(await status(stack.sidecar.url, cookie), 200);
  const discovery = (await (await fetch(stack.idp.url('/.well-known/openid-configuration'))).json()) as { end_session_endpoint: string };
  await signOutWithoutBrowser(`${discovery.end_session_endpoint}?client_id=${CLIENT_ID}`, jar);
  t.equal(await status(stack.sidecar.url, cookie), 401, 'the logout token, issued "20 s in the future", was taken');
  t.match(auditEvents(stack).at(-1), { event: 'backchannel_logout', reason: '1 session(s) ended by the identity provider' });
});

t.test('a back-channel logout token naming only the user (sub, no sid) ends every session of that user', async (t) => {
  const logoutTokens: string[] = [];
  const stack = await startStack({
    backchannelLogout: true,
    idp: {
      // Records what the IdP posts to the sidecar, then delivers it.
      fetch: async (input, init) => {
        if (init?.body instanceof URLSearchParams) logoutTokens.push(init.body.get('logout_token') ?? '');
        return fetch(input, init);
      },
    },
  });
  t.teardown(() => stack.stop());
  // Two sessions of alice from two IdP sessions (two sids), and one of bob.
  const alice1 = (await signIn(stack)).cookieHeader;
  const alice2 = (await signIn(stack)).cookieHeader;
  const bob = (await signIn(stack, { user: DEMO_USERS.bob })).cookieHeader;
  for (const cookie of [alice1, alice2, bob]) t.equal(await status(stack.sidecar.url, cookie), 200);

  const client = await stack.idp.provider.Client.find(CLIENT_ID);
  await client!.backchannelLogout(DEMO_USERS.alice.sub); // oidc-provider rejects unless the sidecar answers 200
  t.equal(logoutTokens.length, 1);
  const claims = decodeJwt(logoutTokens[0]!);
  t.equal(claims.sub, DEMO_USERS.alice.sub, 'the token names the user');
  t.notOk('sid' in claims, 'and no IdP session');

  t.equal(await status(stack.sidecar.url, alice1), 401, "alice's first session ended");
  t.equal(await status(stack.sidecar.url, alice2), 401, "alice's second session ended");
  t.equal(await status(stack.sidecar.url, bob), 200, "bob's session lives on");
  t.match(auditEvents(stack).at(-1), { event: 'backchannel_logout', user: DEMO_USERS.alice.sub, reason: '2 session(s) ended by the identity provider' });
});

t.test('a forged, malformed or replayed logout token ends nothing', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.stop());
  const jar = new CookieJar();
  const cookie = await signInKeepingIdpSession(stack, jar);
  const forger = await generateKeyPair('RS256');
  const forged = await new SignJWT({ events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sub: 'x', jti: 'j1' })
    .setProtectedHeader({ alg: 'RS256', kid: 'forged' })
    .setIssuer(stack.idp.issuer)
    .setAudience(CLIENT_ID)
    .setIssuedAt()
    .sign(forger.privateKey);
  const post = (body: string, contentType = 'application/x-www-form-urlencoded') =>
    request(stack.sidecar.url + '/oauth2/backchannel-logout', { method: 'POST', headers: { 'content-type': contentType }, body });
  for (const body of [`logout_token=${forged}`, 'logout_token=not.a.jwt', 'logout_token=']) {
    const answer = await post(body);
    t.equal(answer.status, 400, body.slice(0, 30));
    t.match(JSON.parse(answer.body), { error: 'invalid_request' });
  }
  t.equal((await post('{}', 'application/json')).status, 415);
  t.equal((await post('logout_token=' + 'a'.repeat(70_000))).status, 413);
  t.equal(await status(stack.sidecar.url, cookie), 200, 'the session lives on');
  t.match(auditEvents(stack).at(-1), { event: 'backchannel_logout', reason: /refused/ });
});

t.test('front-channel logout ends the sessions of the IdP session it names', async (t) => {
  const stack = await startStack({ config: { identity: { passIdToken: true } } });
  t.teardown(() => stack.stop());
  const cookie = await signInKeepingIdpSession(stack, new CookieJar());
  t.equal(await status(stack.sidecar.url, cookie), 200);
  const sid = sidOfIdToken(stack.portal.requests.at(-1)!.headers.authorization);
  const wrongIssuer = await request(stack.sidecar.url + `/oauth2/frontchannel-logout?iss=https%3A%2F%2Fevil.example&sid=whatever`);
  t.equal(wrongIssuer.status, 200);
  t.equal(await status(stack.sidecar.url, cookie), 200);
  const tooLong = await request(stack.sidecar.url + `/oauth2/frontchannel-logout?sid=${'x'.repeat(300)}`);
  t.equal(tooLong.status, 200, 'an oversized sid is ignored');
  t.equal(await status(stack.sidecar.url, cookie), 200);
  // Azure AD sends the sid alone, without iss.
  for (let i = 0; i < 30; i++) t.equal((await request(stack.sidecar.url + `/oauth2/frontchannel-logout?sid=made-up-${i}`)).status, 200);
  const frontchannelLogouts = () => auditEvents(stack).filter((event) => event.event === 'logout' && event.method === 'frontchannel');
  t.same(frontchannelLogouts(), [], 'a sid that ends nothing is no audit event (anyone can send one)');
  const answer = await request(stack.sidecar.url + `/oauth2/frontchannel-logout?sid=${encodeURIComponent(sid)}`);
  t.equal(answer.status, 200);
  t.equal(await status(stack.sidecar.url, cookie), 401);
  t.match(frontchannelLogouts(), [{ reason: '1 session(s) ended by front-channel logout' }]);
});

t.test('sign-out revokes the tokens at the provider (logout.revokeTokens)', async (t) => {
  const stack = await startStack({ config: { identity: { passAccessToken: true }, logout: { idpLogout: false } } });
  t.teardown(() => stack.stop());
  const cookie = await signInKeepingIdpSession(stack, new CookieJar());
  t.equal(await status(stack.sidecar.url, cookie), 200);
  const accessToken = String(stack.portal.requests.at(-1)!.headers['x-forwarded-access-token']);
  const active = () => introspect(stack, accessToken);
  t.equal(await active(), true);
  await request(stack.sidecar.url + '/oauth2/sign_out', { method: 'POST', headers: { cookie } });
  const deadline = Date.now() + 3000;
  while ((await active()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(await active(), false, 'the access token is no longer active at the provider');
});

/** Whether the IdP still considers `token` active (RFC 7662 introspection with the sidecar's client). */
async function introspect(stack: Stack, token: string): Promise<boolean> {
  const answer = await fetch(stack.idp.url('/token/introspection'), {
    method: 'POST',
    headers: { authorization: 'Basic ' + Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64'), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  return ((await answer.json()) as { active: boolean }).active;
}

/** The `sid` of the ID token the portal received (identity.passIdToken). */
function sidOfIdToken(authorization: string | undefined): string {
  const payload = decodeJwt(String(authorization).replace(/^Bearer /, ''));
  if (typeof payload.sid !== 'string') throw new Error('the ID token has no sid');
  return payload.sid;
}
