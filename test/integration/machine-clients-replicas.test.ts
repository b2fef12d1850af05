import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeProtectedHeader, type JWK } from 'jose';
import t from 'tap';
import { REVOCATION_RECHECK_MS } from '../../src/clients/authenticator.js';
import { hashSecret } from '../../src/clients/index.js';
import { TokenIssuer } from '../../src/clients/token-issuer.js';
import { makePrivateKeyPem } from '../support/applications.js';
import { request } from '../support/http.js';
import { startRedis } from '../support/redis.js';
import { auditEvents, startStack } from '../support/stack.js';

const SECRET = 'nightly-export-secret';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const BASIC = { authorization: `Basic ${Buffer.from(`nightly-export:${SECRET}`).toString('base64')}` };

t.test('two replicas sharing Redis and a signing key bundle', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const dir = t.testdir();
  const [oldKey, newKey] = await Promise.all([makePrivateKeyPem('RSA'), makePrivateKeyPem('EC')]);
  await writeFile(join(dir, 'old-keys.pem'), oldKey);
  // Rotation: the new key goes first (it signs), the old one stays until its tokens have expired.
  await writeFile(join(dir, 'keys.pem'), newKey + oldKey);
  let offsetMs = 0;
  const clock = () => Date.now() + offsetMs;
  const stack = await startStack({
    clock,
    config: {
      session: { store: 'redis' },
      redis: { url: redis.url },
      clients: { signingKeyFile: join(dir, 'keys.pem'), tokenTtlSeconds: 600 },
      applications: [{ clientId: 'nightly-export', grantTypes: ['client_credentials'], clientSecretHash: await hashSecret(SECRET), routes: ['^/api/'] }],
    },
  });
  t.teardown(() => stack.stop());
  const replica = await stack.addReplica();
  const issuerUrl = `${new URL(stack.config.publicUrl).origin}/oauth2`;

  const issue = async (baseUrl: string) => {
    const answer = await request(baseUrl + '/oauth2/token', { method: 'POST', headers: { ...FORM, ...BASIC }, body: 'grant_type=client_credentials' });
    return (JSON.parse(answer.body) as { access_token: string }).access_token;
  };
  const call = async (baseUrl: string, token: string) => (await request(baseUrl + '/api/report', { headers: { authorization: `Bearer ${token}` } })).status;

  t.test('a token issued by one replica works on the other', async (t) => {
    t.equal(await call(replica.url, await issue(stack.sidecar.url)), 200);
    t.equal(await call(stack.sidecar.url, await issue(replica.url)), 200);
  });

  t.test('a revocation on one replica is seen by the other', async (t) => {
    const token = await issue(stack.sidecar.url);
    t.equal(await call(replica.url, token), 200, 'verified and cached on the replica');
    const revoked = await request(stack.sidecar.url + '/oauth2/revoke', { method: 'POST', headers: { ...FORM, ...BASIC }, body: new URLSearchParams({ token }).toString() });
    t.equal(revoked.status, 200);
    t.equal(await call(stack.sidecar.url, token), 401, 'at once on the replica that revoked it');
    offsetMs += REVOCATION_RECHECK_MS;
    t.equal(await call(replica.url, token), 401, `on the other replica within ${REVOCATION_RECHECK_MS} ms`);
    t.match(auditEvents(stack).at(-1), { event: 'api_auth_failed', clientId: 'nightly-export', method: 'bearer', code: 'revoked' });
  });

  t.test('signing key rotation: the first key signs, every key of the bundle verifies', async (t) => {
    const jwks = JSON.parse((await request(stack.sidecar.url + '/oauth2/jwks')).body) as { keys: JWK[] };
    t.equal(jwks.keys.length, 2, 'both public keys are published');
    const token = await issue(stack.sidecar.url);
    const header = decodeProtectedHeader(token);
    t.equal(header.alg, 'ES256', 'the new (first) key signs');
    t.equal(header.kid, await calculateJwkThumbprint(jwks.keys[0]!), 'kid is the JWK thumbprint');

    const before = await TokenIssuer.create({ keyFile: join(dir, 'old-keys.pem'), issuer: issuerUrl, ttlSeconds: 600, clock });
    const { token: oldToken } = await before.issue('nightly-export', []);
    t.equal(decodeProtectedHeader(oldToken).kid, jwks.keys[1]!.kid);
    t.equal(await call(replica.url, oldToken), 200, 'a token of the old key is still accepted');

    const elsewhere = await TokenIssuer.create({ issuer: issuerUrl, ttlSeconds: 600, clock });
    t.equal(await call(replica.url, (await elsewhere.issue('nightly-export', [])).token), 401, 'a key outside the bundle is not');
  });
});
