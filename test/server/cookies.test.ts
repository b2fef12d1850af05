import t from 'tap';
import { readCookie, serializeCookie, withoutCookie } from '../../src/server/cookies.js';

t.test('reads exactly the named cookie', async (t) => {
  t.equal(readCookie('a=1; _oidc_sidecar=v1.x.y; b=2', '_oidc_sidecar'), 'v1.x.y');
  t.equal(readCookie('x_oidc_sidecar=evil; _oidc_sidecar=good', '_oidc_sidecar'), 'good');
  t.equal(readCookie('x_oidc_sidecar=evil', '_oidc_sidecar'), undefined);
  t.equal(readCookie('_oidc_sidecar=first;_oidc_sidecar=second', '_oidc_sidecar'), 'first');
  t.equal(readCookie(undefined, 'a'), undefined);
  t.equal(readCookie('', 'a'), undefined);
});

t.test('removes a cookie from a Cookie header', async (t) => {
  t.equal(withoutCookie('a=1; s=2; b=3', 's'), 'a=1; b=3');
  t.equal(withoutCookie('s=2', 's'), '');
});

t.test('serializes HttpOnly cookies with the configured attributes', async (t) => {
  t.equal(
    serializeCookie('s', 'v', { path: '/', secure: true, sameSite: 'lax', maxAgeSeconds: 60, domain: 'example.com' }),
    's=v; Path=/; HttpOnly; SameSite=Lax; Domain=example.com; Secure; Max-Age=60',
  );
  t.equal(serializeCookie('s', '', { path: '/', secure: false, sameSite: 'strict' }), 's=; Path=/; HttpOnly; SameSite=Strict');
});
