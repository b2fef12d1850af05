import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import t from 'tap';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { main, type CliIo } from '../../src/cli.js';
import { freePort, listen } from '../support/free-port.js';
import { request } from '../support/http.js';
import { startIdp } from '../support/idp.js';
import { startPortal } from '../support/portal.js';
import { tsxChildEnv } from '../support/tsx-child.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

const SESSION_SECRET = 'session-secret-0123456789-abcdefghij';
const CLIENT_SECRET = 'client-secret-do-not-print';

const VALID_CONFIG = {
  upstream: { url: 'http://127.0.0.1:8080' },
  publicUrl: 'https://portal.example.com',
  provider: { issuerUrl: 'https://idp.example.com', clientId: 'portal' },
  session: { idleTimeoutMinutes: 90 },
  log: { level: 'info' },
};
const SECRET_ENV = { OIDC_SIDECAR_PROVIDER__CLIENT_SECRET: CLIENT_SECRET, OIDC_SIDECAR_SESSION__SECRET: SESSION_SECRET };

type TestContext = Pick<typeof t, 'testdir'>;

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

function testIo(env: NodeJS.ProcessEnv = SECRET_ENV): CliIo & { stdout: Capture; stderr: Capture } {
  return { stdout: new Capture(), stderr: new Capture(), env };
}

function configFile(t: TestContext, config: object = VALID_CONFIG): string {
  return join(t.testdir({ 'sidecar.yaml': toYaml(config) }), 'sidecar.yaml');
}

t.test('check-config prints the effective configuration with every secret redacted', async (t) => {
  const io = testIo();
  t.equal(await main(['check-config', '--config', configFile(t)], io), 0);
  const printed: unknown = parseYaml(io.stdout.text);
  t.match(printed, {
    listen: { port: 4180 },
    provider: { clientId: 'portal', clientSecret: '[redacted]' },
    session: { secret: '[redacted]', cookie: { secure: true } },
  });
  t.match(io.stderr.text, /^warning: session\.idleTimeoutMinutes is 90/m);
  for (const secret of [CLIENT_SECRET, SESSION_SECRET]) t.notOk((io.stdout.text + io.stderr.text).includes(secret), 'no secret printed');
});

t.test('check-config reads every key and certificate file the configuration names, as start would', async (t) => {
  const dir = t.testdir({ 'not-a-key.pem': 'not a key\n' });
  const io = testIo({ OIDC_SIDECAR_SESSION__SECRET: SESSION_SECRET });
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(
    file,
    toYaml({
      ...VALID_CONFIG,
      provider: { ...VALID_CONFIG.provider, clientAuth: 'private_key_jwt', privateKeyFile: join(dir, 'not-a-key.pem') },
      clients: { signingKeyFile: join(dir, 'missing-signing-key.pem') },
      applications: [{ clientId: 'reporting-job', grantTypes: ['client_certificate'], certificateFile: join(dir, 'missing.cer'), routes: ['^/odata/'] }],
    }),
  );
  t.equal(await main(['check-config', '--config', file], io), 1, 'what start would refuse, check-config refuses');
  t.equal(io.stdout.text, '');
  const lines = io.stderr.text.trim().split('\n');
  t.equal(lines[0], 'configuration error:');
  t.match(lines.slice(1), [/^ {2}provider\.privateKeyFile: ".*not-a-key\.pem" holds no PEM private key$/, /^ {2}clients\.signingKeyFile: cannot read ".*missing-signing-key\.pem" \(ENOENT\)$/, /^ {2}applications\[0\]\.certificateFile: .*missing\.cer/]);
  t.equal(lines.length, 4);
});

t.test('check-config finds the file through OIDC_SIDECAR_CONFIG and accepts -c', async (t) => {
  const file = configFile(t);
  t.equal(await main(['check-config'], testIo({ ...SECRET_ENV, OIDC_SIDECAR_CONFIG: file })), 0);
  t.equal(await main(['check-config', '-c', file], testIo()), 0);
});

