import http from 'node:http';
import httpProxy from 'http-proxy';
import { listen } from './free-port.js';
import { startStack, type Stack, type StackOptions } from './stack.js';

/** A pass-through in front of the IdP (configured as an endpoint override) that records paths and can fail on demand. */
export interface IdpRelay {
  url: string;
  paths: string[];
  /**
   * While set, requests fail: the provider down (`503` page, or the connection dropped), or
   * refusing (`invalid_grant`, as for a revoked refresh token).
   */
  outage: '503' | 'drop' | 'invalid_grant' | undefined;
  /** How long the relay waits before answering or failing a request (for requests that must overlap). */
  delayMs: number;
  /** Token responses lose their `id_token`, as some providers renew tokens without one. */
  dropIdToken: boolean;
  stop(): void;
}

export async function startIdpRelay(target: string): Promise<IdpRelay> {
  const proxy = httpProxy.createProxyServer({ target, agent: new http.Agent({ keepAlive: true }), selfHandleResponse: true });
  proxy.on('error', (_error, _req, res) => (res as http.ServerResponse).writeHead(502).end());
  proxy.on('proxyRes', (proxyRes, _req, res) => void relayAnswer(proxyRes, res as http.ServerResponse, relay.dropIdToken));
  const server = http.createServer((req, res) => {
    relay.paths.push(req.url!.split('?')[0]!);
    if (relay.delayMs > 0) return void setTimeout(() => answer(req, res), relay.delayMs);
    answer(req, res);
  });
  const answer = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (relay.outage === '503') return void res.writeHead(503, { 'content-type': 'text/html' }).end('<h1>Service Unavailable</h1>');
    if (relay.outage === 'drop') return void req.socket.destroy();
    if (relay.outage === 'invalid_grant') {
      return void res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_grant', error_description: 'grant request is invalid' }));
    }
    proxy.web(req, res);
  };
  const port = await listen(server, 0, '127.0.0.1');
  const relay: IdpRelay = { url: `http://127.0.0.1:${port}`, paths: [], outage: undefined, delayMs: 0, dropIdToken: false, stop: () => server.close() };
  return relay;
}

/** The IdP's answer as it came, or without the `id_token` of a JSON token response. */
async function relayAnswer(proxyRes: http.IncomingMessage, res: http.ServerResponse, dropIdToken: boolean): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of proxyRes) chunks.push(chunk as Buffer);
  let body = Buffer.concat(chunks);
  const headers = { ...proxyRes.headers };
  if (dropIdToken && String(headers['content-type']).startsWith('application/json')) {
    const answer = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    delete answer.id_token;
    body = Buffer.from(JSON.stringify(answer));
  }
  delete headers['transfer-encoding'];
  headers['content-length'] = String(body.length);
  res.writeHead(proxyRes.statusCode!, headers).end(body);
}

/**
 * A stack whose sidecar reaches the IdP's token endpoint through a relay (to slow, fail or alter
 * token answers), with `config` besides; both are stopped at the test's teardown.
 */
export async function startStackWithTokenRelay(
  t: { teardown(fn: () => unknown): void },
  options: Omit<StackOptions, 'config'> & { config?: Record<string, unknown> } = {},
): Promise<{ stack: Stack; relay: IdpRelay }> {
  let relay: IdpRelay | undefined;
  const stack = await startStack({
    ...options,
    config: async (idp) => {
      relay = await startIdpRelay(idp.issuer);
      return { ...options.config, provider: { tokenEndpoint: `${relay.url}/token` } };
    },
  });
  t.teardown(async () => {
    await stack.stop();
    relay!.stop();
  });
  return { stack, relay: relay! };
}
