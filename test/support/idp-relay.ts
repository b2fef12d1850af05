import http from 'node:http';
import httpProxy from 'http-proxy';
import { listen } from './free-port.js';

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
  stop(): void;
}

export async function startIdpRelay(target: string): Promise<IdpRelay> {
  const proxy = httpProxy.createProxyServer({ target, agent: new http.Agent({ keepAlive: true }) });
  proxy.on('error', (_error, _req, res) => (res as http.ServerResponse).writeHead(502).end());
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
  const relay: IdpRelay = { url: `http://127.0.0.1:${port}`, paths: [], outage: undefined, delayMs: 0, stop: () => server.close() };
  return relay;
}
