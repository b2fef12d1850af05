import { setImmediate as tick } from 'node:timers/promises';
import t from 'tap';
import { AUDIT_EVENTS, createAuditLog, type AuditRecord, type AuditStream } from '../../src/audit/index.js';
import { parseQuery } from '../../src/audit/command.js';
import { createLogger } from '../../src/log/index.js';
import { Metrics } from '../../src/metrics/index.js';
import { parseExposition } from '../support/metrics.js';

function capture(level = 'info') {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(line) });
  const entries = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, entries };
}

async function counted(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  return parseExposition((await metrics.exposition()).body).value(name, labels);
}

const REQUEST = { ip: '192.0.2.7', userAgent: 'Mozilla/5.0', requestId: 'req-1' };

t.test('each event is one JSON line marked "log":"audit", with its time and fields, and is counted', async (t) => {
  const { logger, entries } = capture();
  const metrics = new Metrics();
  const audit = createAuditLog({ logger, enabled: true, metrics });
  audit.record({ event: 'login', user: 'alice', method: 'session', ...REQUEST });
  audit.record({ event: 'login_failed', method: 'session', code: 'unknown_state', reason: 'the state is unknown, expired or was already used', ...REQUEST });
  audit.record({ event: 'api_auth_failed', clientId: 'reporting-job', method: 'bearer', reason: 'the token expired', ...REQUEST });
  t.match(entries(), [
    { log: 'audit', level: 30, time: /^\d{4}-\d\d-\d\dT/, event: 'login', user: 'alice', method: 'session', ip: '192.0.2.7', userAgent: 'Mozilla/5.0', requestId: 'req-1' },
    { log: 'audit', event: 'login_failed', code: 'unknown_state', reason: /state is unknown/ },
    { log: 'audit', event: 'api_auth_failed', clientId: 'reporting-job', method: 'bearer' },
  ]);
  t.equal(await counted(metrics, 'oidc_sidecar_auth_events_total', { event: 'login', method: 'session', result: 'success' }), 1);
  t.equal(await counted(metrics, 'oidc_sidecar_auth_events_total', { event: 'login_failed', result: 'unknown_state' }), 1, 'the code is the result');
  t.equal(await counted(metrics, 'oidc_sidecar_auth_events_total', { event: 'api_auth_failed', result: 'failure' }), 1, 'a failure without code');
});

t.test('log.level quiets the logs, not the audit trail', async (t) => {
  for (const level of ['warn', 'error', 'silent']) {
    const { logger, entries } = capture(level);
    createAuditLog({ logger, enabled: true, metrics: new Metrics() }).record({ event: 'login', user: 'alice', method: 'session', ...REQUEST });
    logger.info('an info line');
    t.match(entries(), [{ log: 'audit', event: 'login', user: 'alice' }], `log.level ${level}: the audit line, and only it`);
  }
});

t.test('with audit.enabled off nothing is written, but events are still counted', async (t) => {
  const { logger, entries } = capture();
  const metrics = new Metrics();
  const appended: AuditRecord[] = [];
  const stream = { append: async (record: AuditRecord) => void appended.push(record) } as unknown as AuditStream;
  createAuditLog({ logger, enabled: false, metrics, stream }).record({ event: 'logout', user: 'alice', method: 'session' });
  await tick();
  t.same(entries(), []);
  t.same(appended, []);
  t.equal(await counted(metrics, 'oidc_sidecar_auth_events_total', { event: 'logout' }), 1);
});

t.test('the stream gets the same record, with its time; a long reason is cut', async (t) => {
  const { logger, entries } = capture();
  const appended: AuditRecord[] = [];
  const stream = { append: async (record: AuditRecord) => void appended.push(record) } as unknown as AuditStream;
  createAuditLog({ logger, enabled: true, metrics: new Metrics(), stream }).record({ event: 'refresh_failed', user: 'alice', reason: 'x'.repeat(5000), ...REQUEST });
  await tick();
  t.equal(appended.length, 1);
  t.match(appended[0], { time: /^\d{4}-\d\d-\d\dT.*Z$/, event: 'refresh_failed', user: 'alice', ...REQUEST });
  t.equal(appended[0]!.reason!.length, 501);
  t.equal(entries()[0]!.reason, appended[0]!.reason);
});

