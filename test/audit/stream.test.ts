import { Writable } from 'node:stream';
import t from 'tap';
import { AuditStream, runAuditCommand, type AuditRecord } from '../../src/audit/index.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { createRedisClient } from '../../src/session/redis-store.js';
import { startRedis } from '../support/redis.js';

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

function configFor(redisUrl: string, store: 'redis' | 'memory' = 'redis'): Config {
  return configSchema.parse({
    upstream: { url: 'http://127.0.0.1:8080' },
    publicUrl: 'http://127.0.0.1:4180',
    provider: { issuerUrl: 'http://127.0.0.1:9000', clientId: 'portal', clientSecret: 'client-secret' },
    session: { store, secret: 'a-session-secret-of-at-least-32-bytes!' },
    redis: { url: redisUrl, keyPrefix: 'audit-test:' },
  });
}

async function run(config: Config, values: Record<string, string | boolean>, localClock?: () => number) {
  const io = { stdout: new Capture(), stderr: new Capture() };
  const code = await runAuditCommand(config, values, io, localClock);
  return { code, stdout: io.stdout.text, stderr: io.stderr.text };
}

function record(event: AuditRecord['event'], fields: Partial<AuditRecord> = {}): AuditRecord {
  return { time: new Date().toISOString(), event, method: 'session', ip: '192.0.2.1', requestId: 'r', ...fields };
}

t.test('the Redis audit stream', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const config = configFor(redis.url);
  const client = createRedisClient(config.redis);
  t.teardown(() => client.disconnect());

  t.test('records read back whole, filtered by user, client id and event, newest N oldest first', async (t) => {
    const stream = new AuditStream(client, 1000);
    await client.del('authlog');
    const written = [
      record('login', { user: 'Alice', userAgent: 'Mozilla/5.0' }),
      record('login_failed', { code: 'unknown_state', reason: 'the state is unknown, expired or was already used' }),
      record('api_auth', { clientId: 'reporting-job', method: 'bearer' }),
      record('logout', { user: 'alice', reason: 'the user signed out' }),
      record('api_auth_failed', { clientId: 'reporting-job', method: 'client-certificate', reason: 'Certificate token validation failed: Audience validation failed.' }),
    ];
    for (const entry of written) await stream.append(entry);
    t.equal(await client.xlen('authlog'), 5, 'under <keyPrefix>authlog');
    t.same(await stream.read({ limit: 100 }), written);
    t.same(await stream.read({ user: 'ALICE', limit: 100 }), [written[0], written[3]], 'user names match without case');
    t.same(await stream.read({ clientId: 'reporting-job', limit: 100 }), [written[2], written[4]]);
    t.same(await stream.read({ event: 'login_failed', limit: 100 }), [written[1]]);
    t.same(await stream.read({ limit: 2 }), [written[3], written[4]]);
  });

  t.test('time bounds use the stream ids; reading pages through a long stream', async (t) => {
    const stream = new AuditStream(client, 10_000);
    await client.del('authlog');
    for (let i = 0; i < 1200; i++) await stream.append(record(i % 400 === 0 ? 'login_failed' : 'login', { user: `user${i}` }));
    const failures = await stream.read({ event: 'login_failed', limit: 100 });
    t.same(
      failures.map((entry) => entry.user),
      ['user0', 'user400', 'user800'],
      'matches are found across pages',
    );
    t.equal((await stream.read({ since: new Date(Date.now() - 3_600_000), limit: 5000 })).length, 1200);
    t.same(await stream.read({ until: new Date(Date.now() - 3_600_000), limit: 100 }), []);
    t.same(await stream.read({ since: new Date(Date.now() + 3_600_000), limit: 100 }), []);
  });

  t.test('the stream is capped near audit.stream.maxLength', async (t) => {
    const stream = new AuditStream(client, 50);
    await client.del('authlog');
    for (let i = 0; i < 1000; i++) await stream.append(record('login', { user: `user${i}` }));
    const length = await client.xlen('authlog');
    t.ok(length >= 50 && length < 250, `${length} entries kept`);
    t.equal((await stream.read({ limit: 1 }))[0]!.user, 'user999', 'the newest are kept');
  });

  t.test('the command prints a table, control characters escaped, or JSON lines', async (t) => {
    const stream = new AuditStream(client, 1000);
    await client.del('authlog');
    await stream.append(record('login_failed', { time: '2026-03-01T10:00:00.000Z', code: 'provider_error', reason: 'the identity provider answered x: \u001b[31mcall 555-0100\u001b[0m' }));
    await stream.append(record('api_auth', { time: '2026-03-01T10:00:01.000Z', clientId: 'reporting-job', method: 'bearer', ip: '10.0.0.9' }));
    const table = await run(config, {});
    t.equal(table.code, 0);
    t.equal(
      table.stdout,
      [
        'TIME                      EVENT         USER  CLIENT         METHOD   IP         REASON',
        '2026-03-01T10:00:00.000Z  login_failed  -     -              session  192.0.2.1  the identity provider answered x: \\x1b[31mcall 555-0100\\x1b[0m',
        '2026-03-01T10:00:01.000Z  api_auth      -     reporting-job  bearer   10.0.0.9   -',
        '',
      ].join('\n'),
    );
    const json = await run(config, { json: true, client: 'reporting-job' });
    t.equal(json.code, 0);
    t.same(JSON.parse(json.stdout), { time: '2026-03-01T10:00:01.000Z', event: 'api_auth', clientId: 'reporting-job', method: 'bearer', ip: '10.0.0.9', requestId: 'r' });
  });

  t.test("the command's relative times count from Redis's clock, not the machine's", async (t) => {
    const stream = new AuditStream(client, 1000);
    await client.del('authlog');
    await stream.append(record('login', { user: 'alice' }));
    const aDayAhead = () => Date.now() + 86_400_000;
    const recent = await run(config, { json: true, since: '1h' }, aDayAhead);
    t.equal(recent.code, 0);
    t.match(JSON.parse(recent.stdout), { event: 'login', user: 'alice' }, 'a workstation a day ahead still finds the last hour');
    t.equal((await run(config, { json: true, until: '1h' }, aDayAhead)).stdout, '', 'and nothing before it');
  });

  t.test('the command says clearly when there is no stream to read', async (t) => {
    const memory = await run(configFor(redis.url, 'memory'), {});
    t.equal(memory.code, 1);
    t.match(memory.stderr, /the audit stream is kept in Redis, and session.store is "memory"/);
    const unreachable = await run(configFor('redis://127.0.0.1:1'), {});
    t.equal(unreachable.code, 1);
    t.match(unreachable.stderr, /^oidc-sidecar audit: cannot read the audit stream: /);
    t.equal((await run(config, { since: 'last week' })).code, 2);
  });
});
