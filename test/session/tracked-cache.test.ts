import { Redis } from 'ioredis';
import t from 'tap';
import { TrackedReadCache } from '../../src/session/tracked-cache.js';
import { startRedis, startRedisRelay } from '../support/redis.js';

const PREFIX = 'test:';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}

t.test('a local copy that Redis keeps coherent', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const client = new Redis(redis.url, { keyPrefix: PREFIX });
  const other = new Redis(redis.url, { keyPrefix: PREFIX });
  const cache = new TrackedReadCache(client, PREFIX);
  t.teardown(() => {
    cache.close();
    client.disconnect();
    other.disconnect();
  });
  await until(() => cache.tracking);
  let reads = 0;
  const read = (key: string) => () => {
    reads++;
    return client.getBuffer(key);
  };

  t.test('a value read once is served locally until it changes anywhere', async (t) => {
    await other.set('a', 'one');
    reads = 0;
    t.equal(String(await cache.get('a', read('a'))), 'one');
    t.equal(String(await cache.get('a', read('a'))), 'one');
    t.equal(reads, 1, 'the second get did not go to Redis');
    await other.set('a', 'two');
    await sleep(50);
    t.equal(String(await cache.get('a', read('a'))), 'two', 'another client changed it: the copy was dropped');
    await other.del('a');
    await sleep(50);
    t.equal(await cache.get('a', read('a')), null, 'deleted elsewhere: gone here too');
  });

  t.test('an expired key is not served from the copy', async (t) => {
    await other.set('short', 'lived', 'PX', 100);
    t.equal(String(await cache.get('short', read('short'))), 'lived');
    await sleep(300);
    t.equal(await cache.get('short', read('short')), null);
  });

  t.test('a value invalidated while its read was in flight is returned but not kept', async (t) => {
    await other.set('race', 'old');
    const racingRead = async () => {
      const value = await client.getBuffer('race');
      await other.set('race', 'new');
      await sleep(50);
      return value;
    };
    t.equal(String(await cache.get('race', racingRead)), 'old');
    reads = 0;
    t.equal(String(await cache.get('race', read('race'))), 'new');
    t.equal(reads, 1, 'the stale value was not kept');
  });

  t.test('absent keys are not cached', async (t) => {
    reads = 0;
    await cache.get('missing', read('missing'));
    await cache.get('missing', read('missing'));
    t.equal(reads, 2);
  });

  t.test('a dropped connection empties the copy until tracking is back', async (t) => {
    await other.set('b', 'kept');
    await cache.get('b', read('b'));
    await client.client('KILL', 'TYPE', 'pubsub');
    await until(() => !cache.tracking);
    reads = 0;
    await cache.get('b', read('b'));
    t.equal(reads, 1, 'read again');
    await until(() => cache.tracking);
    await other.set('b', 'changed');
    await sleep(50);
    t.equal(String(await cache.get('b', read('b'))), 'changed', 'invalidations flow again after reconnecting');
  });
});

t.test('invalidations that stop arriving (a connection dead without a word) are noticed by the canary: copies dropped, tracking made anew', async (t) => {
  const redis = await startRedis();
  const relay = await startRedisRelay(redis.port);
  // As the store's client: a command without an answer fails (a subscription made while silenced is made anew).
  const client = new Redis(relay.url, { keyPrefix: PREFIX, commandTimeout: 500 });
  const other = new Redis(redis.url, { keyPrefix: PREFIX });
  const errors: unknown[] = [];
  const cache = new TrackedReadCache(client, PREFIX, { canaryIntervalMs: 100, canaryTimeoutMs: 300, onError: (error) => errors.push(error) });
  t.teardown(async () => {
    cache.close();
    client.disconnect();
    other.disconnect();
    await relay.stop();
    await redis.stop();
  });
  await until(() => cache.tracking);
  const read = () => client.getBuffer('a');
  await other.set('a', 'one');
  t.equal(String(await cache.get('a', read)), 'one');
  await sleep(500);
  t.same(errors, [], 'while invalidations arrive, the canary is content');
  t.equal(String(cache.peek('a')), 'one');

  relay.silenceSubscribers();
  await other.set('a', 'two');
  await sleep(50);
  t.equal(String(cache.peek('a')), 'one', 'the invalidation was lost: the copy is stale');
  await until(() => cache.peek('a') === undefined, 2_000);
  t.pass('within the canary interval and time-out, the stale copy is dropped');
  t.match(errors[0], { message: /reported no change of a tracked key within 300 ms/ });
  await sleep(1_500);
  t.notOk(cache.tracking, 'while invalidations cannot arrive, nothing is cached');

  relay.silenceSubscribers(false);
  await until(() => cache.tracking);
  t.equal(String(await cache.get('a', read)), 'two', 'tracking made anew: the current value is read and kept');
  await other.set('a', 'three');
  await until(() => cache.peek('a') === undefined);
  t.pass('and invalidations arrive again');
});

t.test('a Redis that refuses CLIENT TRACKING: every read goes to Redis, the refusal is reported once, and copies are kept once it is allowed', async (t) => {
  const redis = await startRedis();
  const admin = new Redis(redis.url);
  // As a managed Redis or an operator's ACL may have it; an old Redis answers "unknown command" instead.
  await admin.acl('SETUSER', 'default', '-client|tracking');
  const client = new Redis(redis.url, { keyPrefix: PREFIX });
  const errors: unknown[] = [];
  const cache = new TrackedReadCache(client, PREFIX, { canaryIntervalMs: 50, onError: (error) => errors.push(error) });
  t.teardown(async () => {
    cache.close();
    client.disconnect();
    admin.disconnect();
    await redis.stop();
  });
  await until(() => errors.length > 0);
  await sleep(500);
  t.notOk(cache.tracking, 'nothing is cached');
  t.equal(errors.length, 1, 'about ten tries, one report');
  t.match(errors[0], { message: /^CLIENT TRACKING failed \(NOPERM .*\): no local session copies, every request reads Redis/ });
  await admin.set(PREFIX + 'a', 'one');
  let reads = 0;
  const read = () => {
    reads++;
    return client.getBuffer('a');
  };
  await cache.get('a', read);
  await cache.get('a', read);
  t.equal(reads, 2, 'both reads went to Redis');

  await admin.acl('SETUSER', 'default', '+client|tracking');
  await until(() => cache.tracking);
  reads = 0;
  await cache.get('a', read);
  await cache.get('a', read);
  t.equal(reads, 1, 'allowed at last: the copy is kept');
  await admin.acl('SETUSER', 'default', '-client|tracking');
  await client.client('KILL', 'TYPE', 'pubsub');
  await until(() => errors.length > 1);
  t.match(errors.at(-1), { message: /^CLIENT TRACKING failed \(NOPERM/ }, 'refused again after it worked: reported again');
});
