import t from 'tap';
import { isBrowserNavigation } from '../../src/server/request-kind.js';

const HTML = 'text/html,application/xhtml+xml,*/*;q=0.8';

t.test('only top-level browser navigations may be redirected to sign-in', async (t) => {
  const cases: Array<[string, string, Record<string, string>, boolean, boolean]> = [
    ['navigation', 'GET', { accept: HTML }, false, true],
    ['HEAD navigation', 'HEAD', { accept: HTML }, false, true],
    ['navigation with sec-fetch-mode', 'GET', { accept: HTML, 'sec-fetch-mode': 'navigate' }, false, true],
    ['API route', 'GET', { accept: HTML }, true, false],
    ['POST form', 'POST', { accept: HTML }, false, false],
    ['JSON client', 'GET', { accept: 'application/json' }, false, false],
    ['no Accept', 'GET', {}, false, false],
    ['XHR', 'GET', { accept: HTML, 'x-requested-with': 'XMLHttpRequest' }, false, false],
    ['fetch()', 'GET', { accept: HTML, 'sec-fetch-mode': 'cors' }, false, false],
  ];
  for (const [name, method, headers, api, expected] of cases) t.equal(isBrowserNavigation(method, headers, api), expected, name);
});
