import t from 'tap';
import { readCookie, serializeCookie, withoutCookies } from '../../src/server/cookies.js';

t.test('reads exactly the named cookie', async (t) => {
  t.equal(readCookie('a=1; _oidc_sidecar=v1.x.y; b=2', '_oidc_sidecar'), 'v1.x.y');
  t.equal(readCookie('x_oidc_sidecar=evil; _oidc_sidecar=good', '_oidc_sidecar'), 'good');
  t.equal(readCookie('x_oidc_sidecar=evil', '_oidc_sidecar'), undefined);
  t.equal(readCookie('_oidc_sidecar=first;_oidc_sidecar=second', '_oidc_sidecar'), 'first');
  t.equal(readCookie(undefined, 'a'), undefined);
  t.equal(readCookie('', 'a'), undefined);
});

t.test("removes the sidecar's cookies from a Cookie header, and only those", async (t) => {
  t.equal(withoutCookies('a=1; s=2; b=3', ['s']), 'a=1; b=3');
  t.equal(withoutCookies('s=2', ['s', 's_csrf']), '');
  t.equal(withoutCookies('s_csrf=1;s=2;xs=3; s=4', ['s', 's_csrf']), 'xs=3');
  t.equal(withoutCookies(' a=1 ;; flag ; s=2', ['s']), 'a=1; flag');
});

t.test('serializes HttpOnly cookies with the configured attributes', async (t) => {
  t.equal(
    serializeCookie('s', 'v', { path: '/', secure: true, sameSite: 'lax', maxAgeSeconds: 60, domain: 'example.com' }),
    's=v; Path=/; HttpOnly; SameSite=Lax; Domain=example.com; Secure; Max-Age=60',
  );
  t.equal(serializeCookie('s', '', { path: '/', secure: false, sameSite: 'strict' }), 's=; Path=/; HttpOnly; SameSite=Strict');
});