t.test('a failed stream write never fails the caller: it is counted and logged', async (t) => {
  const { logger, entries } = capture();
  const metrics = new Metrics();
  const stream = { append: () => Promise.reject(new Error('Redis did not answer within 2000 ms')) } as unknown as AuditStream;
  const audit = createAuditLog({ logger, enabled: true, metrics, stream });
  t.doesNotThrow(() => audit.record({ event: 'login', user: 'alice', method: 'session', ...REQUEST }));
  await tick();
  await tick();
  t.equal(await counted(metrics, 'oidc_sidecar_session_store_errors_total', { operation: 'audit_append' }), 1);
  t.match(entries(), [
    { log: 'audit', event: 'login' },
    { level: 40, msg: 'writing an audit event to the Redis stream failed', event: 'login', requestId: 'req-1', err: { message: /did not answer/ } },
  ]);
  t.equal(entries()[1]!.log, undefined, 'the warning is not itself an audit event');
});

t.test('the audit command reads durations, ISO times, events and limits, and names a bad option', async (t) => {
  const now = Date.parse('2026-03-01T12:00:00Z');
  t.same(parseQuery({}, now), { user: undefined, clientId: undefined, event: undefined, since: undefined, until: undefined, limit: 100 });
  t.match(parseQuery({ user: 'alice', client: 'job', event: 'login_failed', since: '2h', until: '30m', limit: '5' }, now), {
    user: 'alice',
    clientId: 'job',
    event: 'login_failed',
    since: new Date('2026-03-01T10:00:00Z'),
    until: new Date('2026-03-01T11:30:00Z'),
    limit: 5,
  });
  t.same(parseQuery({ since: '7d' }, now).since, new Date('2026-02-22T12:00:00Z'));
  t.same(parseQuery({ since: '2026-02-01' }, now).since, new Date('2026-02-01T00:00:00Z'));
  t.same(parseQuery({ until: '2026-02-01T08:30:00+01:00' }, now).until, new Date('2026-02-01T07:30:00Z'));
  for (const event of AUDIT_EVENTS) t.equal(parseQuery({ event }, now).event, event);
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ since: 'yesterday' }, /^--since: expected a duration ago/],
    [{ until: '2h ago' }, /^--until: /],
    [{ since: '2026-13-45' }, /^--since: /],
    [{ limit: '0' }, /^--limit: /],
    [{ limit: 'ten' }, /^--limit: /],
    [{ event: 'signin' }, /^--event: "signin" is not an audit event/],
  ];
  for (const [values, message] of bad) t.throws(() => parseQuery(values, now), message, JSON.stringify(values));
});

