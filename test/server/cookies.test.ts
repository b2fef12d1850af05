import type { IncomingMessage } from 'node:http';
import t from 'tap';
import { configSchema } from '../../src/config/schema.js';
import { newBindingValue } from '../../src/oidc/transactions.js';
import { readCookie, readCookies, serializeCookie, withoutCookies } from '../../src/server/cookies.js';
import { SessionCookies } from '../../src/server/session-cookies.js';

t.test('reads exactly the named cookie', async (t) => {
  t.equal(readCookie('a=1; _oidc_sidecar=v1.x.y; b=2', '_oidc_sidecar'), 'v1.x.y');
  t.equal(readCookie('x_oidc_sidecar=evil; _oidc_sidecar=good', '_oidc_sidecar'), 'good');
  t.equal(readCookie('x_oidc_sidecar=evil', '_oidc_sidecar'), undefined);
  t.equal(readCookie('_oidc_sidecar=first;_oidc_sidecar=second', '_oidc_sidecar'), 'first');
  t.equal(readCookie(undefined, 'a'), undefined);
  t.equal(readCookie('a=1; xs=', 's'), undefined, 'a longer name ending the header is not the cookie');
  t.equal(readCookie('', 'a'), undefined);
});

t.test('reads every cookie of a name, in order, up to a bound', async (t) => {
  t.same(readCookies('s=1; a=2; s=3;s=4; xs=5; s', 's', 10), ['1', '3', '4']);
  t.same(readCookies('s=1; s=2; s=3', 's', 2), ['1', '2']);
  t.same(readCookies(undefined, 's', 4), []);
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

t.test('the binding cookie: __Host- when Secure (no sibling subdomain can plant one), and only values the sidecar makes', async (t) => {
  const cookiesFor = (publicUrl: string, cookie: Record<string, unknown> = {}) =>
    new SessionCookies(
      configSchema.parse({
        upstream: { url: 'http://127.0.0.1:8080' },
        publicUrl,
        provider: { issuerUrl: 'https://idp.example.com', clientId: 'portal', clientSecret: 'client-secret' },
        session: { secret: 'a-session-secret-of-at-least-32-bytes!', cookie },
      }),
    );
  const secure = cookiesFor('https://portal.example.com', { domain: 'example.com' });
  const value = newBindingValue();
  t.equal(secure.bindingName, '__Host-_oidc_sidecar_csrf');
  t.equal(secure.binding(value), `__Host-_oidc_sidecar_csrf=${value}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=600`, 'Secure, Path=/, no Domain: as __Host- requires');
  t.same(
    secure.session('v'),
    ['_oidc_sidecar=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0', '_oidc_sidecar=v; Path=/; HttpOnly; SameSite=Lax; Domain=example.com; Secure; Max-Age=43200'],
    'the session cookie keeps its name and domain; a host-only one from before domain was set is ended',
  );
  t.same(secure.clearSession().length, 2);
  t.same(cookiesFor('https://portal.example.com').clearSession(), ['_oidc_sidecar=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0'], 'host-only: one cookie');
  const lookAlike = `_oidc_sidecar_csrf=${newBindingValue()}`;
  const planted = { headers: { cookie: `${lookAlike}; __Host-_oidc_sidecar_csrf=${value}` } } as IncomingMessage;
  t.equal(secure.readBinding(planted), value, 'a binding without the prefix (a sibling could have set it) is not read');
  t.equal(secure.withoutOwn(planted.headers.cookie), lookAlike, "the portal's cookies: the look-alike stays, the binding goes");
  t.equal(cookiesFor('https://portal.example.com', { name: '__Host-portal' }).bindingName, '__Host-portal_csrf');
  const plain = cookiesFor('http://127.0.0.1:4180');
  t.equal(plain.bindingName, '_oidc_sidecar_csrf', 'plain http (loopback): no prefix, which needs Secure');
  for (const bad of ['x', 'a'.repeat(33), `${value.slice(0, 31)}!`, '']) {
    t.equal(plain.readBinding({ headers: { cookie: `_oidc_sidecar_csrf=${bad}` } } as IncomingMessage), undefined, JSON.stringify(bad));
  }
});
