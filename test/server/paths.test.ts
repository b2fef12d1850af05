import t from 'tap';
import { normalizeRequestPath, RouteList } from '../../src/server/paths.js';

t.test('unreserved percent-encodings are decoded, others kept, query ignored', async (t) => {
  const cases: Array<[string, string]> = [
    ['/', '/'],
    ['/public/app.js?x=1', '/public/app.js'],
    ['/%70ublic/a', '/public/a'],
    ['/a%7eb', '/a~b'],
    ['/a%20b', '/a%20b'],
    ['/a%23b', '/a%23b'],
    ['/a%3fb?q=/public/', '/a%3Fb'],
    ['/public/app.js;jsessionid=1', '/public/app.js;jsessionid=1'],
    ['/public/...;x/a', '/public/...;x/a'],
    // As the portal gets them: http-proxy sends `/odata//admin` as `/odata/admin`.
    ['/odata//admin/x', '/odata/admin/x'],
    ['//evil.example/x?y=//z', '/evil.example/x'],
    ['/a///b/', '/a/b/'],
  ];
  for (const [input, expected] of cases) t.same(normalizeRequestPath(input), { ok: true, normalized: expected }, input);
});

t.test('ambiguous paths are refused before any route decision', async (t) => {
  const refused = [
    '/public/../admin', '/public/./x', '/public/%2e%2e/admin', '/public/%2E./admin', '/public/.%2e/admin', '/..',
    '/public/..;/admin', '/public/..;jsessionid=x/admin', '/public/.;/x', '/public/..%3b/admin', '/public/%2e%2e%3B/admin',
    '/public%2fadmin', '/public%2Fadmin', '/public%5cadmin', '/public\\admin', '/a%00b', '/a%0ab', '/a%zz', '/a%',
    '/public#/admin', 'http://evil.example/public/', '*', '', '/a\tb',
  ];
  for (const input of refused) t.equal(normalizeRequestPath(input).ok, false, JSON.stringify(input));
  t.equal(normalizeRequestPath(undefined).ok, false);
  t.equal(normalizeRequestPath('/' + 'a'.repeat(9000)).ok, false);
});

t.test('route lists match the normalized path', async (t) => {
  const routes = new RouteList(['^/public/', '^/health$']);
  t.equal(routes.matches('/public/app.js'), true);
  t.equal(routes.matches('/health'), true);
  t.equal(routes.matches('/healthz'), false);
  t.equal(routes.matches('/admin/public/'), false);
  t.equal(new RouteList([]).matches('/'), false);
});