t.test('check-config exits 1 with one line per problem on stderr', async (t) => {
  const io = testIo({ OIDC_SIDECAR_SESSION__SECRET: 'too short', OIDC_SIDECAR_NO_SUCH_KEY: 'x' });
  const file = configFile(t, { ...VALID_CONFIG, listen: { port: 'eighty' }, extra: true });
  t.equal(await main(['check-config', '--config', file], io), 1);
  t.equal(io.stdout.text, '');
  t.equal(
    io.stderr.text,
    [
      'configuration error:',
      '  unknown environment variable OIDC_SIDECAR_NO_SUCH_KEY: no configuration key has this name',
      '  listen.port: expected a number, received a string',
      '  provider.clientSecret: is required when provider.clientAuth is "client_secret_basic"',
      '  session.secret: must be at least 32 bytes long (from OIDC_SIDECAR_SESSION__SECRET)',
      '  unknown key "extra"',
      '',
    ].join('\n'),
  );
  t.notOk(io.stderr.text.includes('too short'), 'the refused secret is not printed');
});

t.test('usage errors exit 2 with the usage on stderr; --help prints it on stdout', async (t) => {
  for (const argv of [['frobnicate'], ['check-config', '--verbose'], ['check-config', 'extra-argument'], ['--config']]) {
    const io = testIo();
    t.equal(await main(argv, io), 2, argv.join(' '));
    t.match(io.stderr.text, /^oidc-sidecar: .+\n\nusage:\n/, argv.join(' '));
    t.equal(io.stdout.text, '');
  }
  for (const argv of [['--help'], ['check-config', '-h']]) {
    const io = testIo();
    t.equal(await main(argv, io), 0);
    t.match(io.stdout.text, /^usage:\n {2}oidc-sidecar start .*\n {2}oidc-sidecar check-config /);
  }
});

t.test('start refuses a bad configuration before starting anything', async (t) => {
  const io = testIo({});
  t.equal(await main(['start', '--config', configFile(t)], io), 1);
  t.match(io.stderr.text, /^configuration error:\n {2}provider\.clientSecret: is required/);
});

t.test('start (the default command) serves until SIGTERM, then drains and closes gracefully', async (t) => {
  const portal = await startPortal();
  t.teardown(() => portal.stop());
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const idp = await startIdp({ clients: [{ clientId: 'portal', clientSecret: CLIENT_SECRET, redirectUris: [`${publicUrl}/oauth2/callback`] }] });
  t.teardown(() => idp.stop());
  const file = configFile(t, {
    ...VALID_CONFIG,
    listen: { host: '127.0.0.1', port },
    metrics: { host: '127.0.0.1', port: 0 },
    upstream: { url: portal.url },
    publicUrl,
    provider: { issuerUrl: idp.issuer, clientId: 'portal' },
    routes: { public: ['^/public/'] },
  });
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--config', file], { env: tsxChildEnv(SECRET_ENV) });
  let output = '';
  let errorOutput = '';
  child.stdout.on('data', (chunk: Buffer) => (output += String(chunk)));
  child.stderr.on('data', (chunk: Buffer) => (errorOutput += String(chunk)));
  const exited = once(child, 'exit');
  await until(() => output.includes('oidc-sidecar started'));
  const answer = await request(`${publicUrl}/page`, { headers: { accept: 'application/json' } });
  t.equal(answer.status, 401, 'it serves');
  t.equal((await request(`${publicUrl}/public/page`)).status, 200, 'and forwards to the portal');
  const { metricsUrl } = JSON.parse(output.split('\n').find((line) => line.includes('oidc-sidecar started'))!) as { metricsUrl: string };
  t.equal((await request(`${metricsUrl}/readyz`)).status, 200);
  child.kill('SIGTERM');
  await until(() => output.includes('closing: not ready'));
  const readiness = await request(`${metricsUrl}/readyz`);
  t.equal(readiness.status, 503, 'at once not ready …');
  t.same(JSON.parse(readiness.body), { shuttingDown: 'yes' });
  t.equal((await request(`${publicUrl}/page`, { headers: { accept: 'application/json' } })).status, 401, '… while still serving, so that no request is refused while the pod is taken out');
  const [code] = await exited;
  t.equal(code, 0);
  await t.rejects(request(`${publicUrl}/page`), /ECONNREFUSED/, 'then closed');
  const lines = output.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.match(lines[0], { level: 40, msg: /^session\.idleTimeoutMinutes is 90/ });
  t.match(output, /"msg":"closed"/);
  t.notOk(output.includes(SESSION_SECRET) || output.includes(CLIENT_SECRET), 'no secret logged');
  t.equal(errorOutput, '', 'nothing on stderr: Node 22 and later warn about http-proxy (see test/log)');
});

