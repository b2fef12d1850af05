import t, { type Test } from 'tap';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { MemoryStore } from '../../src/session/memory-store.js';
import { createRedisClient, RedisStore } from '../../src/session/redis-store.js';
import type { Session } from '../../src/session/session.js';
import { SessionManager, type ResumeResult, type SessionManagerOptions } from '../../src/session/sessions.js';
import type { KeyValueStore } from '../../src/session/store.js';
import { sessionStoreKey, TicketCodec, type Ticket } from '../../src/session/ticket.js';
import { startRedis } from '../support/redis.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
const HOUR = 3_600_000;

/** Real time plus an offset the test moves. */
class TestClock {
  #offset = 0;
  now = () => Date.now() + this.#offset;
  advance(ms: number): void {
    this.#offset += ms;
  }
}

interface Env {
  store: KeyValueStore;
  clock: TestClock;
  /** Lets `ms` of idle time pass for the store's TTLs. */
  passIdle(ms: number): Promise<void>;
  close(): Promise<void>;
}

function manager(env: Env, options: Partial<SessionManagerOptions> = {}): SessionManager {
  return new SessionManager({ store: env.store, secret: SECRET, idleTimeoutMs: 20 * 60_000, clock: env.clock.now, ...options });
}

function aSession(clock: TestClock, overrides: Partial<Session> = {}): Session {
  const now = clock.now();
  return {
    subject: 'subject-alice',
    user: 'alice',
    claims: { email: 'alice@example.test', name: 'Alice', groups: ['staff'] },
    idToken: 'id-token',
    accessToken: 'access-token',
    refreshToken: 'refresh-token',
    tokenExpiresAt: now + 300_000,
    sid: 'idp-session-1',
    createdAt: now,
    expiresAt: now + HOUR,
    ...overrides,
  };
}

type Resumed = Extract<ResumeResult, { ok: true }>;

/** A new session resumed twice, one after the other (two requests with the same cookie). */
async function resumedTwice(sessions: SessionManager, env: Env): Promise<{ cookieValue: string; first: Resumed; second: Resumed }> {
  const { cookieValue } = await sessions.create(aSession(env.clock));
  const first = await sessions.resume(cookieValue);
  const second = await sessions.resume(cookieValue);
  if (!first.ok || !second.ok) throw new Error('both resume');
  return { cookieValue, first, second };
}

function ticketOf(cookieValue: string): Ticket {
  const ticket = new TicketCodec(SECRET).decode(cookieValue);
  if (!ticket) throw new Error('the manager issued an undecodable cookie');
  return ticket;
}

/** A real store, wrapped to count the calls it receives. */
function counting(inner: KeyValueStore): { store: KeyValueStore; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const store = new Proxy(inner, {
    get(target, method) {
      const value: unknown = Reflect.get(target, method);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.set(String(method), (calls.get(String(method)) ?? 0) + 1);
        return value.apply(target, args) as unknown;
      };
    },
  });
  return { store, calls };
}

