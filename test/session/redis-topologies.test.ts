import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { createRedisClient, RedisStore, type RedisConfig } from '../../src/session/redis-store.js';
import { request } from '../support/http.js';
import { startCluster, startRedis, startSentinel } from '../support/redis.js';
import { NAVIGATION, signIn, startStack } from '../support/stack.js';
import { runStoreSuite } from './store-suite.js';

/**
 * The store against real Redis Sentinel and a real Redis Cluster (three masters), and a sign-in
 * through two replicas on each: what `redis.sentinel` and `redis.cluster` promise.
 */

const master = await startRedis();
const sentinel = await startSentinel(master);
const cluster = await startCluster();
t.teardown(async () => {
  await cluster.stop();
  await sentinel.stop();
  await master.stop();
});

const topologies: Array<[name: string, redis: Pick<RedisConfig, 'sentinel' | 'cluster'>]> = [
  ['redis sentinel', { sentinel: { masterName: sentinel.masterName, nodes: sentinel.nodes } }],
  ['redis cluster', { cluster: { nodes: cluster.nodes } }],
];

let prefixes = 0;
for (const [name, redis] of topologies) {
  runStoreSuite(t, name, async () => {
    const store = new RedisStore(createRedisClient({ tls: false, keyPrefix: `topology-${++prefixes}:`, ...redis }));
    return { store, fastForward: (ms) => sleep(ms), close: () => store.close() };
  });

  t.test(`${name}: sign in through one replica, use the session on another, sign out`, async (t) => {
    const stack = await startStack({ config: { session: { store: 'redis' }, redis: { keyPrefix: `stack-${++prefixes}:`, ...redis } } });
    t.teardown(() => stack.stop());
    const replica = await stack.addReplica();
    const { cookieHeader } = await signIn(stack, { path: '/reports' });
    const answer = await request(replica.url + '/reports', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(answer.status, 200);
    t.equal(stack.portal.requests.at(-1)?.headers['x-forwarded-user'], 'alice');
    const signOut = await request(replica.url + '/oauth2/sign_out', { method: 'POST', headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(signOut.status, 302);
    const after = await request(stack.sidecar.url + '/reports', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(after.status, 302, 'signed out on the first replica too');
    t.equal(new URL(String(after.headers.location)).origin, stack.idp.issuer);
  });
}
