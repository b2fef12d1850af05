import t from 'tap';
import { AuditStream } from '../../src/audit/index.js';
import { createRedisClient } from '../../src/session/redis-store.js';
import { request } from '../support/http.js';
import { startRedis } from '../support/redis.js';
import { auditEvents, signIn, startStack } from '../support/stack.js';

t.test('a flood of junk bearer tokens does not rotate earlier events out of the audit stream', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url }, audit: { stream: { maxLength: 50 } } } });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : stack.stop()));
  await signIn(stack);
  const flood = 120;
  for (let i = 0; i < flood; i++) {
    const answer = await request(stack.sidecar.url + '/api/cases', { headers: { accept: 'application/json', authorization: `Bearer junk-${i}` } });
    t.equal(answer.status, 401, 'each junk token is refused');
  }
  const logged = auditEvents(stack).filter((event) => event.event === 'api_auth_failed');
  t.equal(logged.length, 20, 'twenty written one by one');
  await stack.stop();
  stopped = true;

  const client = createRedisClient(stack.config.redis);
  t.teardown(() => client.disconnect());
  const records = await new AuditStream(client, 50).read({ limit: 50 });
  t.match(records[0], { event: 'login', user: 'alice' }, 'the sign-in before the flood is still in the stream');
  const failures = records.filter((record) => record.event === 'api_auth_failed');
  t.equal(failures.length, 21, 'twenty failures and one summary, within a stream capped at fifty');
  t.match(failures.at(-1), { event: 'api_auth_failed', method: 'bearer', ip: '127.0.0.1', reason: `${flood - 20} more like this from 127.0.0.1 within 60 s, past the 20 written one by one; the first held back: ${failures[0]!.reason}` });
  t.match(auditEvents(stack).at(-1), { event: 'api_auth_failed', reason: /^100 more like this/ }, 'stdout has the summary too');
});
