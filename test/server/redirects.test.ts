import t from 'tap';
import { safeReturnUrl } from '../../src/server/redirects.js';
import { openRedirectPayloads } from '../support/open-redirects.js';

const ORIGIN = 'https://portal.example.com';

t.test('same-origin paths and URLs are kept, re-serialized', async (t) => {
  const cases: Array<[string, string]> = [
    ['/', `${ORIGIN}/`],
    ['/reports/2026?year=1#top', `${ORIGIN}/reports/2026?year=1#top`],
    ['/a%20b', `${ORIGIN}/a%20b`],
    [`${ORIGIN}/page`, `${ORIGIN}/page`],
    ['HTTPS://PORTAL.EXAMPLE.COM/x', `${ORIGIN}/x`],
  ];
  for (const [input, expected] of cases) t.equal(safeReturnUrl(input, ORIGIN), expected, input);
});

t.test('anything that could leave the portal is refused', async (t) => {
  const refused = [
    '', '//evil.example', '/\\evil.example', 'https://evil.example/', 'http://portal.example.com/', 'javascript:alert(1)',
    'https://user:pw@portal.example.com/', '/path\twith-tab', '/\r\nLocation: x', 'évil', 'https://portal.example.com.evil.example/',
    '/' + 'a'.repeat(5000), 'portal.example.com/x', 'data:text/html,x',
  ];
  for (const input of refused) t.equal(safeReturnUrl(input, ORIGIN), null, JSON.stringify(input));
  t.equal(safeReturnUrl(undefined, ORIGIN), null);
  t.equal(safeReturnUrl(null, ORIGIN), null);
});

t.test('no payload of the open-redirect corpus leads off the portal', async (t) => {
  const payloads = openRedirectPayloads();
  t.ok(payloads.length >= 50, `${payloads.length} payloads`);
  for (const payload of payloads) {
    const result = safeReturnUrl(payload, ORIGIN);
    if (result !== null) t.equal(new URL(result).origin, ORIGIN, `${payload} stays on the portal`);
  }
});
