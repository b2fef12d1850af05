import http from 'node:http';
import httpProxy from 'http-proxy';
import t from 'tap';
import { listen } from '../support/free-port.js';
import { request } from '../support/http.js';
import { signIn, startStack } from '../support/stack.js';

/** A pass-through in front of the IdP that records which paths went through it. */
async function startRelay(target: string): Promise<{ url: string; paths: string[]; stop(): void }> {
  const proxy = httpProxy.createProxyServer({ target, agent: new http.Agent({ keepAlive: true }) });
  proxy.on('error', (_error, _req, res) => (res as http.ServerResponse).writeHead(502).end());
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    paths.push(req.url!.split('?')[0]!);
    proxy.web(req, res);
  });
  const port = await listen(server, 0, '127.0.0.1');
  return { url: `http://127.0.0.1:${port}`, paths, stop: () => server.close() };
}

t.test('provider.authorizationEndpoint and provider.tokenEndpoint override discovery', async (t) => {
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
  const stack = await startStack({
    config: async (idp) => {
      relay = await startRelay(idp.issuer);
      return {
        provider: { authorizationEndpoint: `${relay.url}/auth`, tokenEndpoint: `${relay.url}/token` },
      };
    },
  });
  t.teardown(async () => {
    await stack.stop();
    relay!.stop();
  });
  const start = await request(stack.sidecar.url + '/page', { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
  t.match(String(start.headers.location), new RegExp(`^${relay!.url}/auth\\?`), 'the browser goes to the configured authorization endpoint');
  const { cookieHeader } = await signIn(stack);
  t.ok(relay!.paths.includes('/token'), 'the code was exchanged at the configured token endpoint');
  const answer = await request(stack.sidecar.url + '/echo', { headers: { accept: 'application/json', cookie: cookieHeader } });
  t.equal(answer.status, 200);
});

t.test('cookie type: "persistent" outlives the browser, "session" does not', async (t) => {
  for (const [type, expected] of [['persistent', /; Max-Age=43200/], ['session', /^(?!.*Max-Age)/]] as const) {
    const stack = await startStack({ config: { session: { cookie: { type } } } });
    const { setCookie } = await signIn(stack);
    await stack.stop();
    t.match(setCookie, expected, type);
    t.match(setCookie, /; HttpOnly; SameSite=Lax/, type);
  }
});
