import t from 'tap';
import { request } from '../support/http.js';
import { NAVIGATION, signIn, startStack } from '../support/stack.js';

const JSON_ACCEPT = { accept: 'application/json' };

t.test('routes.prefix moves the own endpoints; the callback stays at provider.redirectPath', async (t) => {
  const stack = await startStack({ config: { routes: { prefix: '/auth' } } });
  t.teardown(() => stack.stop());
  const url = (path: string) => stack.sidecar.url + path;
  const lastPortalRequest = () => stack.portal.requests.at(-1)!;

  // The whole sign-in works: the IdP returns to provider.redirectPath (default /oauth2/callback,
  // documented to be the callback whatever the prefix).
  const { cookieHeader, location } = await signIn(stack, { path: '/page' });
  t.equal(location, url('/page'), 'the callback sends the browser back where it started');

  t.test('the own endpoints answer under the new prefix', async (t) => {
    const info = await request(url('/auth/userinfo'), { headers: { cookie: cookieHeader } });
    t.equal(info.status, 200);
    t.match(JSON.parse(info.body), { user: 'alice', email: 'alice@example.com' });
    t.equal((await request(url('/auth/userinfo'), { headers: NAVIGATION })).status, 401, 'no session, no redirect');
    const auth = await request(url('/auth/auth'), { headers: { cookie: cookieHeader } });
    t.equal(auth.status, 202);
    t.equal(auth.headers['x-forwarded-user'], 'alice');
    const start = await request(url('/auth/start?rd=%2Freports'), { headers: NAVIGATION });
    t.equal(start.status, 302);
    const authorization = new URL(String(start.headers.location));
    t.equal(authorization.origin, stack.idp.issuer, '/auth/start sends the browser to the IdP');
    t.equal(authorization.searchParams.get('redirect_uri'), url('/oauth2/callback'), 'the redirect URI is provider.redirectPath');
    t.equal((await request(url('/auth/nothing'), { headers: JSON_ACCEPT })).status, 404, 'unknown paths under the prefix are the sidecar\'s');
    t.equal((await request(url('/auth/userinfo'), { method: 'DELETE' })).status, 405);
    t.equal((await request(url('/auth/callback'), { headers: JSON_ACCEPT })).status, 404, 'the callback is not moved under the prefix');
  });

  t.test('the old /oauth2 paths are ordinary portal paths', async (t) => {
    for (const path of ['/oauth2/userinfo', '/oauth2/auth', '/oauth2/start', '/oauth2/sign_out', '/oauth2/nothing']) {
      const before = stack.portal.requests.length;
      const signedIn = await request(url(path), { headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
      t.equal(signedIn.status, 200, `${path}: proxied for a signed-in user`);
      t.equal(stack.portal.requests.length, before + 1, `${path} reached the portal`);
      t.equal(lastPortalRequest().url, path);
      t.equal(lastPortalRequest().headers['x-forwarded-user'], 'alice', `${path}: with the identity`);
      const anonymous = await request(url(path), { headers: NAVIGATION });
      t.equal(anonymous.status, 302, `${path}: an anonymous navigation signs in, like any path`);
      t.equal(new URL(String(anonymous.headers.location)).origin, stack.idp.issuer, path);
      t.equal((await request(url(path), { headers: JSON_ACCEPT })).status, 401, `${path}: an anonymous API call gets 401`);
    }
    const post = await request(url('/oauth2/sign_out'), { method: 'POST', headers: { ...JSON_ACCEPT, cookie: cookieHeader } });
    t.equal(post.status, 200, 'POST /oauth2/sign_out is proxied');
    t.equal(lastPortalRequest().method, 'POST');
    t.equal((await request(url('/auth/userinfo'), { headers: { cookie: cookieHeader } })).status, 200, 'and does not sign out');
  });

  t.test('sign-out happens under the new prefix', async (t) => {
    const answer = await request(url('/auth/sign_out'), { method: 'POST', headers: { cookie: cookieHeader } });
    t.equal(answer.status, 302);
    const endSession = new URL(String(answer.headers.location));
    t.equal(endSession.origin, stack.idp.issuer, 'on to the IdP\'s end-session endpoint');
    t.equal(endSession.searchParams.get('post_logout_redirect_uri'), url('/auth/sign_out'), 'which returns to the new prefix');
    t.match(answer.headers['set-cookie'], [/^_oidc_sidecar=; .*Max-Age=0/]);
    t.equal((await request(url('/auth/userinfo'), { headers: { cookie: cookieHeader } })).status, 401, 'the old cookie no longer works');
    const signedOut = await request(url('/auth/sign_out'), { headers: NAVIGATION });
    t.equal(signedOut.status, 200);
    t.match(signedOut.body, /signed out/i);
  });
});

t.test('session.cookie.domain is set on the session cookie and on its deletion', async (t) => {
  // The stack's publicUrl is on 127.0.0.1: the only Domain that covers it is that address itself.
  const stack = await startStack({ config: { session: { cookie: { domain: '127.0.0.1' } } } });
  t.teardown(() => stack.stop());
  const url = (path: string) => stack.sidecar.url + path;
  const { cookieHeader, setCookie } = await signIn(stack);
  t.match(setCookie, /; Domain=127\.0\.0\.1(;|$)/, 'the session cookie carries the Domain attribute');
  t.match(setCookie, /; Path=\/(;|$)/);
  t.equal((await request(url('/oauth2/userinfo'), { headers: { cookie: cookieHeader } })).status, 200);

  const answer = await request(url('/oauth2/sign_out'), { method: 'POST', headers: { cookie: cookieHeader } });
  t.equal(answer.status, 302);
  const clearing = (answer.headers['set-cookie'] ?? []).findLast((header) => header.startsWith('_oidc_sidecar='));
  t.ok(clearing, 'sign-out deletes the session cookie');
  t.match(answer.headers['set-cookie'], [/^_oidc_sidecar=; Path=\/; HttpOnly; SameSite=Lax; Max-Age=0$/], 'and a host-only one left from before the domain was set');
  t.match(clearing, /^_oidc_sidecar=;/);
  t.match(clearing, /; Max-Age=0(;|$)/);
  t.match(clearing, /; Domain=127\.0\.0\.1(;|$)/, 'with the same Domain, or browsers would keep it');
  t.match(clearing, /; Path=\/(;|$)/, 'and the same Path');
  t.equal((await request(url('/oauth2/userinfo'), { headers: { cookie: cookieHeader } })).status, 401, 'the old cookie no longer works');

  // A stale cookie (session already gone) is deleted the same way.
  const stale = await request(url('/oauth2/sign_out'), { headers: { ...NAVIGATION, cookie: cookieHeader } });
  t.equal(stale.status, 200);
  const staleClearing = (stale.headers['set-cookie'] ?? []).findLast((header) => header.startsWith('_oidc_sidecar='));
  t.match(staleClearing, /; Domain=127\.0\.0\.1(;|$)/);
  t.match(staleClearing, /; Max-Age=0(;|$)/);
});
