import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { hashSecret, MachineClients } from '../../src/clients/index.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import { MemoryStore } from '../../src/session/memory-store.js';

const BASE = {
  upstream: { url: 'http://127.0.0.1:8080' },
  publicUrl: 'http://127.0.0.1:4180',
  provider: { issuerUrl: 'http://127.0.0.1:9000', clientId: 'portal', clientSecret: 'secret' },
  session: { secret: 'session-secret-0123456789-abcdefghij' },
  log: { level: 'silent' },
};

async function start(config: Config, configFile?: string): Promise<MachineClients> {
  return MachineClients.start({ config, logger: createLogger('silent'), store: new MemoryStore({ clock: Date.now }), clock: Date.now, configFile, env: {} });
}

function tokenRequest(clientId: string, secret: string) {
  return { authorization: undefined, form: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }), address: '127.0.0.1' };
}

t.test('without applicationsFile, a reload reads the applications of the configuration file again', async (t) => {
  const file = join(t.testdir(), 'sidecar.yaml');
  const application = async (clientId: string) => ({ clientId, grantTypes: ['client_credentials'], clientSecretHash: await hashSecret(`${clientId}-secret`), routes: ['^/api/'] });
  await writeFile(file, toYaml({ ...BASE, applications: [await application('job-a')] }));
  const clients = await start((await loadConfig({ file, env: {} })).config, file);
  t.teardown(() => clients.close());
  t.equal((await clients.token(tokenRequest('job-b', 'job-b-secret'))).status, 401);
  await writeFile(file, toYaml({ ...BASE, applications: [await application('job-a'), await application('job-b')] }));
  t.equal(await clients.reload(), true);
  t.equal((await clients.token(tokenRequest('job-b', 'job-b-secret'))).status, 200);
});

t.test('applications given without any file cannot be reloaded', async (t) => {
  const { config } = await loadConfig({ env: {}, file: await writeBase(t.testdir()) });
  const clients = await start(config);
  t.teardown(() => clients.close());
  t.equal(await clients.reload(), false);
});

async function writeBase(dir: string): Promise<string> {
  await writeFile(join(dir, 'base.yaml'), toYaml(BASE));
  return join(dir, 'base.yaml');
}