/** A real store whose `expire` fails, as when Redis is briefly unreachable. */
function withFailingExpire(inner: KeyValueStore): KeyValueStore {
  return new Proxy(inner, {
    get(target, method) {
      if (method === 'expire') return () => Promise.reject(new Error('store unreachable'));
      const value: unknown = Reflect.get(target, method);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function runSessionSuite(t: Test, name: string, makeEnv: () => Promise<Env>): void {
  const test = (title: string, body: (t: Test, env: Env) => Promise<void>) =>
    t.test(`${name}: ${title}`, async (t) => {
      const env = await makeEnv();
      t.teardown(() => env.close());
      await body(t, env);
    });

  test('a created session resumes from its cookie', async (t, env) => {
    const sessions = manager(env);
    const session = aSession(env.clock);
    const { cookieValue } = await sessions.create(session);
    const resumed = await sessions.resume(cookieValue);
    t.equal(resumed.ok, true);
    if (resumed.ok) t.same(resumed.session, session);
  });

  test('no cookie means absent', async (t, env) => {
    const sessions = manager(env);
    t.same(await sessions.resume(undefined), { ok: false, reason: 'absent' });
    t.same(await sessions.resume(''), { ok: false, reason: 'absent' });
  });

  test('a tampered, foreign or malformed cookie is invalid', async (t, env) => {
    const sessions = manager(env);
    const { cookieValue } = await sessions.create(aSession(env.clock));
    const flipped = cookieValue.slice(0, 10) + (cookieValue[10] === 'A' ? 'B' : 'A') + cookieValue.slice(11);
    const foreign = (await manager(env, { secret: 'another-secret-that-is-32-bytes-or-more' }).create(aSession(env.clock))).cookieValue;
    for (const cookie of [flipped, foreign, 'v1.garbage', cookieValue + 'x', '%00'.repeat(40)]) {
      t.same(await sessions.resume(cookie), { ok: false, reason: 'invalid' }, cookie);
    }
  });

  test('a record that does not open under the ticket is invalid, even another session’s record', async (t, env) => {
    const sessions = manager(env);
    const victim = await sessions.create(aSession(env.clock));
    const other = await sessions.create(aSession(env.clock, { user: 'mallory' }));
    const otherRecord = await env.store.get(sessionStoreKey(ticketOf(other.cookieValue)));
    if (!otherRecord) throw new Error('the record was stored');
    await env.store.set(sessionStoreKey(ticketOf(victim.cookieValue)), otherRecord, 60_000);
    t.same(await sessions.resume(victim.cookieValue), { ok: false, reason: 'invalid' });
  });

  test('a valid cookie without a record is unknown', async (t, env) => {
    const sessions = manager(env);
    const codec = new TicketCodec(SECRET);
    t.same(await sessions.resume(codec.encode(codec.issue())), { ok: false, reason: 'unknown' });
  });

  test('an idle session ends after the idle time-out', async (t, env) => {
    const sessions = manager(env, { idleTimeoutMs: 300 });
    const { cookieValue } = await sessions.create(aSession(env.clock));
    await env.passIdle(450);
    t.same(await sessions.resume(cookieValue), { ok: false, reason: 'unknown' });
  });

  test('activity keeps a session alive past the idle time-out', async (t, env) => {
    const sessions = manager(env, { idleTimeoutMs: 300 });
    const { cookieValue } = await sessions.create(aSession(env.clock));
    for (let request = 0; request < 6; request++) {
      await env.passIdle(100);
      t.equal((await sessions.resume(cookieValue)).ok, true, `after ${(request + 1) * 100} ms`);
    }
  });

  test('a session past its absolute lifetime is expired and deleted, even while the store holds it', async (t, env) => {
    const replica = manager(env);
    // Another replica whose clock is ahead: the store's TTL has not run out yet.
    const ahead = manager(env, { clock: () => env.clock.now() + 2 * HOUR });
    const { cookieValue } = await replica.create(aSession(env.clock));
    t.match(await ahead.resume(cookieValue), { ok: false, reason: 'expired', session: { user: 'alice' } });
    t.same(await replica.resume(cookieValue), { ok: false, reason: 'unknown' });
    t.equal(await replica.endByUser('alice'), 0, 'index entries are gone too');
  });

  test('a session cannot be created past its absolute lifetime', async (t, env) => {
    const sessions = manager(env);
    await t.rejects(sessions.create(aSession(env.clock, { expiresAt: env.clock.now() - 1 })));
  });

  test('resuming reads the store at most once and extends the idle time-out lazily', async (t, env) => {
    const { store, calls } = counting(env.store);
    const sessions = manager({ ...env, store }, { idleTimeoutMs: 60_000 });
    const { cookieValue } = await sessions.create(aSession(env.clock));
    calls.clear();
    for (let request = 0; request < 20; request++) await sessions.resume(cookieValue);
    const writes = () => [...calls.keys()].filter((method) => method !== 'peek' && method !== 'getCached');
    t.equal(calls.get('peek'), 20, 'every request looks at the local copy first');
    t.ok((calls.get('getCached') ?? 0) <= 20, 'and reads the store only when there is none');
    t.same(writes(), [], 'no write');
    env.clock.advance(6_000);
    await sessions.resume(cookieValue);
    for (let request = 0; request < 5; request++) await sessions.resume(cookieValue);
    t.same(writes(), ['expire'], 'one extension per tenth of the idle time-out');
    t.equal(calls.get('expire'), 1);
    const otherReplica = manager({ ...env, store }, { idleTimeoutMs: 60_000 });
    await otherReplica.resume(cookieValue);
    t.equal(calls.get('expire'), 2, 'a replica seeing the session for the first time extends it');
  });

  test('a failed extension is reported, not thrown, and retried on the next request', async (t, env) => {
    const errors: unknown[] = [];
    const sessions = manager({ ...env, store: withFailingExpire(env.store) }, { onError: (error) => errors.push(error) });
    const { cookieValue } = await sessions.create(aSession(env.clock));
    env.clock.advance(60_000);
    t.equal((await sessions.resume(cookieValue)).ok, true);
    await nextTurn();
    t.equal((await sessions.resume(cookieValue)).ok, true);
    await nextTurn();
    t.equal(errors.length, 2);
    t.match(errors[0], { message: 'store unreachable' });
  });

  test('an unchanged record is decrypted once and shared, frozen', async (t, env) => {
    const sessions = manager(env);
    const { first, second } = await resumedTwice(sessions, env);
    t.equal(first.session, second.session);
    t.ok(Object.isFrozen(first.session));
  });

  test('an update is saved and restarts the idle time-out', async (t, env) => {
    const sessions = manager(env, { idleTimeoutMs: 400 });
    const { cookieValue, handle } = await sessions.create(aSession(env.clock));
    await env.passIdle(250);
    const renewed = aSession(env.clock, { accessToken: 'renewed-access-token' });
    t.equal(await sessions.update(handle, renewed), true);
    await env.passIdle(250);
    const resumed = await sessions.resume(cookieValue);
    t.equal(resumed.ok && resumed.session.accessToken, 'renewed-access-token');
  });

  test('an update after the session ended does not bring it back', async (t, env) => {
    const sessions = manager(env);
    const { cookieValue, handle } = await sessions.create(aSession(env.clock));
    await sessions.end(handle);
    t.equal(await sessions.update(handle, aSession(env.clock, { accessToken: 'renewed' })), false);
    t.same(await sessions.resume(cookieValue), { ok: false, reason: 'unknown' });
  });

  test('an update past the absolute lifetime ends the session', async (t, env) => {
    const sessions = manager(env);
    const { cookieValue, handle } = await sessions.create(aSession(env.clock));
    t.equal(await sessions.update(handle, aSession(env.clock, { expiresAt: env.clock.now() - 1 })), false);
    t.same(await sessions.resume(cookieValue), { ok: false, reason: 'unknown' });
  });

  test('an ended session is unknown, and leaves no index entry', async (t, env) => {
    const sessions = manager(env);
    const { cookieValue } = await sessions.create(aSession(env.clock));
    const resumed = await sessions.resume(cookieValue);
    if (!resumed.ok) throw new Error('it resumes');
    await sessions.end(resumed.handle);
    t.same(await sessions.resume(cookieValue), { ok: false, reason: 'unknown' });
    t.equal(await sessions.endByUser('alice'), 0);
    t.equal(await sessions.endBySid('idp-session-1'), 0);
  });

  test('signing out everywhere ends every session of the user, found by name, e-mail or subject', async (t, env) => {
    const sessions = manager(env);
    const alice = () => sessions.create(aSession(env.clock)).then((created) => created.cookieValue);
    const aliceCookies = [await alice(), await alice()];
    const bob = await sessions.create(aSession(env.clock, { user: 'bob', subject: 'subject-bob', claims: { email: 'bob@example.test' }, sid: 'idp-session-2' }));
    t.equal(await sessions.endByUser('alice'), 2);
    for (const cookie of aliceCookies) t.same(await sessions.resume(cookie), { ok: false, reason: 'unknown' });
    t.equal((await sessions.resume(bob.cookieValue)).ok, true, 'other users keep theirs');
    await alice();
    t.equal(await sessions.endByUser('alice@example.test'), 1);
    await alice();
    t.equal(await sessions.endByUser('subject-alice'), 1);
    t.equal(await sessions.endByUser('nobody'), 0);
    await alice();
    t.equal(await sessions.endByUser('ALICE@Example.TEST'), 1, 'user name and e-mail in any case');
    await sessions.create(aSession(env.clock, { user: 'Carol.Smith', subject: 'Subject-Carol', claims: { email: 'Carol.Smith@Example.test' } }));
    t.equal(await sessions.endByUser('subject-carol'), 0, 'the subject exactly');
    t.equal(await sessions.endByUser('carol.smith'), 1);
    await sessions.create(aSession(env.clock, { user: 'Carol.Smith', subject: 'Subject-Carol', claims: { email: 'Carol.Smith@Example.test' } }));
    t.equal(await sessions.endByUser('Subject-Carol'), 1);
  });

  test('a refresh that brings a new e-mail address moves the session to it in the index', async (t, env) => {
    const sessions = manager(env);
    const { cookieValue } = await sessions.create(aSession(env.clock));
    const resumed = await sessions.resume(cookieValue);
    if (!resumed.ok) throw new Error('it resumes');
    t.equal(await sessions.update(resumed.handle, { ...resumed.session, claims: { ...resumed.session.claims, email: 'alice@new.example.test' } }), true);
    t.equal(await sessions.endByUser('alice@example.test'), 0, 'no longer found by the old address');
    t.equal(await sessions.endByUser('alice@new.example.test'), 1, 'found by the new one');
    t.same(await sessions.resume(cookieValue), { ok: false, reason: 'unknown' });
  });

  test('back-channel logout ends the sessions of one IdP session only', async (t, env) => {
    const sessions = manager(env);
    const first = await sessions.create(aSession(env.clock, { sid: 'idp-session-1' }));
    const second = await sessions.create(aSession(env.clock, { sid: 'idp-session-1' }));
    const other = await sessions.create(aSession(env.clock, { sid: 'idp-session-2' }));
    t.equal(await sessions.endBySid('idp-session-1'), 2);
    t.equal((await sessions.resume(first.cookieValue)).ok, false);
    t.equal((await sessions.resume(second.cookieValue)).ok, false);
    t.equal((await sessions.resume(other.cookieValue)).ok, true);
  });

  test('index entries of idle-expired sessions are pruned at the next sign-in', async (t, env) => {
    const { store, calls } = counting(env.store);
    const sessions = manager({ ...env, store }, { idleTimeoutMs: 300 });
    await sessions.create(aSession(env.clock));
    await env.passIdle(450);
    await sessions.create(aSession(env.clock));
    t.ok((calls.get('removeFromSet') ?? 0) >= 4, 'the stale entry leaves user, subject, e-mail and sid indexes');
    t.equal(await sessions.endByUser('alice'), 1);
  });

  test('token refresh is single-flight across replicas: one refreshes, the other waits', async (t, env) => {
    const replicaA = manager(env);
    const replicaB = manager(env);
    const { cookieValue } = await replicaA.create(aSession(env.clock));
    const [a, b] = await Promise.all([replicaA.resume(cookieValue), replicaB.resume(cookieValue)]);
    if (!a.ok || !b.ok) throw new Error('both resume');
    let refreshes = 0;
    let refreshedAt = 0;
    const refresh = async () => {
      refreshes++;
      await sleep(150);
      refreshedAt = Date.now();
      return 'refreshed';
    };
    const waitedUntil: number[] = [];
    const results = await Promise.all(
      [replicaA.withRefreshLock(a.handle, refresh), replicaB.withRefreshLock(b.handle, refresh)].map((result) =>
        result.finally(() => waitedUntil.push(Date.now())),
      ),
    );
    t.equal(refreshes, 1);
    t.same(results.filter((result) => result !== null), ['refreshed']);
    t.ok(Math.min(...waitedUntil) >= refreshedAt, 'the waiter returns only once the refresh is done');
  });

  test('a caller that gets the lock after a refresh elsewhere does not refresh again', async (t, env) => {
    const sessions = manager(env);
    const { cookieValue, first: early, second: late } = await resumedTwice(sessions, env);
    const renewed = aSession(env.clock, { refreshToken: 'rotated-refresh-token' });
    t.equal(await sessions.withRefreshLock(early.handle, () => sessions.update(early.handle, renewed)), true);
    let refreshedAgain = false;
    t.equal(await sessions.withRefreshLock(late.handle, async () => (refreshedAgain = true)), null);
    t.equal(refreshedAgain, false, 'the rotated refresh token is not replaced by the old one');
    const reloaded = await sessions.resume(cookieValue);
    if (!reloaded.ok) throw new Error('it resumes');
    t.equal(reloaded.session.refreshToken, 'rotated-refresh-token');
    t.equal(await sessions.withRefreshLock(reloaded.handle, async () => 'runs'), 'runs');
  });

  test('the refresh lock is released when the refresh fails', async (t, env) => {
    const sessions = manager(env);
    const { handle } = await sessions.create(aSession(env.clock));
    await t.rejects(
      sessions.withRefreshLock(handle, async () => {
        throw new Error('the IdP refused');
      }),
      { message: 'the IdP refused' },
    );
    t.equal(await sessions.withRefreshLock(handle, async () => 'again'), 'again');
  });
}

runSessionSuite(t, 'memory', async () => {
  const clock = new TestClock();
  const store = new MemoryStore({ clock: clock.now });
  return {
    store,
    clock,
    passIdle: async (ms) => clock.advance(ms),
    close: () => store.close(),
  };
});

const redis = await startRedis();
t.teardown(() => redis.stop());
let prefixes = 0;

runSessionSuite(t, 'redis', async () => {
  const store = new RedisStore(createRedisClient({ url: redis.url, tls: false, keyPrefix: `sessions-${++prefixes}:` }));
  return { store, clock: new TestClock(), passIdle: (ms) => sleep(ms), close: () => store.close() };
});

t.test('redis: a dump of Redis shows no token, claim, e-mail, user name or ticket in clear', async (t) => {
  const keyPrefix = 'dump-test:';
  const store = new RedisStore(createRedisClient({ url: redis.url, tls: false, keyPrefix }));
  const raw = new Redis(redis.url);
  t.teardown(async () => {
    await store.close();
    await raw.quit();
  });
  const clock = new TestClock();
  const sessions = new SessionManager({ store, secret: SECRET, idleTimeoutMs: 60_000 });
  const cleartext = {
    user: 'zed-user-name-7f3a',
    subject: 'zed-subject-7f3a',
    email: 'zed.mail.7f3a@example.test',
    name: 'Zed Display Name 7f3a',
    group: 'zed-group-7f3a',
    sid: 'zed-idp-session-7f3a',
    idToken: 'zed-id-token-7f3a',
    accessToken: 'zed-access-token-7f3a',
    refreshToken: 'zed-refresh-token-7f3a',
  };
  const { cookieValue } = await sessions.create(
    aSession(clock, {
      ...cleartext,
      claims: { email: cleartext.email, name: cleartext.name, groups: [cleartext.group], sub: cleartext.subject },
    }),
  );
  const resumed = await sessions.resume(cookieValue);
  if (!resumed.ok) throw new Error('it resumes');
  const ticket = ticketOf(cookieValue);
  const dump = await sessions.withRefreshLock(resumed.handle, () => dumpRedis(raw, keyPrefix));
  if (!dump) throw new Error('the lock was free');
  t.same(dump.keys.map((key) => key.split(':')[1]).sort(), ['lock', 'session', 'sid', 'user', 'user', 'user'], 'record, lock and indexes');
  const forbidden = [...Object.values(cleartext), ticket.id.toString('base64url'), ticket.id.toString('hex'), cookieValue];
  for (const text of forbidden) t.notOk(dump.text.includes(text), `no "${text}" in keys or values`);
  for (const bytes of [ticket.id, ticket.key]) t.notOk(dump.bytes.includes(bytes), 'no raw ticket bytes');
});

async function dumpRedis(raw: Redis, keyPrefix: string): Promise<{ keys: string[]; bytes: Buffer; text: string }> {
  const keys = await raw.keys(`${keyPrefix}*`);
  const parts: Buffer[] = [Buffer.from(keys.join('\n'))];
  for (const key of keys) {
    const type = await raw.type(key);
    if (type === 'string') parts.push((await raw.getBuffer(key)) ?? Buffer.alloc(0));
    else if (type === 'set') parts.push(...(await raw.smembersBuffer(key)));
    else throw new Error(`unexpected ${type} at ${key}`);
  }
  const bytes = Buffer.concat(parts);
  return { keys, bytes, text: bytes.toString('latin1') };
}
