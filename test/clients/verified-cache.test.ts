import t from 'tap';
import { FailureThrottle } from '../../src/clients/failure-throttle.js';
import { VerifiedTokenCache } from '../../src/clients/verified-cache.js';

t.test('the verified-token cache never answers past an entry expiry, and stays bounded', async (t) => {
  let now = 0;
  const cache = new VerifiedTokenCache<string>(2, () => now);
  cache.set('a', 'A', 100);
  t.equal(cache.get('a'), 'A');
  now = 100;
  t.equal(cache.get('a'), undefined, 'expired at its expiry');
  cache.set('a', 'A', 1000);
  cache.set('b', 'B', 1000);
  cache.set('c', 'C', 1000);
  t.equal(cache.get('a'), undefined, 'the oldest entry went');
  t.equal(cache.get('c'), 'C');
  cache.delete('c');
  t.equal(cache.get('c'), undefined);
});

t.test('the failure throttle counts per key within a window', async (t) => {
  let now = 0;
  const throttle = new FailureThrottle({ limit: 2, windowMs: 1000, maxKeys: 2 }, () => now);
  throttle.recordFailure('1.1.1.1');
  t.notOk(throttle.isThrottled('1.1.1.1'));
  throttle.recordFailure('1.1.1.1');
  t.ok(throttle.isThrottled('1.1.1.1'));
  t.notOk(throttle.isThrottled('2.2.2.2'), 'other keys are not affected');
  throttle.forgive('1.1.1.1');
  t.notOk(throttle.isThrottled('1.1.1.1'), 'a failure taken back');
  throttle.forgive('3.3.3.3');
  t.notOk(throttle.isThrottled('3.3.3.3'), 'nothing to take back: no effect');
  throttle.recordFailure('1.1.1.1');
  now = 1000;
  t.notOk(throttle.isThrottled('1.1.1.1'), 'a new window starts afresh');
});
