import { join } from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { AuditStream } from '../../src/audit/index.js';
import { main } from '../../src/cli.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { runSessionsCommand } from '../../src/session/index.js';
import { createRedisClient } from '../../src/session/redis-store.js';
import { request } from '../support/http.js';
import { DEMO_USERS } from '../support/idp.js';
import { startRedis } from '../support/redis.js';
import { NAVIGATION, signIn, startStack } from '../support/stack.js';

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

async function run(config: Config, action: string, values: Record<string, string | boolean>) {
  const io = { stdout: new Capture(), stderr: new Capture() };
  const code = await runSessionsCommand(config, [action], values, io);
  return { code, stdout: io.stdout.text, stderr: io.stderr.text };
}

t.test('sessions list and revoke, on the Redis of running replicas', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url } } });
  t.teardown(() => stack.stop());
  const replica = await stack.addReplica();
  const signedIn = async (cookieHeader: string, baseUrl: string) => (await request(baseUrl + '/', { headers: { ...NAVIGATION, cookie: cookieHeader } })).status === 200;
  const aliceFirst = (await signIn(stack)).cookieHeader;
  const aliceSecond = (await signIn(stack)).cookieHeader;
  const bob = (await signIn(stack, { user: DEMO_USERS.bob })).cookieHeader;
  for (const cookie of [aliceFirst, aliceSecond, bob]) t.ok(await signedIn(cookie, replica.url), 'the other replica holds a copy of each session');

  const listed = await run(stack.config, 'list', { user: 'alice', json: true });
  t.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { session: string; idleTimeoutAt: string });
  t.equal(lines.length, 2, "one line for each of alice's sessions");
  const idleMs = stack.config.session.idleTimeoutMinutes * 60_000;
  for (const line of lines) {
    t.match(line.session, SESSION_ID);
    const idleLeft = Date.parse(line.idleTimeoutAt) - Date.now();
    t.ok(idleLeft > idleMs - 60_000 && idleLeft <= idleMs, 'its idle time-out is about the configured one away');
  }
  t.equal((await run(stack.config, 'list', { user: DEMO_USERS.alice.email, json: true })).stdout.trim().split('\n').length, 2, 'found by e-mail too');
  t.equal((await run(stack.config, 'list', { user: DEMO_USERS.alice.sub, json: true })).stdout.trim().split('\n').length, 2, 'and by subject');
  const table = await run(stack.config, 'list', { user: 'alice' });
  t.match(table.stdout, /^SESSION {36} {2}IDLE TIME-OUT AT\n[A-Za-z0-9_-]{43} {2}\d{4}-\d\d-\d\dT.*Z\n[A-Za-z0-9_-]{43} {2}\d{4}-/);
  t.equal((await run(stack.config, 'list', { user: 'nobody' })).stdout, 'no current sessions\n');

  const one = await run(stack.config, 'revoke', { session: lines[0]!.session });
  t.equal(one.code, 0, one.stderr);
  t.equal(one.stdout, `ended session ${lines[0]!.session}\n`);
  const stillIn = [await signedIn(aliceFirst, replica.url), await signedIn(aliceSecond, replica.url)];
  t.same(stillIn.sort(), [false, true], 'exactly one of the two sessions ended, on the replica holding a copy too');
  t.equal((await run(stack.config, 'list', { user: 'alice', json: true })).stdout.trim().split('\n').length, 1);
  const again = await run(stack.config, 'revoke', { session: lines[0]!.session });
  t.equal(again.code, 1);
  t.match(again.stderr, /no current session .* \(it ended, or the id is mistyped\)/);

  const all = await run(stack.config, 'revoke', { user: DEMO_USERS.alice.email });
  t.equal(all.code, 0, all.stderr);
  t.equal(all.stdout, 'ended 1 session(s)\n');
  for (const url of [stack.sidecar.url, replica.url]) {
    t.notOk(await signedIn(aliceFirst, url), 'alice is signed out everywhere');
    t.notOk(await signedIn(aliceSecond, url));
    t.ok(await signedIn(bob, url), "bob's session is untouched");
  }
  t.equal((await run(stack.config, 'list', { user: 'alice' })).stdout, 'no current sessions\n');
  const anyCase = await run(stack.config, 'revoke', { user: 'BOB' });
  t.equal(anyCase.stdout, 'ended 1 session(s)\n', 'a user name in any case');
  const nobody = await run(stack.config, 'revoke', { user: 'nobody' });
  t.equal(nobody.stdout, 'ended 0 session(s)\n');
  t.match(nobody.stderr, /no current session of "nobody" \(a user name or e-mail in any case, or the exact subject\)/, 'a miss is said');

  const client = createRedisClient(stack.config.redis);
  t.teardown(() => client.disconnect());
  const revocations = await new AuditStream(client, 1000).read({ event: 'logout', limit: 10 });
  t.match(revocations, [
    { event: 'logout', method: 'cli', code: 'revoked', reason: /session \S+ ended by `oidc-sidecar sessions revoke --session`/ },
    { event: 'logout', method: 'cli', code: 'revoked', user: DEMO_USERS.alice.email, reason: '1 session(s) ended by `oidc-sidecar sessions revoke --user`' },
  ]);
});

