import { randomBytes } from 'node:crypto';
import t from 'tap';
import { configSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/log/index.js';
import { startSidecar } from '../../src/server/index.js';
import { freePort } from '../support/free-port.js';
import { request } from '../support/http.js';
import { startIdp } from '../support/idp.js';
import { startPortal } from '../support/portal.js';
import { CLIENT_ID, CLIENT_SECRET, NAVIGATION } from '../support/stack.js';

t.test('a provider that is down at start: not ready, a clear 503, then ready once it answers', async (t) => {
  const [port, idpPort] = [await freePort(), await freePort()];
  const portal = await startPortal();
  t.teardown(() => portal.stop());
  const config = configSchema.parse({
    listen: { host: '127.0.0.1', port },
    metrics: { host: '127.0.0.1', port: 0 },
    upstream: { url: portal.url },
    publicUrl: `http://127.0.0.1:${port}`,
    provider: { issuerUrl: `http://127.0.0.1:${idpPort}`, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
    session: { secret: randomBytes(32).toString('base64url') },
  });
  const sidecar = await startSidecar(config, { logger: createLogger('silent') });
  t.teardown(() => sidecar.close());

  const notReady = await request(sidecar.metricsUrl + '/readyz');
  t.equal(notReady.status, 503);
  t.match(JSON.parse(notReady.body), { provider: 'metadata not loaded' });
  const page = await request(sidecar.url + '/page', { headers: NAVIGATION });
  t.equal(page.status, 503);
  t.match(page.body, /Sign-in unavailable/);
  t.equal(portal.requests.length, 0);

  const idp = await startIdp({ port: idpPort, clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [`${config.publicUrl}/oauth2/callback`] }] });
  t.teardown(() => idp.stop());
  const until = Date.now() + 8000;
  let ready = notReady;
  while (ready.status !== 200 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    ready = await request(sidecar.metricsUrl + '/readyz');
  }
  t.equal(ready.status, 200, 'discovery was retried');
  const signIn = await request(sidecar.url + '/page', { headers: NAVIGATION });
  t.equal(signIn.status, 302);
  t.equal(new URL(String(signIn.headers.location)).origin, idp.issuer);
});
