import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import t from 'tap';
import { TokenIssuer } from '../../src/clients/token-issuer.js';
import { makePrivateKeyPem } from '../support/applications.js';

const ISSUER = 'https://portal.example.com/oauth2';

t.test('issued tokens verify against the JWKS, and only until they expire', async (t) => {
  let now = Date.now();
  const issuer = await TokenIssuer.create({ issuer: ISSUER, ttlSeconds: 60, clock: () => now });
  const { token, claims } = await issuer.issue('job', ['a', 'b']);
  t.match(claims, { client_id: 'job', scope: 'a b', jti: /^[A-Za-z0-9_-]{22}$/ });
  const { payload } = await jwtVerify(token, createLocalJWKSet(issuer.jwks()), { issuer: ISSUER, audience: ISSUER, currentDate: new Date(now) });
  t.equal(payload.sub, 'job');
  t.equal(decodeProtectedHeader(token).alg, 'ES256', 'a generated key is EC P-256');
  t.match(await issuer.verify(token), { client_id: 'job' });
  now += 61_000;
  await t.rejects(issuer.verify(token), { code: 'ERR_JWT_EXPIRED' });
});

t.test('a token of another issuer or key, or of another type, is refused', async (t) => {
  const issuer = await TokenIssuer.create({ issuer: ISSUER, ttlSeconds: 60, clock: Date.now });
  const other = await TokenIssuer.create({ issuer: ISSUER, ttlSeconds: 60, clock: Date.now });
  await t.rejects(issuer.verify((await other.issue('job', [])).token), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  const foreign = await TokenIssuer.create({ issuer: 'https://elsewhere.example.com/oauth2', ttlSeconds: 60, clock: Date.now });
  await t.rejects(issuer.verify((await foreign.issue('job', [])).token));
});

t.test('the key file: a PEM bundle of RSA or EC keys; unusable files are named', async (t) => {
  const dir = t.testdir({ 'empty.pem': '', 'garbage.pem': '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' });
  const [rsa, ec] = await Promise.all([makePrivateKeyPem('RSA'), makePrivateKeyPem('EC')]);
  await writeFile(join(dir, 'bundle.pem'), `# comment\n${rsa}\n${ec}`);
  const issuer = await TokenIssuer.create({ keyFile: join(dir, 'bundle.pem'), issuer: ISSUER, ttlSeconds: 60, clock: Date.now });
  t.same(issuer.jwks().keys.map((key) => key.alg), ['RS256', 'ES256']);
  t.equal(decodeProtectedHeader((await issuer.issue('job', [])).token).alg, 'RS256', 'the first key signs');
  const create = (file: string) => TokenIssuer.create({ keyFile: join(dir, file), issuer: ISSUER, ttlSeconds: 60, clock: Date.now });
  await t.rejects(create('missing.pem'), /clients\.signingKeyFile: cannot read .* \(ENOENT\)/);
  await t.rejects(create('empty.pem'), /holds no PEM private key/);
  await t.rejects(create('garbage.pem'), /PEM block 1 .* is not a private key/);
});