t.test('bad arguments are refused with a clear line, and no session ends', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const stack = await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url } } });
  t.teardown(() => stack.stop());
  const { cookieHeader } = await signIn(stack);
  const configFile = join(t.testdir({ 'sidecar.yaml': toYaml({ ...stack.config, log: undefined }) }), 'sidecar.yaml');
  const cases: Array<[string[], RegExp]> = [
    [[], /say list or revoke/],
    [['remove'], /"remove" is not list or revoke/],
    [['list'], /list needs --user/],
    [['list', '--session', 'x'.repeat(43)], /list takes --user, not --session/],
    [['revoke'], /revoke needs one of --user or --session/],
    [['revoke', '--user', 'alice', '--session', 'x'.repeat(43)], /revoke needs one of --user or --session/],
    [['revoke', '--user', 'alice', '--json'], /--json is for list/],
    [['revoke', '--session', 'session:abc'], /--session: not a session id/],
    [['revoke', '--user', ''], /--user: empty/],
    [['list', '--user', 'alice', 'extra'], /unexpected argument "extra"/],
  ];
  for (const [args, message] of cases) {
    const io = { stdout: new Capture(), stderr: new Capture(), env: {} };
    t.equal(await main(['sessions', ...args, '--config', configFile], io), 2, args.join(' '));
    t.match(io.stderr.text, message);
    t.match(io.stderr.text, /usage: oidc-sidecar sessions list --user U/);
    t.equal(io.stdout.text, '');
  }
  const answer = await request(stack.sidecar.url + '/', { headers: { ...NAVIGATION, cookie: cookieHeader } });
  t.equal(answer.status, 200, 'the session still works');
});

t.test('without Redis there is nothing the command can reach', async (t) => {
  const base = {
    upstream: { url: 'http://127.0.0.1:8080' },
    publicUrl: 'http://127.0.0.1:4180',
    provider: { issuerUrl: 'http://127.0.0.1:9000', clientId: 'portal', clientSecret: 'client-secret' },
    session: { secret: 'a-session-secret-of-at-least-32-bytes!' },
  };
  const memory = await run(configSchema.parse(base), 'list', { user: 'alice' });
  t.equal(memory.code, 1);
  t.match(memory.stderr, /session\.store is "memory": its sessions live in the sidecar's own memory/);
  const unreachable = await run(configSchema.parse({ ...base, session: { ...base.session, store: 'redis' }, redis: { url: 'redis://127.0.0.1:1' } }), 'revoke', { user: 'alice' });
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, /^oidc-sidecar sessions: cannot reach the session store: /);
  t.equal(unreachable.stdout, '');
});
