import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { createRedisClient, RedisStore, type RedisConfig } from '../../src/session/redis-store.js';
import { startRedis, startRedisRelay } from '../support/redis.js';
import { runStoreSuite } from './store-suite.js';

const server = await startRedis();
t.teardown(() => server.stop());

let prefixes = 0;
function redisConfig(overrides: Partial<RedisConfig> = {}): RedisConfig {
  return { url: server.url, tls: false, keyPrefix: `test-${++prefixes}:`, ...overrides };
}

runStoreSuite(t, 'redis', async () => {
  const store = new RedisStore(createRedisClient(redisConfig()));
  return { store, fastForward: (ms) => sleep(ms), close: () => store.close() };
});

t.test("redis: getCached sees another replica's change or deletion at once, without asking Redis again meanwhile", async (t) => {
  const config = redisConfig();
  const [here, there] = [new RedisStore(createRedisClient(config)), new RedisStore(createRedisClient(config))];
  const monitor = new Redis(server.url);
  t.teardown(async () => {
    await Promise.all([here.close(), there.close()]);
    monitor.disconnect();
  });
  await there.set('session', Buffer.from('v1'), 60_000);
  await sleep(100);
  t.same(await here.getCached('session'), Buffer.from('v1'));
  const before = await commandCount(monitor, 'get');
  for (let i = 0; i < 20; i++) t.same(await here.getCached('session'), Buffer.from('v1'));
  t.equal(await commandCount(monitor, 'get'), before, 'served from the local copy');
  await there.replace('session', Buffer.from('v2'), 60_000);
  await sleep(50);
  t.same(await here.getCached('session'), Buffer.from('v2'), 'changed on the other replica');
  await there.delete('session');
  await sleep(50);
  t.equal(await here.getCached('session'), null, 'ended on the other replica');
});

t.test('redis: invalidations lost (a connection dead without a word): a direct read drops the stale local copy', async (t) => {
  const relay = await startRedisRelay(server.port);
  const config = redisConfig();
  const here = new RedisStore(createRedisClient({ ...config, url: relay.url }));
  const there = new RedisStore(createRedisClient(config));
  t.teardown(async () => {
    await Promise.all([here.close(), there.close()]);
    await relay.stop();
  });
  await there.set('session', Buffer.from('v1'), 60_000);
  await sleep(100);
  t.same(await here.getCached('session'), Buffer.from('v1'));
  t.same(here.peek('session'), Buffer.from('v1'), 'kept locally');
  relay.silenceSubscribers();
  await there.replace('session', Buffer.from('v2'), 60_000);
  await sleep(100);
  t.same(here.peek('session'), Buffer.from('v1'), 'the invalidation was lost: the copy is stale');
  t.same(await here.get('session'), Buffer.from('v2'), 'a direct read (the refresh lock\'s) sees the change');
  t.equal(here.peek('session'), undefined, 'and drops the stale copy');
  t.same(await here.getCached('session'), Buffer.from('v2'), 'so the next read goes to Redis');
  await there.delete('session');
  t.equal(await here.get('session'), null);
  t.equal(here.peek('session'), undefined, 'a copy of a deleted key goes too');
});

/** How many times Redis has run `command` so far (INFO commandstats). */
async function commandCount(client: Redis, command: string): Promise<number> {
  const stats = await client.info('commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
}

t.test('redis: every key, scripts included, carries redis.keyPrefix', async (t) => {
  const store = new RedisStore(createRedisClient(redisConfig({ keyPrefix: 'prefixed:' })));
  const raw = new Redis(server.url);
  t.teardown(async () => {
    await store.close();
    await raw.quit();
  });
  await store.set('value', Buffer.from('v'), 60_000);
  await store.addToSet('set', 'm', 60_000);
  await store.tryLock('lock', 60_000);
  t.same((await raw.keys('*prefixed*')).sort(), ['prefixed:lock', 'prefixed:set', 'prefixed:value']);
});

t.test('redis: with Redis down, operations fail within about 2 s instead of hanging', async (t) => {
  const doomed = await startRedis();
  const errors: Error[] = [];
  const store = new RedisStore(createRedisClient(redisConfig({ url: doomed.url }), (error) => errors.push(error)));
  t.teardown(() => doomed.stop());
  await store.ping();
  await doomed.stop();
  await failsQuickly(t, 'get', store.get('k'));
  await failsQuickly(t, 'set', store.set('k', Buffer.from('v'), 1_000));
  await failsQuickly(t, 'ping', store.ping());
  t.ok(errors.length > 0, 'connection errors reach onError');
  const closing = Date.now();
  await store.close();
  t.ok(Date.now() - closing < 2_500, 'close does not hang either');
});

async function failsQuickly(t: Test, name: string, operation: Promise<unknown>): Promise<void> {
  const started = Date.now();
  await t.rejects(operation, `${name} fails`);
  t.ok(Date.now() - started < 2_500, `${name} fails within 2.5 s`);
}

t.test('redis: commands sent before the connection is up wait for it', async (t) => {
  const store = new RedisStore(createRedisClient(redisConfig()));
  t.teardown(() => store.close());
  await store.set('early', Buffer.from('v'), 60_000);
  t.same(await store.get('early'), Buffer.from('v'));
});

t.test('redis: the client factory builds standalone, TLS, Sentinel and Cluster clients', async (t) => {
  const quiet = () => {};
  const made: (Redis | Cluster)[] = [];
  const make = (config: RedisConfig) => {
    const client = createRedisClient(config, quiet);
    made.push(client);
    return client;
  };
  t.teardown(() => made.forEach((client) => client.disconnect()));
  const base = { tls: false, keyPrefix: 'p:', password: 'pw' };

  const tls = make({ ...base, url: 'redis://127.0.0.1:1', tls: true }) as Redis;
  t.same(tls.options.tls, {});
  t.equal(tls.options.password, 'pw');
  t.equal(tls.options.keyPrefix, 'p:');
  t.equal(tls.options.commandTimeout, 2_000);
  t.ok((make({ ...base, url: 'rediss://127.0.0.1:1' }) as Redis).options.tls, 'rediss: means TLS');

  const sentinel = make({ ...base, sentinel: { masterName: 'portal', nodes: ['10.0.0.1:26379', 'sentinel-b:26380'] } }) as Redis;
  t.equal(sentinel.options.name, 'portal');
  t.same(sentinel.options.sentinels, [{ host: '10.0.0.1', port: 26379 }, { host: 'sentinel-b', port: 26380 }]);

  const cluster = make({ ...base, cluster: { nodes: ['10.0.0.1:7000', '10.0.0.2:7001'] } });
  t.ok(cluster instanceof Cluster);
  t.equal((cluster as Cluster).options.keyPrefix, 'p:');
  t.equal((cluster as Cluster).options.redisOptions?.password, 'pw');

  t.throws(() => createRedisClient(base), /set one of redis.url, redis.sentinel, redis.cluster/);
});
