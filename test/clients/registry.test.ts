import { join } from 'node:path';
import t from 'tap';
import { ApplicationRegistry, ApplicationsError } from '../../src/clients/registry.js';
import type { ApplicationConfig } from '../../src/config/index.js';
import { makeCertificate } from '../support/applications.js';

const app = (extra: Partial<ApplicationConfig>): ApplicationConfig => ({ clientId: 'job', grantTypes: ['client_certificate'], routes: ['^/odata/'], scopes: [], ...extra });

t.test('certificates in PEM and DER give the same key and CN; keys are read once', async (t) => {
  const dir = t.testdir();
  const certificate = await makeCertificate(dir, 'job', 'job.example.com');
  const registry = await ApplicationRegistry.load([app({ certificateFile: certificate.pemFile }), app({ clientId: 'der', certificateFile: certificate.derFile })]);
  const [pem, der] = [registry.get('job')!, registry.get('der')!];
  t.equal(pem.issuerName, 'job.example.com');
  t.equal(der.issuerName, 'job.example.com');
  t.ok(pem.certificateKey!.equals(der.certificateKey!));
  t.equal(registry.get('nobody'), undefined);
  t.equal(registry.get('__proto__'), undefined);
});

t.test("the issuer name is the certificate's CN itself, whatever characters it holds", async (t) => {
  const dir = t.testdir();
  const cases: Array<[subjectCn: string, expected: string]> = [
    ['Acme, Inc', 'Acme, Inc'],
    ['<Acme> "Data"; Co #1', '<Acme> "Data"; Co #1'],
    ['Zoë Export', 'Zoë Export'],
    ['multi.example.com+OU=Reporting', 'multi.example.com'],
    ['a\\+b', 'a+b'],
  ];
  for (const [index, [subjectCn, expected]] of cases.entries()) {
    const certificate = await makeCertificate(dir, `cn${index}`, subjectCn);
    const registry = await ApplicationRegistry.load([app({ certificateFile: certificate.pemFile })]);
    t.equal(registry.get('job')!.issuerName, expected, subjectCn);
  }
});

t.test('an HMAC key file loses one trailing newline and must hold 32 bytes', async (t) => {
  const dir = t.testdir({ 'good.hmac': 'k'.repeat(32) + '\r\n', 'short.hmac': 'k'.repeat(31) + '\n' });
  const registry = await ApplicationRegistry.load([app({ hmacSecretFile: join(dir, 'good.hmac') })]);
  t.equal(registry.get('job')!.hmacKey!.symmetricKeySize, 32);
  t.equal(registry.get('job')!.issuerName, 'job', 'without a certificate the issuer is the client id');
  await t.rejects(ApplicationRegistry.load([app({ hmacSecretFile: join(dir, 'short.hmac') })]), /applications\[0\]\.hmacSecretFile: .* at least 32 bytes/);
});

t.test('every unusable file is reported, one line each, naming its key', async (t) => {
  const dir = t.testdir({ 'not-a-cert.cer': 'hello' });
  const error = await ApplicationRegistry.load([
    app({ certificateFile: join(dir, 'missing.cer') }),
    app({ clientId: 'b', certificateFile: join(dir, 'not-a-cert.cer') }),
    app({ clientId: 'c', hmacSecretFile: join(dir, 'missing.hmac') }),
  ]).catch((caught: unknown) => caught);
  t.type(error, ApplicationsError);
  t.match((error as ApplicationsError).problems, [
    /^applications\[0\]\.certificateFile: cannot read .*\(ENOENT\)$/,
    /^applications\[1\]\.certificateFile: .* is not a PEM or DER X\.509 certificate$/,
    /^applications\[2\]\.hmacSecretFile: cannot read/,
  ]);
});
