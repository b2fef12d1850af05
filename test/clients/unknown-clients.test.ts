import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { MachineAuthenticator } from '../../src/clients/authenticator.js';
import { MachineClients, verifySecret } from '../../src/clients/index.js';
import { ApplicationRegistry } from '../../src/clients/registry.js';
import { RevocationList } from '../../src/clients/revocation.js';
import { isSecretHash } from '../../src/clients/secret-hash.js';
import { TokenIssuer } from '../../src/clients/token-issuer.js';
import { loadConfig, type ApplicationConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { MemoryStore } from '../../src/session/memory-store.js';

/**
 * A secret presented for an unknown client id is checked against the registry's decoy hash, which must
 * cost what checking a registered application's hash costs: else the time an answer takes tells which
 * client ids are registered. Timing itself is not measured here; the decoy's parameters are.
 */

/** A hash in the `scrypt$N$r$p$salt$hash` format with the given parameters (of no secret in particular). */
function hashWith(N: number, r: number, p: number, saltBytes = 16, keyBytes = 32): string {
  return ['scrypt', N, r, p, randomBytes(saltBytes).toString('base64url'), randomBytes(keyBytes).toString('base64url')].join('$');
}

/** The parameters a hash carries, read from its text. */
function parameters(hash: string) {
  const [scheme, N, r, p, salt, key] = hash.split('$');
  return { scheme, N: Number(N), r: Number(r), p: Number(p), saltBytes: Buffer.from(salt!, 'base64url').length, keyBytes: Buffer.from(key!, 'base64url').length };
}

/** pino's number for the warn level. */
const PINO_WARN = 40;

const DEFAULTS = { scheme: 'scrypt', N: 2 ** 15, r: 8, p: 1, saltBytes: 16, keyBytes: 32 };

const job = (clientId: string, clientSecretHash: string): ApplicationConfig => ({ clientId, grantTypes: ['client_credentials'], clientSecretHash, routes: ['^/api/'], scopes: [] });

async function hmacApp(dir: string, clientId: string, extra: Partial<ApplicationConfig> = {}): Promise<ApplicationConfig> {
  const hmacSecretFile = join(dir, `${clientId}.hmac`);
  await writeFile(hmacSecretFile, 'k'.repeat(32));
  return { clientId, grantTypes: ['client_certificate'], hmacSecretFile, routes: ['^/odata/'], scopes: [], ...extra };
}

t.test('the decoy carries the parameters of the most expensive client secret hash: N·r·p first, then key length', async (t) => {
  const registry = await ApplicationRegistry.load([
    job('default', hashWith(2 ** 15, 8, 1)),
    job('larger-n', hashWith(2 ** 16, 8, 1, 24, 32)),
    job('same-work-longer-key', hashWith(2 ** 17, 4, 1, 16, 48)),
    job('cheap-p', hashWith(2 ** 10, 8, 16)),
    // Never checked (no client_credentials grant), so its cost must not raise the decoy's.
    await hmacApp(t.testdir(), 'certificate-only', { clientSecretHash: hashWith(2 ** 18, 8, 1) }),
  ]);
  t.same(parameters(registry.decoySecretHash), { scheme: 'scrypt', N: 2 ** 17, r: 4, p: 1, saltBytes: 16, keyBytes: 48 });
  t.same(registry.cheaperSecretHashes, ['default', 'larger-n', 'cheap-p'], 'the ids a wrong secret is refused sooner for');
  const p = await ApplicationRegistry.load([job('default', hashWith(2 ** 15, 8, 1)), job('parallel', hashWith(2 ** 14, 8, 4, 32))]);
  t.same(parameters(p.decoySecretHash), { scheme: 'scrypt', N: 2 ** 14, r: 8, p: 4, saltBytes: 32, keyBytes: 32 }, 'p counts as much as N and r');
});

t.test('the decoy is cheaper than the defaults when every registered hash is', async (t) => {
  const registry = await ApplicationRegistry.load([job('light', hashWith(2 ** 12, 8, 1)), job('lighter', hashWith(2 ** 10, 8, 1))]);
  t.same(parameters(registry.decoySecretHash), { scheme: 'scrypt', N: 2 ** 12, r: 8, p: 1, saltBytes: 16, keyBytes: 32 });
  t.same(registry.cheaperSecretHashes, ['lighter']);
});

t.test('without any client secret registered, the decoy has the default parameters', async (t) => {
  const dir = t.testdir();
  t.same(parameters((await ApplicationRegistry.load([])).decoySecretHash), DEFAULTS, 'no applications');
  const certificateOnly = await ApplicationRegistry.load([await hmacApp(dir, 'a'), await hmacApp(dir, 'b', { clientSecretHash: hashWith(2 ** 16, 8, 1) })]);
  t.same(parameters(certificateOnly.decoySecretHash), DEFAULTS, 'no application registered for client_credentials');
});

t.test('the decoy is a well-formed hash that no secret matches, different in every registry', async (t) => {
  const hashes = [hashWith(2 ** 10, 1, 1)];
  const [first, second] = await Promise.all([ApplicationRegistry.load([job('job', hashes[0]!)]), ApplicationRegistry.load([job('job', hashes[0]!)])]);
  t.not(first.decoySecretHash, second.decoySecretHash, 'fresh random salt and key');
  t.not(first.decoySecretHash, hashes[0], 'not the registered hash itself');
  t.ok(isSecretHash(first.decoySecretHash), 'it goes through the same parsing and constant-time comparison as a registered hash');
  for (const secret of ['', 'secret']) t.notOk(await verifySecret(secret, first.decoySecretHash));
});

t.test('a registry swapped in by a reload brings its own decoy', async (t) => {
  const clock = Date.now;
  const issuer = await TokenIssuer.create({ issuer: 'http://127.0.0.1:4180/oauth2', ttlSeconds: 3600, clock });
  const revocations = new RevocationList(new MemoryStore({ clock }), clock);
  const authenticator = new MachineAuthenticator({ registry: await ApplicationRegistry.load([job('job', hashWith(2 ** 15, 8, 1))]), issuer, revocations, clock });
  t.same(parameters(authenticator.registry.decoySecretHash), DEFAULTS);
  authenticator.useRegistry(await ApplicationRegistry.load([job('job', hashWith(2 ** 15, 8, 1)), job('hardened', hashWith(2 ** 16, 8, 2, 16, 64))]));
  t.same(parameters(authenticator.registry.decoySecretHash), { scheme: 'scrypt', N: 2 ** 16, r: 8, p: 2, saltBytes: 16, keyBytes: 64 });
  authenticator.useRegistry(await ApplicationRegistry.load([await hmacApp(t.testdir(), 'certificate-only')]));
  t.same(parameters(authenticator.registry.decoySecretHash), DEFAULTS, 'back to the defaults once no secret is registered');
});

/** A configuration file with these applications, and what a sidecar started on it logs. */
async function startWithApplications(dir: string, applications: ApplicationConfig[]) {
  const file = join(dir, 'sidecar.yaml');
  const writeConfig = (apps: ApplicationConfig[]) =>
    writeFile(
      file,
      toYaml({
        upstream: { url: 'http://127.0.0.1:8080' },
        publicUrl: 'http://127.0.0.1:4180',
        provider: { issuerUrl: 'http://127.0.0.1:9000', clientId: 'portal', clientSecret: 'secret' },
        session: { secret: 'session-secret-0123456789-abcdefghij' },
        applications: apps,
      }),
    );
  await writeConfig(applications);
  const { config } = await loadConfig({ file, env: {} });
  const logLines: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void logLines.push(line) });
  const clients = await MachineClients.start({ config, logger, store: new MemoryStore({ clock: Date.now }), clock: Date.now, configFile: file, env: {} });
  return { clients, logLines, writeConfig };
}

