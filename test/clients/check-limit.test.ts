import t from 'tap';
import { CheckLimit } from '../../src/clients/check-limit.js';

t.test('at most maxRunning checks run at once, maxWaiting more wait in order, the rest are refused', async (t) => {
  const limit = new CheckLimit(2, 3);
  let running = 0;
  let mostAtOnce = 0;
  const started: number[] = [];
  const releases: Array<() => void> = [];
  const check = (id: number) => () => {
    started.push(id);
    mostAtOnce = Math.max(mostAtOnce, ++running);
    return new Promise<number>((resolve) => releases.push(() => (running--, resolve(id))));
  };
  const results = Array.from({ length: 7 }, (_, id) => limit.run(check(id)));
  t.same(await Promise.all(results.slice(5)), ['busy', 'busy'], 'past two running and three waiting: refused at once');
  t.same(started, [0, 1]);
  while (releases.length > 0) {
    releases.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.same(await Promise.all(results.slice(0, 5)), [0, 1, 2, 3, 4]);
  t.same(started, [0, 1, 2, 3, 4], 'the waiting ones ran in arrival order');
  t.equal(mostAtOnce, 2);
  t.equal(await limit.run(async () => 'free again'), 'free again', 'every slot was given back');
});

t.test('a check that throws gives its slot back', async (t) => {
  const limit = new CheckLimit(1, 0);
  await t.rejects(limit.run(() => Promise.reject(new Error('broken'))), /broken/);
  t.equal(await limit.run(async () => 'ok'), 'ok');
});
