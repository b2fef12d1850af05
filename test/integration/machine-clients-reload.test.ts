import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { certificateClaims, makeCertificate, signJwt, type TestCertificate } from '../support/applications.js';
import { request } from '../support/http.js';
import { startStack } from '../support/stack.js';

const TOKEN_HEADER = 'x-clientcertificate-token';

t.test('the applications file is reloaded without a restart', async (t) => {
  const dir = t.testdir();
  const first = await makeCertificate(dir, 'first', 'first-app');
  const second = await makeCertificate(dir, 'second', 'second-app');
  const file = join(dir, 'applications.yaml');
  const app = (clientId: string, certificate: TestCertificate) => ({ clientId, grantTypes: ['client_certificate'], certificateFile: certificate.pemFile, routes: ['^/odata/'] });
  const writeApplications = (content: unknown) => writeFile(file, typeof content === 'string' ? content : toYaml(content));
  await writeApplications([app('first-app', first)]);
  const stack = await startStack({ config: { applicationsFile: file } });
  t.teardown(() => stack.stop());

  const status = async (clientId: string, certificate: TestCertificate) => {
    const token = signJwt({ alg: 'RS256' }, certificateClaims(clientId, certificate.commonName), certificate.privateKey);
    return (await request(stack.sidecar.url + '/odata/cases', { headers: { [TOKEN_HEADER]: token } })).status;
  };
  const logged = (message: string) => stack.logLines.filter((line) => line.includes(message));
  const waitForLog = async (message: string, count: number) => {
    for (let i = 0; i < 100 && logged(message).length < count; i++) await sleep(50);
    return logged(message);
  };

  t.test('an application added to the file is accepted', async (t) => {
    t.equal(await status('first-app', first), 200);
    t.equal(await status('second-app', second), 401);
    await writeApplications([app('first-app', first), app('second-app', second)]);
    await waitForLog('applications reloaded', 1);
    t.equal(await status('second-app', second), 200);
  });

  t.test('a broken file keeps the last good registry, and the log says why', async (t) => {
    const broken: Array<[string, unknown, RegExp]> = [
      ['YAML syntax', 'applications: [\n', /YAML syntax error/],
      ['a plain secret', [{ ...app('first-app', first), clientSecret: 'plain' }], /applications\[0\]\.clientSecret: is not accepted/],
      ['a missing certificate', [{ ...app('first-app', first), certificateFile: join(dir, 'missing.cer') }], /applications\[0\]\.certificateFile: cannot read/],
    ];
    for (const [name, content, problem] of broken) {
      const failures = logged('applications not reloaded').length;
      await writeApplications(content);
      const [line] = (await waitForLog('applications not reloaded', failures + 1)).slice(failures);
      t.match(line, problem, name);
      t.equal(await status('second-app', second), 200, `${name}: the last good registry is still in use`);
    }
    await writeApplications([app('first-app', first), app('second-app', second)]);
  });

  t.test('SIGHUP reloads', async (t) => {
    const reloads = (await waitForLog('applications reloaded', 2)).length;
    process.kill(process.pid, 'SIGHUP');
    t.equal((await waitForLog('applications reloaded', reloads + 1)).length, reloads + 1);
  });

  t.test('a certificate replaced on disk (a renewed Secret) is picked up', async (t) => {
    const renewed = await makeCertificate(dir, 'renewed', 'first-app');
    const reloads = logged('applications reloaded').length;
    await rename(renewed.pemFile, first.pemFile);
    await waitForLog('applications reloaded', reloads + 1);
    t.equal(await status('first-app', renewed), 200, 'the new key is accepted');
    t.equal(await status('first-app', first), 401, 'the old one no longer');
  });
});
