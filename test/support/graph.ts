import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listen, stopServer } from './free-port.js';
import type { TestIdp } from './idp.js';

/**
 * A stand-in for Microsoft Graph's `POST /v1.0/me/getMemberObjects`: the caller's bearer token is
 * the user's access token from the test IdP, whose userinfo endpoint tells whose it is; the answer
 * is that user's groups, as Graph lists group ids. `available: false` answers 503, as in an outage.
 */
export interface GraphStandIn {
  url: string;
  /** Requests answered so far. */
  calls: number;
  available: boolean;
  stop(): Promise<void>;
}

export async function startGraphStandIn(idp: TestIdp): Promise<GraphStandIn> {
  const graph: GraphStandIn = { url: '', calls: 0, available: true, stop: () => stopServer(server) };
  const server = createServer((req, res) => {
    graph.calls++;
    void answer(idp, graph, req, res).catch(() => send(res, 500, { error: { code: 'InternalServerError' } }));
  });
  graph.url = `http://127.0.0.1:${await listen(server, 0, '127.0.0.1')}`;
  return graph;
}

async function answer(idp: TestIdp, graph: GraphStandIn, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!graph.available) return send(res, 503, { error: { code: 'ServiceUnavailable' } });
  if (req.method !== 'POST' || req.url !== '/v1.0/me/getMemberObjects') return send(res, 404, { error: { code: 'Request_ResourceNotFound' } });
  const userinfo = await fetch(idp.url(new URL(idp.issuer).pathname.replace(/\/$/, '') + '/me'), { headers: { authorization: req.headers.authorization ?? '' } });
  if (!userinfo.ok) return send(res, 401, { error: { code: 'InvalidAuthenticationToken' } });
  const { sub } = (await userinfo.json()) as { sub: string };
  const user = idp.users.find((candidate) => candidate.sub === sub);
  send(res, 200, { value: user?.groups ?? [] });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