t.test('a signal while the sidecar is still starting ends it at once', async (t) => {
  // An identity provider that accepts connections and never answers: discovery waits its 10 s.
  const silentIdp = createServer(() => undefined);
  const idpPort = await listen(silentIdp, 0, '127.0.0.1');
  t.teardown(() => silentIdp.close());
  const file = configFile(t, { ...VALID_CONFIG, listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, provider: { issuerUrl: `http://127.0.0.1:${idpPort}`, clientId: 'portal' } });
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--config', file], { env: tsxChildEnv(SECRET_ENV) });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += String(chunk)));
  const exited = once(child, 'exit');
  await until(() => output.includes('idleTimeoutMinutes'), 20_000);
  const signalled = Date.now();
  child.kill('SIGTERM');
  const [code] = await exited;
  t.equal(code, 1);
  t.ok(Date.now() - signalled < 5000, 'without waiting for the provider');
  t.match(output, /"msg":"signal while starting: exiting"/);
  t.notMatch(output, /oidc-sidecar started/);
});

t.test('start exits 1 with a clear line when the sidecar cannot start', async (t) => {
  const blocker = createServer();
  const port = await listen(blocker, 0, '127.0.0.1');
  t.teardown(() => blocker.close());
  const io = testIo();
  const file = configFile(t, { ...VALID_CONFIG, listen: { host: '127.0.0.1', port }, metrics: { host: '127.0.0.1', port: 0 } });
  t.equal(await main(['start', '--config', file], io), 1);
  t.match(io.stdout.text, /"level":60.*"msg":"oidc-sidecar could not start"/);
  t.match(io.stdout.text, /EADDRINUSE/);
});

t.test('an https portal, WebSocket upgrades included, is reached only when its certificate is trusted (NODE_EXTRA_CA_CERTS for a private CA)', async (t) => {
  const dir = t.testdir();
  const keyFile = join(dir, 'portal.key');
  const certFile = join(dir, 'portal.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  const portal = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => res.end(`tls portal ${req.url} ${req.headers['x-forwarded-proto']}`));
  portal.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Portal-Saw: ${req.url}\r\n\r\n`);
  });
  const portalPort = await listen(portal, 0, '127.0.0.1');
  t.teardown(() => portal.close());
  const idp = await startIdp({ clients: [{ clientId: 'portal', clientSecret: CLIENT_SECRET, redirectUris: ['http://127.0.0.1/oauth2/callback'] }] });
  t.teardown(() => idp.stop());

  for (const trusted of [true, false]) {
    const port = await freePort();
    const file = join(dir, 'sidecar.yaml');
    writeFileSync(file, toYaml({
      ...VALID_CONFIG,
      listen: { host: '127.0.0.1', port },
      metrics: { host: '127.0.0.1', port: 0 },
      upstream: { url: `https://127.0.0.1:${portalPort}` },
      publicUrl: `http://127.0.0.1:${port}`,
      provider: { issuerUrl: idp.issuer, clientId: 'portal' },
      routes: { public: ['^/public/'] },
    }));
    const env = tsxChildEnv({ ...SECRET_ENV, ...(trusted ? { NODE_EXTRA_CA_CERTS: certFile } : {}) });
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--config', file], { env });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += String(chunk)));
    await until(() => output.includes('oidc-sidecar started'));
    const answer = await request(`http://127.0.0.1:${port}/public/page?x=1`, { headers: { accept: 'application/json' } });
    const upgraded = await upgradeAnswer(port, '/public/ws');
    child.kill('SIGKILL');
    await once(child, 'exit');
    if (trusted) {
      t.equal(answer.status, 200, 'trusted: forwarded over TLS');
      t.equal(answer.body, 'tls portal /public/page?x=1 http', 'the portal got the request target and X-Forwarded-Proto');
      t.match(upgraded, /^HTTP\/1.1 101 Switching Protocols\r\n[^]*x-portal-saw: \/public\/ws\r\n/i, 'a WebSocket upgrade too');
    } else {
      t.equal(answer.status, 502, 'not trusted: no request sent to it');
      t.match(upgraded, /^HTTP\/1.1 502 /, 'nor an upgrade');
      t.match(output, /"code":"DEPTH_ZERO_SELF_SIGNED_CERT".*"msg":"the portal request failed"/, 'and the log says why');
    }
  }
});

/** The first bytes the sidecar answers a WebSocket upgrade of `path` with. */
function upgradeAnswer(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      // The public name in Host: the portal's certificate must still be checked for the portal's own.
      socket.write(`GET ${path} HTTP/1.1\r\nHost: apps.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    socket.once('data', (data) => {
      resolve(data.toString('latin1'));
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
