import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log/index.js';
import { OidcProvider } from '../../src/oidc/provider.js';
import { makeCertificate, makePrivateKeyPem } from '../support/applications.js';
import { request } from '../support/http.js';
import { DEMO_USERS } from '../support/idp.js';
import { NAVIGATION, signIn, startStack } from '../support/stack.js';

/** provider.clientAuth: private_key_jwt — the sidecar signs its token requests with its own key (Azure AD: a certificate credential). */

const directory = await mkdtemp(join(tmpdir(), 'oidc-sidecar-pkjwt-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));
const certificate = await makeCertificate(directory, 'sidecar', 'portal-sidecar');
const file = async (name: string, content: string) => {
  const path = join(directory, name);
  await writeFile(path, content);
  return path;
};
const pkcs8File = await file('key-pkcs8.pem', certificate.privateKeyPem);
const pkcs1File = await file('key-pkcs1.pem', createPrivateKey(certificate.privateKeyPem).export({ type: 'pkcs1', format: 'pem' }) as string);
const publicJwk = { ...createPublicKey(certificate.privateKey).export({ format: 'jwk' }), alg: 'RS256', use: 'sig' };

for (const [label, privateKeyFile] of [['PKCS#8', pkcs8File], ['PKCS#1', pkcs1File]] as const) {
  t.test(`signing in with a ${label} key and its certificate`, async (t) => {
    const stack = await startStack({
      sidecarClient: { clientSecret: undefined, tokenEndpointAuthMethod: 'private_key_jwt', jwks: { keys: [publicJwk] } },
      config: { provider: { clientSecret: undefined, clientAuth: 'private_key_jwt', privateKeyFile, certificateFile: certificate.pemFile } },
    });
    t.teardown(() => stack.stop());
    const { cookieHeader } = await signIn(stack, { user: DEMO_USERS.alice });
    const page = await request(stack.sidecar.url + '/', { headers: { ...NAVIGATION, cookie: cookieHeader } });
    t.equal(page.status, 200);
    t.equal(stack.portal.requests.at(-1)?.headers['x-forwarded-user'], 'alice');
  });
}

t.test('a key or certificate the sidecar cannot use stops the start, naming its key', async (t) => {
  const otherCertificate = await makeCertificate(directory, 'other', 'someone-else');
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['a missing key file', { privateKeyFile: join(directory, 'missing.pem') }, /^provider\.privateKeyFile: cannot read ".*missing\.pem" \(ENOENT\)$/],
    ['a file without a key', { privateKeyFile: await file('garbage.pem', 'not a key\n') }, /^provider\.privateKeyFile: ".*garbage\.pem" holds no PEM private key$/],
    ['an EC key', { privateKeyFile: await file('ec.pem', await makePrivateKeyPem('EC')) }, /^provider\.privateKeyFile: ".*ec\.pem" must hold an RSA private key/],
    ['a missing certificate', { certificateFile: join(directory, 'missing.cer') }, /^provider\.certificateFile: cannot read ".*missing\.cer" \(ENOENT\)$/],
    ['a file that is no certificate', { certificateFile: await file('garbage.cer', 'not a certificate') }, /^provider\.certificateFile: ".*garbage\.cer" is not an X\.509 certificate/],
    ["another key's certificate", { certificateFile: otherCertificate.derFile }, /^provider\.certificateFile: ".*other\.cer" is not the certificate of provider\.privateKeyFile's key$/],
  ];
  for (const [label, files, message] of cases) {
    const config = configSchema.parse({
      listen: { host: '127.0.0.1' },
      upstream: { url: 'http://127.0.0.1:9' },
      publicUrl: 'http://127.0.0.1:4180',
      provider: { issuerUrl: 'http://127.0.0.1:9', clientId: 'portal-sidecar', clientAuth: 'private_key_jwt', privateKeyFile: pkcs8File, certificateFile: certificate.pemFile, ...files },
      session: { secret: 'x'.repeat(43) },
    });
    const provider = new OidcProvider(config, createLogger('silent'));
    await t.rejects(provider.start(), message, label);
    provider.close();
  }
});
