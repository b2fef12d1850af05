import type { Test } from 'tap';
import type { KeyValueStore } from '../../src/session/store.js';

/** A store for one test, and how to let time pass for it. */
export interface StoreUnderTest {
  store: KeyValueStore;
  /** Lets `ms` pass for the store: an injected clock moves, or real time passes. */
  fastForward(ms: number): Promise<void>;
  close(): Promise<void>;
}

/** Short enough for a real Redis to let it lapse quickly, long enough to read the key before. */
const TTL_MS = 200;
const PAST_TTL_MS = 300;
const LONG_MS = 60_000;

/** The behaviour every KeyValueStore implementation shares (not a test file itself). */
export function runStoreSuite(t: Test, name: string, makeStore: () => Promise<StoreUnderTest>): void {
  const test = (title: string, body: (t: Test, store: KeyValueStore, fastForward: (ms: number) => Promise<void>) => Promise<void>) =>
    t.test(`${name}: ${title}`, async (t) => {
      const { store, fastForward, close } = await makeStore();
      t.teardown(close);
      await body(t, store, fastForward);
    });

  test('a value reads back byte for byte until replaced', async (t, store) => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await store.set('k', everyByte, LONG_MS);
    t.same(await store.get('k'), everyByte);
    await store.set('k', Buffer.from('second'), LONG_MS);
    t.same(await store.get('k'), Buffer.from('second'));
    t.equal(await store.get('absent'), null);
  });

  test("getCached answers like get, and sees this store's own writes at once", async (t, store, fastForward) => {
    await store.set('k', Buffer.from('one'), LONG_MS);
    t.same(await store.getCached('k'), Buffer.from('one'));
    t.same(await store.getCached('k'), Buffer.from('one'));
    await store.set('k', Buffer.from('two'), LONG_MS);
    t.same(await store.getCached('k'), Buffer.from('two'));
    t.equal(await store.replace('k', Buffer.from('three'), TTL_MS), true);
    t.same(await store.getCached('k'), Buffer.from('three'));
    await fastForward(PAST_TTL_MS);
    t.equal(await store.getCached('k'), null, 'expired');
    await store.set('k', Buffer.from('four'), LONG_MS);
    t.same(await store.getCached('k'), Buffer.from('four'));
    await store.delete('k');
    t.equal(await store.getCached('k'), null, 'deleted');
    await store.set('k', Buffer.from('five'), LONG_MS);
    t.same(await store.getCached('k'), Buffer.from('five'));
    t.same(await store.take('k'), Buffer.from('five'));
    t.equal(await store.getCached('k'), null, 'taken');
    t.equal(await store.getCached('absent'), null);
  });

  test('peek answers like getCached, or not at all, and never with a value this store replaced', async (t, store) => {
    const agrees = async (key: string, label: string) => {
      const peeked = store.peek(key);
      const cached = await store.getCached(key);
      if (peeked !== undefined) t.same(peeked, cached, label);
      const again = store.peek(key);
      if (again !== undefined) t.same(again, cached, `${label}, after a read`);
    };
    await store.set('k', Buffer.from('one'), LONG_MS);
    await agrees('k', 'set');
    await store.set('k', Buffer.from('two'), LONG_MS);
    await agrees('k', 'set again');
    t.equal(await store.replace('k', Buffer.from('three'), LONG_MS), true);
    await agrees('k', 'replaced');
    await store.delete('k');
    t.not(store.peek('k')?.toString(), 'three', 'deleted: no stale copy');
    await agrees('k', 'deleted');
    await agrees('absent', 'absent');
  });

  test('a value is gone once its TTL has passed', async (t, store, fastForward) => {
    await store.set('k', Buffer.from('v'), TTL_MS);
    t.same(await store.get('k'), Buffer.from('v'));
    await fastForward(PAST_TTL_MS);
    t.equal(await store.get('k'), null);
    t.equal(await store.take('k'), null);
  });

  test('take hands a value to exactly one of two concurrent callers', async (t, store) => {
    await store.set('k', Buffer.from('once'), LONG_MS);
    const taken = await Promise.all([store.take('k'), store.take('k')]);
    t.same(taken.filter((value) => value !== null), [Buffer.from('once')]);
    t.equal(await store.get('k'), null);
    t.equal(await store.take('absent'), null);
  });

  test('replace changes an existing value and its TTL, and never creates one', async (t, store, fastForward) => {
    t.equal(await store.replace('absent', Buffer.from('v'), LONG_MS), false);
    t.equal(await store.get('absent'), null);
    await store.set('k', Buffer.from('old'), LONG_MS);
    t.equal(await store.replace('k', Buffer.from('new'), TTL_MS), true);
    t.same(await store.get('k'), Buffer.from('new'));
    await fastForward(PAST_TTL_MS);
    t.equal(await store.get('k'), null);
  });

  test('expire lengthens and shortens a TTL, and ignores absent keys', async (t, store, fastForward) => {
    await store.set('short', Buffer.from('1'), TTL_MS);
    await store.expire('short', LONG_MS);
    await store.set('long', Buffer.from('2'), LONG_MS);
    await store.expire('long', TTL_MS);
    await store.expire('absent', LONG_MS);
    await fastForward(PAST_TTL_MS);
    t.same(await store.get('short'), Buffer.from('1'));
    t.equal(await store.get('long'), null);
    t.equal(await store.get('absent'), null);
  });

  test('ttl tells how long a key has left, and null once it is gone', async (t, store, fastForward) => {
    await store.set('k', Buffer.from('1'), LONG_MS);
    const left = await store.ttl('k');
    t.ok(left !== null && left > LONG_MS - 1000 && left <= LONG_MS, `about ${LONG_MS} ms left (${left})`);
    await store.set('short', Buffer.from('2'), TTL_MS);
    t.equal(await store.ttl('absent'), null);
    await fastForward(PAST_TTL_MS);
    t.equal(await store.ttl('short'), null, 'expired');
  });

  test('delete removes several keys, values and sets, and ignores absent ones', async (t, store) => {
    await store.set('a', Buffer.from('1'), LONG_MS);
    await store.set('b', Buffer.from('2'), LONG_MS);
    await store.set('c', Buffer.from('3'), LONG_MS);
    await store.addToSet('s', 'member', LONG_MS);
    await store.delete('a', 'b', 's', 'absent');
    await store.delete();
    t.equal(await store.get('a'), null);
    t.equal(await store.get('b'), null);
    t.same(await store.setMembers('s'), []);
    t.same(await store.get('c'), Buffer.from('3'));
  });

  test('a set collects members and forgets removed ones', async (t, store) => {
    await store.addToSet('s', 'one', LONG_MS);
    await store.addToSet('s', 'two', LONG_MS);
    await store.addToSet('s', 'two', LONG_MS);
    t.same((await store.setMembers('s')).sort(), ['one', 'two']);
    await store.removeFromSet('s', 'one');
    await store.removeFromSet('s', 'never-added');
    await store.removeFromSet('absent', 'one');
    t.same(await store.setMembers('s'), ['two']);
    await store.removeFromSet('s', 'two');
    t.same(await store.setMembers('s'), []);
    t.same(await store.setMembers('absent'), []);
  });

  test('a set lives as long as the longest TTL it was given', async (t, store, fastForward) => {
    await store.addToSet('expires', 'm', TTL_MS);
    await store.addToSet('lengthened', 'm1', TTL_MS);
    await store.addToSet('lengthened', 'm2', LONG_MS);
    await store.addToSet('kept', 'm1', LONG_MS);
    await store.addToSet('kept', 'm2', TTL_MS);
    await fastForward(PAST_TTL_MS);
    t.same(await store.setMembers('expires'), []);
    t.same((await store.setMembers('lengthened')).sort(), ['m1', 'm2']);
    t.same((await store.setMembers('kept')).sort(), ['m1', 'm2']);
  });

  test('a lock has one holder until it is released', async (t, store) => {
    const release = await store.tryLock('lock', LONG_MS);
    t.type(release, 'function');
    t.equal(await store.tryLock('lock', LONG_MS), null);
    await release?.();
    t.type(await store.tryLock('lock', LONG_MS), 'function');
  });

  test('a lock frees itself after its TTL, and a late release spares the next holder', async (t, store, fastForward) => {
    const stale = await store.tryLock('lock', TTL_MS);
    t.type(stale, 'function');
    await fastForward(PAST_TTL_MS);
    t.type(await store.tryLock('lock', LONG_MS), 'function');
    await stale?.();
    t.equal(await store.tryLock('lock', LONG_MS), null);
  });

  test('ping resolves while the store is up', async (t, store) => {
    await t.resolves(store.ping());
  });
}