t.test('a flood of failures anyone can cause: the first of each kind a minute written, the rest summed up', async (t) => {
  const { logger, entries } = capture();
  const metrics = new Metrics();
  const appended: AuditRecord[] = [];
  const stream = { append: async (record: AuditRecord) => void appended.push(record) } as unknown as AuditStream;
  let now = Date.parse('2026-03-01T12:00:00Z');
  const audit = createAuditLog({ logger, enabled: true, metrics, stream, clock: () => now });
  t.teardown(() => audit.close());
  const junk = (ip: string) => ({ event: 'api_auth_failed', method: 'bearer', code: 'malformed', reason: 'the bearer token is not a JWT', ip }) as const;
  for (let i = 0; i < 25; i++) audit.record(junk('203.0.113.9'));
  for (let i = 0; i < 3; i++) audit.record(junk('198.51.100.4'));
  audit.record({ event: 'api_auth_failed', method: 'bearer', code: 'expired', reason: 'the token expired', ip: '192.0.2.7' });
  audit.record({ event: 'login', user: 'alice', method: 'session', ...REQUEST });
  for (let i = 0; i < 30; i++) audit.record({ event: 'token_refreshed', user: 'alice', method: 'session' });
  await tick();
  const written = entries();
  t.equal(written.filter((entry) => entry.code === 'malformed').length, 20, 'twenty of a kind written one by one');
  t.equal(written.filter((entry) => entry.code === 'expired').length, 1, 'another kind has a quota of its own');
  t.equal(written.filter((entry) => entry.event === 'token_refreshed').length, 30, 'events nobody can cause at will are all written');
  t.equal(written.filter((entry) => entry.event === 'login').length, 1);
  t.equal(appended.length, written.length, 'the stream holds what stdout does');
  t.equal(await counted(metrics, 'oidc_sidecar_auth_events_total', { event: 'api_auth_failed', method: 'bearer', result: 'malformed' }), 28, 'every failure is counted');

  now += 60_000;
  audit.record(junk('203.0.113.9'));
  await tick();
  const [summary, next] = entries().slice(written.length);
  t.match(summary, {
    log: 'audit',
    event: 'api_auth_failed',
    method: 'bearer',
    code: 'malformed',
    reason: '8 more like this from 2 addresses within 60 s, past the 20 written one by one; the first held back: the bearer token is not a JWT',
  });
  t.equal(summary!.ip, undefined, 'from several addresses: none named');
  t.match(next, { event: 'api_auth_failed', code: 'malformed', ip: '203.0.113.9', reason: 'the bearer token is not a JWT' }, 'a new minute, a new quota');
  t.match(appended.at(-2), { event: 'api_auth_failed', reason: /^8 more like this/, time: '2026-03-01T12:01:00.000Z' });

  for (let i = 0; i < 21; i++) audit.record({ event: 'login_failed', method: 'session', code: 'unknown_state', reason: 'the state is unknown, expired or was already used', ip: '203.0.113.9' });
  audit.close();
  t.match(entries().at(-1), { event: 'login_failed', code: 'unknown_state', ip: '203.0.113.9', reason: /^1 more like this from 203\.0\.113\.9 within 60 s/ }, 'closing writes what was held back');
});

t.test('a summary names the client ids and users its failures named, so a flood of junk cannot hide who was tried', async (t) => {
  const { logger, entries } = capture();
  let now = 0;
  const audit = createAuditLog({ logger, enabled: true, metrics: new Metrics(), clock: () => now });
  const wrongSecret = (clientId: string) => ({ event: 'api_auth_failed', method: 'client-credentials', code: 'secret', reason: 'the client secret does not match', clientId, ip: '203.0.113.9' }) as const;
  for (let i = 0; i < 20; i++) audit.record(wrongSecret('made-up'));
  audit.record(wrongSecret('reporting-job'));
  audit.record(wrongSecret('made-up'));
  for (let i = 0; i < 12; i++) audit.record(wrongSecret(`guess-${i}`));
  for (let i = 0; i < 20; i++) audit.record({ event: 'login_failed', method: 'session', code: 'not_allowed', reason: 'the user is in none of authorization.allowedGroups', user: 'bob' });
  audit.record({ event: 'login_failed', method: 'session', code: 'not_allowed', reason: 'the user is in none of authorization.allowedGroups', user: 'bob' });
  now += 60_000;
  audit.close();
  const [secrets, notAllowed] = entries().slice(-2);
  t.match(secrets, {
    event: 'api_auth_failed',
    code: 'secret',
    reason:
      '14 more like this from 203.0.113.9 within 60 s, past the 20 written one by one; client ids reporting-job, made-up, guess-0, guess-1, guess-2, guess-3, guess-4, guess-5, guess-6, guess-7 and more; the first held back: the client secret does not match',
  });
  t.equal(secrets!.clientId, undefined, 'several client ids: none in the field');
  t.match(notAllowed, { event: 'login_failed', user: 'bob', reason: /^1 more like this from an unknown address within 60 s, past the 20 written one by one; the first held back/ }, 'a single user: in its field');
});

t.test('a summary of failures that came with no address says so', async (t) => {
  const { logger, entries } = capture();
  let now = 0;
  const audit = createAuditLog({ logger, enabled: true, metrics: new Metrics(), clock: () => now });
  for (let i = 0; i < 22; i++) audit.record({ event: 'login_failed', method: 'session', code: 'unknown_state', reason: 'the state is unknown' });
  now += 60_000;
  audit.close();
  t.match(entries().at(-1), { event: 'login_failed', reason: /^2 more like this from an unknown address within 60 s/ });
  t.equal(entries().at(-1)!.ip, undefined);
});
