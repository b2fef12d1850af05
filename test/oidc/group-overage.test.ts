import { createServer } from 'node:http';
import t from 'tap';
import { hasGroupOverage, readGroupsFromGraph, withoutOverageClaims } from '../../src/oidc/group-overage.js';
import { listen, stopServer } from '../support/free-port.js';

t.test('the overage is told by _claim_names.groups or hasgroups, never when groups are listed', async (t) => {
  t.ok(hasGroupOverage({ _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.windows.net/x' } } }));
  t.ok(hasGroupOverage({ hasgroups: true }));
  t.notOk(hasGroupOverage({ groups: ['a'], hasgroups: true }), 'groups listed win');
  t.notOk(hasGroupOverage({ _claim_names: { roles: 'src1' } }));
  t.notOk(hasGroupOverage({ _claim_names: 'groups', hasgroups: 'true' }), 'malformed markers');
  t.same(withoutOverageClaims({ sub: 's', _claim_names: {}, _claim_sources: {}, hasgroups: true }), { sub: 's' });
});

t.test('Graph answers that are not a list of group ids are refused with the reason', async (t) => {
  let status = 200;
  let body: unknown = { value: ['g1', 'g2'] };
  const seen: Array<{ authorization?: string; body: string }> = [];
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      seen.push({ authorization: req.headers.authorization, body: text });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  const graphUrl = `http://127.0.0.1:${await listen(server, 0, '127.0.0.1')}/`;
  t.teardown(() => stopServer(server));
  t.same(await readGroupsFromGraph(fetch, graphUrl, 'access-token'), ['g1', 'g2']);
  t.same(seen[0], { authorization: 'Bearer access-token', body: '{"securityEnabledOnly":true}' });
  await t.rejects(readGroupsFromGraph(fetch, graphUrl, undefined), /no access token/);
  const bad: Array<[number, unknown, RegExp]> = [
    [403, { error: { code: 'Authorization_RequestDenied' } }, /answered 403/],
    [200, { value: 'g1' }, /without a list of group ids/],
    [200, { value: [1, 2] }, /without a list of group ids/],
    [200, { value: [''] }, /without a list of group ids/],
    [200, { value: Array.from({ length: 11_001 }, (_, i) => `g${i}`) }, /without a list of group ids/],
  ];
  for (const [answerStatus, answerBody, reason] of bad) {
    status = answerStatus;
    body = answerBody;
    await t.rejects(readGroupsFromGraph(fetch, graphUrl, 'access-token'), reason);
  }
});