/** The clientIds of the cheaper-hash warnings logged so far. */
function cheaperHashWarnings(logLines: string[]): string[][] {
  return logLines
    .map((line) => JSON.parse(line) as { level: number; clientIds?: string[]; msg: string })
    .filter((entry) => entry.level === PINO_WARN && entry.msg.includes('cheaper scrypt parameters'))
    .map((entry) => entry.clientIds ?? []);
}

t.test('client secrets hashed with cheaper parameters than the others are named in a warning at start', async (t) => {
  const cheap = hashWith(2 ** 10, 8, 1);
  const { clients, logLines, writeConfig } = await startWithApplications(t.testdir(), [job('hardened', hashWith(2 ** 12, 8, 1)), job('cheap', cheap), job('also-hardened', hashWith(2 ** 12, 8, 1))]);
  t.teardown(() => clients.close());
  t.same(cheaperHashWarnings(logLines), [['cheap']]);
  t.match(logLines.join('\n'), /hash every client secret with the same parameters/);
  t.notOk(logLines.some((line) => line.includes(cheap.split('$')[5]!)), 'no hash is logged');

  await writeConfig([job('hardened', hashWith(2 ** 12, 8, 1)), job('cheap', cheap), job('newly-cheap', hashWith(2 ** 11, 8, 1))]);
  t.ok(await clients.reload());
  t.same(cheaperHashWarnings(logLines), [['cheap'], ['cheap', 'newly-cheap']], 'a reload warns again, with its own list');

  const same = await startWithApplications(t.testdir(), [job('a', hashWith(2 ** 10, 8, 1)), job('b', hashWith(2 ** 10, 8, 1))]);
  t.teardown(() => same.clients.close());
  t.same(cheaperHashWarnings(same.logLines), [], 'no warning when every hash costs the same');
});

t.test('an application without the client_credentials grant is refused like an unknown client id, throttle included', async (t) => {
  const dir = t.testdir();
  const cheap = () => hashWith(2 ** 10, 1, 1);
  const { clients } = await startWithApplications(dir, [job('job', cheap()), await hmacApp(dir, 'certificate-only', { clientSecretHash: cheap() })]);
  t.teardown(() => clients.close());
  const attempt = async (clientId: string) => {
    const answer = await clients.token({ authorization: undefined, form: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: 'guess' }), address: '10.0.0.7' });
    t.equal(answer.status, 401, clientId);
    t.equal(answer.body.error, 'invalid_client', clientId);
    return answer.audit;
  };
  t.match(await attempt('certificate-only'), { code: 'grant_type', clientId: 'certificate-only' }, 'its own audit reason');
  for (let i = 0; i < 19; i++) t.match(await attempt(`nobody-${i}`), { code: 'unknown_client' });
  // 20 failures on the shared counter: unknown ids and the application without the grant alike stop being checked.
  t.match(await attempt('certificate-only'), { code: 'throttled', clientId: 'certificate-only' });
  t.match(await attempt('nobody-else'), { code: 'throttled' });
  t.match(await attempt('job'), { code: 'secret', clientId: 'job' }, 'a client registered for the grant keeps its own counter');
});
