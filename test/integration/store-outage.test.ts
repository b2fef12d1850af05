import t from 'tap';
import { request } from '../support/http.js';
import { startRedis } from '../support/redis.js';
import { NAVIGATION, signIn, startStack } from '../support/stack.js';

t.test('when Redis goes away the sidecar fails closed and says it is not ready', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack);
  t.equal((await request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } })).status, 200);

  await redis.stop();
  const before = stack.portal.requests.length;
  const api = await request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } });
  t.equal(api.status, 503);
  t.match(JSON.parse(api.body), { error: 'temporarily_unavailable' });
  t.equal(api.headers['retry-after'], '5', 'clients are told when to try again');
  const page = await request(stack.sidecar.url + '/page', { headers: { ...NAVIGATION, cookie: cookieHeader } });
  t.equal(page.status, 503);
  t.equal(page.headers['retry-after'], '5');
  t.notMatch(page.body, /redis|ECONNREFUSED|Error:/i, 'no internals leak');
  t.equal(stack.portal.requests.length, before, 'nothing reached the portal');
  const ready = await request(stack.sidecar.metricsUrl + '/readyz');
  t.equal(ready.status, 503);
  t.match(JSON.parse(ready.body), { sessionStore: 'unreachable', provider: 'ok' });
});
