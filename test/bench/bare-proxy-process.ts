import http from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from 'http-proxy';
import { stopServer } from '../support/free-port.js';
import { serveFromChild } from './children.js';

/**
 * The baseline: http-proxy with the same keep-alive agent as the sidecar's upstream
 * (src/proxy/upstream.ts) and nothing else — no authentication, no header work. With `addHeaders`,
 * a reference: the same proxy replacing the cookie by the headers the sidecar adds, and nothing else
 * (what those headers cost, whoever sends them).
 */
serveFromChild(async (input: { target: string; addHeaders?: Record<string, string> }) => {
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64, timeout: 60_000 });
  const proxy = httpProxy.createProxyServer({ target: input.target, agent, xfwd: false });
  proxy.on('error', (_error, _req, res) => {
    if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  const { addHeaders } = input;
  const server = http.createServer((req, res) => {
    if (addHeaders) req.headers = Object.assign(withoutCookie(req.headers), addHeaders);
    proxy.web(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await stopServer(server);
      agent.destroy();
    },
  };
});

function withoutCookie(headers: http.IncomingHttpHeaders): http.IncomingHttpHeaders {
  const rest: http.IncomingHttpHeaders = {};
  for (const name in headers) if (name !== 'cookie') rest[name] = headers[name];
  return rest;
}
