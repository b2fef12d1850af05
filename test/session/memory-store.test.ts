import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryStore } from '../../src/session/memory-store.js';
import { runStoreSuite } from './store-suite.js';

runStoreSuite(t, 'memory', async () => {
  let now = Date.now();
  const store = new MemoryStore({ clock: () => now });
  return {
    store,
    fastForward: async (ms) => {
      now += ms;
    },
    close: () => store.close(),
  };
});

t.test('memory: past maxEntries the oldest written entry is evicted', async (t) => {
  const store = new MemoryStore({ maxEntries: 3 });
  t.teardown(() => store.close());
  for (const key of ['a', 'b', 'c']) await store.set(key, Buffer.from(key), 60_000);
  await store.set('a', Buffer.from('a again'), 60_000);
  await store.set('d', Buffer.from('d'), 60_000);
  t.equal(store.size, 3);
  t.equal(await store.get('b'), null);
  t.same(await store.get('a'), Buffer.from('a again'));
  t.same(await store.get('c'), Buffer.from('c'));
  await store.addToSet('s', 'member', 60_000);
  t.equal(await store.get('c'), null, 'sets and locks count too');
});

t.test('memory: expired entries are swept out even when nobody reads them', async (t) => {
  let now = 0;
  const store = new MemoryStore({ clock: () => now, sweepIntervalMs: 10 });
  t.teardown(() => store.close());
  await store.set('value', Buffer.from('v'), 100);
  await store.addToSet('set', 'm', 100);
  await store.set('kept', Buffer.from('k'), 1_000);
  now = 500;
  await sleep(50);
  t.equal(store.size, 1);
  t.same(await store.get('kept'), Buffer.from('k'));
});
