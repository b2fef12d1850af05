import { createServer } from 'node:http';
import t from 'tap';
import { CookieJar, navigate } from '../support/browserless.js';
import { listen, stopServer } from '../support/free-port.js';
import { startPortal } from '../support/portal.js';

function responseSetting(...cookies: string[]): Response {
  const headers = new Headers();
  for (const cookie of cookies) headers.append('set-cookie', cookie);
  return new Response(null, { headers });
}

t.test('cookies are sent back by host and path, not by port', async (t) => {
  const jar = new CookieJar();
  jar.store(responseSetting('a=1; Path=/; HttpOnly', 'b=2; path=/interaction/xyz; SameSite=Lax', 'c=3'), 'http://127.0.0.1:4190/auth/start');
  t.equal(jar.header('http://127.0.0.1:9999/'), 'a=1');
  t.equal(jar.header('http://127.0.0.1:4190/interaction/xyz'), 'a=1; b=2');
  t.equal(jar.header('http://127.0.0.1:4190/interaction/xyz2'), 'a=1', 'path prefixes end at a segment');
  t.equal(jar.header('http://127.0.0.1:4190/auth/other'), 'a=1; c=3', 'default path is the directory');
  t.equal(jar.header('http://localhost:4190/'), undefined);
  t.equal(jar.get('b', 'http://127.0.0.1:4190/interaction/xyz/more'), '2');
});

t.test('a cookie is replaced by name, host and path, and removed when expired', async (t) => {
  const jar = new CookieJar();
  jar.store(responseSetting('s=old; Path=/', 'gone=1; Path=/'), 'http://localhost/');
  jar.store(responseSetting('s=new; Path=/; Max-Age=60', 'gone=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT'), 'http://localhost/x');
  t.equal(jar.header('http://localhost/'), 's=new');
  jar.store(responseSetting('s=; Path=/; Max-Age=0'), 'http://localhost/');
  t.equal(jar.header('http://localhost/'), undefined);
});

t.test('a Domain cookie applies to subdomains', async (t) => {
  const jar = new CookieJar();
  jar.store(responseSetting('sso=1; Domain=.example.test; Path=/'), 'http://app.example.test/');
  t.equal(jar.get('sso', 'http://other.example.test/'), '1');
  t.equal(jar.get('sso', 'http://example.test/'), '1');
  t.equal(jar.get('sso', 'http://badexample.test/'), undefined);
});

t.test('navigate makes a browser-like top-level request and returns redirects unfollowed', async (t) => {
  const portal = await startPortal();
  t.teardown(() => portal.stop());
  const jar = new CookieJar();
  jar.store(['session=abc; Path=/'], portal.url);

  const page = await navigate(`${portal.url}/echo?q=1`, jar, { form: new URLSearchParams({ a: 'ö' }), headers: { 'x-extra': 'yes' } });
  t.equal(page.status, 200);
  t.equal(page.location, undefined);
  t.match(JSON.parse(page.body), {
    method: 'POST',
    url: '/echo?q=1',
    bodyLength: Buffer.byteLength('a=%C3%B6'),
    headers: { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: /text\/html/, cookie: 'session=abc', 'content-type': 'application/x-www-form-urlencoded', 'x-extra': 'yes' },
  });

  const redirector = createServer((_req, res) => res.writeHead(302, { location: '/next', 'set-cookie': 'seen=1; Path=/' }).end());
  const url = `http://127.0.0.1:${await listen(redirector, 0, '127.0.0.1')}`;
  t.teardown(() => stopServer(redirector));
  const redirect = await navigate(`${url}/start`, jar);
  t.equal(redirect.status, 302);
  t.equal(redirect.location, `${url}/next`);
  t.equal(jar.get('seen', url), '1');
});
