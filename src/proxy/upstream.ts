import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { endToEndHeaders } from './portal-headers.js';

/** Why a request to the portal failed: each has its own page and metric label. */
export type UpstreamFailure = 'refused' | 'timeout' | 'reset';

export interface UpstreamOptions {
  /** The portal's base URL. */
  target: URL;
  /** How long the portal may take to start answering before the client gets a 504. */
  timeoutMs: number;
  /** The public URL's protocol and host, sent as X-Forwarded-Proto/-Host. */
  publicUrl: URL;
  /** Called when the portal's response headers arrive, with the seconds since the request was sent. */
  onResponse(seconds: number): void;
  /** Called once per failed request, before any answer is written. */
  onFailure(failure: UpstreamFailure, req: http.IncomingMessage, res: http.ServerResponse | Duplex, error: Error): void;
}

/** Forwards requests and WebSocket upgrades to the portal, streaming both ways. */
export interface Upstream {
  web(req: http.IncomingMessage, res: http.ServerResponse): void;
  ws(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

/**
 * One request on its way to the portal, from the moment it is sent until the portal answers or it
 * fails; kept on the objects whose events need it (an ordinary request needs no closure).
 */
class PortalExchange {
  readonly started = performance.now();
  readonly timer: NodeJS.Timeout;
  timedOut = false;
  /** The client is still sending the body: the time-out waits (once the portal took the connection). */
  uploading = false;
  /**
   * Needs no HTTP answer any more: the client left first (not a portal failure), or the portal
   * accepted a WebSocket upgrade (a failure now is the sockets' to end).
   */
  settled?: 'client left' | 'upgraded';

  constructor(
    readonly req: http.IncomingMessage,
    readonly client: http.ServerResponse | Duplex,
    readonly proxyReq: http.ClientRequest,
    readonly options: UpstreamOptions,
  ) {
    this.timer = setTimeout(timeOut, options.timeoutMs, this);
  }
}

const EXCHANGE = Symbol('portal exchange');
type WithExchange<T> = T & { [EXCHANGE]: PortalExchange };

/** Keep-alive connections to the portal, up to 64 idle ones. */
const AGENT_OPTIONS: http.AgentOptions = { keepAlive: true, maxFreeSockets: 64, timeout: 60_000 };
const REPEATED_SLASHES = /\/{2,}/g;
/** Methods Node sends without `Content-Length` or `Transfer-Encoding` when they have no body (any other gets a length). */
const FRAMED_ONLY_WITH_A_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/**
 * Requests are forwarded over node:http(s) with a keep-alive agent; WebSocket upgrades through
 * http-proxy, whose pipes join the two sockets once the portal has switched protocols. Ordinary
 * requests skip http-proxy: its per-request steps (a header copy and one `setHeader` per header,
 * `url.parse`, `urlJoin`, a `pipe` each way, closures) took about a fifth of a proxied request's
 * CPU time, more than all of the sidecar's own checks (`npm run bench`: 0.84× the bare http-proxy
 * through it, 1.04× without it), and one of them smuggles requests (its `deleteLength` pass,
 * node-http-proxy#1720, unfixed in the unmaintained 1.18). Either way the portal request is
 * destroyed when the client goes away, and every error is handled. An https portal is verified
 * against Node's CAs and NODE_EXTRA_CA_CERTS.
 */
export function createUpstream(options: UpstreamOptions): Upstream {
  // Connections to the portal are not capped (as with nginx or oauth2-proxy): a cap would let a few
  // clients that stop reading hold every connection while later requests queue.
  const secure = options.target.protocol === 'https:';
  const portal = { hostname: options.target.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(options.target.port) || (secure ? 443 : 80) };
  // The certificate is checked for the portal's name: without `servername` Node would take the
  // client's Host header (the public name), which a request through http-proxy carries.
  const agent = secure ? new https.Agent({ ...AGENT_OPTIONS, servername: isIP(portal.hostname) ? '' : portal.hostname }) : new http.Agent(AGENT_OPTIONS);
  const sendRequest = secure ? https.request : http.request;
  const basePath = options.target.pathname.replace(REPEATED_SLASHES, '/').replace(/\/$/, '');
  const proxy = httpProxy.createProxyServer({ target: options.target.href, agent, ws: true, xfwd: false });
  const forwardedProto = options.publicUrl.protocol.slice(0, -1);
  const forwardedHost = options.publicUrl.host;

  // An upgrade has the same time-out (a client that leaves meanwhile is noticed by it at the latest:
  // its socket is not read before the portal answers, so only a reset shows at once). Once
  // upgraded, http-proxy joins the two sockets until either ends; one destroyed without ending
  // (which http-proxy's pipes do not pass on) takes the other with it.
  proxy.on('proxyReqWs', (proxyReq, req, client) => {
    const exchange = new PortalExchange(req, client, proxyReq, options);
    (req as WithExchange<http.IncomingMessage>)[EXCHANGE] = exchange;
    if (client.destroyed) return clientLeft(exchange);
    const clientGone = () => clientLeft(exchange);
    client.once('close', clientGone);
    proxyReq.once('response', () => clearTimeout(exchange.timer));
    proxyReq.once('upgrade', (_response: http.IncomingMessage, portalSocket: Duplex) => {
      clearTimeout(exchange.timer);
      exchange.settled = 'upgraded';
      client.off('close', clientGone);
      if (client.destroyed) return void portalSocket.destroy();
      // Not after an orderly end: the pipe ended the other side, which still sends what it holds (the last frames).
      client.once('close', () => void (portalSocket.writableEnded || portalSocket.destroy()));
      portalSocket.once('close', () => void (client.writableEnded || client.destroy()));
    });
  });

  // Emitted for the portal request only, which has its exchange from 'proxyReqWs' on.
  proxy.on('error', (error, req) => failed((req as WithExchange<http.IncomingMessage>)[EXCHANGE], error));

  /** X-Forwarded-For: a trusted proxy's chain (nobody else's reaches here: see portalRequestHeaders) plus the peer. */
  function addForwardedHeaders(req: http.IncomingMessage): void {
    const remote = req.socket.remoteAddress ?? '';
    const prior = req.headers['x-forwarded-for'];
    req.headers['x-forwarded-for'] = prior ? `${prior}, ${remote}` : remote;
    req.headers['x-forwarded-proto'] = forwardedProto;
    req.headers['x-forwarded-host'] = forwardedHost;
  }

  /**
   * The request target as the portal gets it: below the upstream URL's path, repeated slashes in
   * the path as one (the path the routes judged), without a fragment (no part of a request).
   */
  function portalPath(target: string): string {
    const fragmentAt = target.indexOf('#');
    const sent = fragmentAt === -1 ? target : target.slice(0, fragmentAt);
    const queryAt = sent.indexOf('?');
    const path = queryAt === -1 ? sent : sent.slice(0, queryAt);
    if (!path.includes('//')) return basePath + sent;
    return basePath + path.replace(REPEATED_SLASHES, '/') + (queryAt === -1 ? '' : sent.slice(queryAt));
  }

  return {
    web(req, res) {
      // The client may have left while the sidecar was deciding (the answer to a pipelined request
      // waits in Node's queue without a connection, so only the connection tells).
      if (res.destroyed || req.socket.destroyed) return;
      addForwardedHeaders(req);
      const body = carriesBody(req);
      const headers = headerList(req.headers, options.target.host);
      // Node writes a header list at once, before it knows there is no body: it would frame a POST as chunked.
      if (!body && req.headers['content-length'] === undefined && !FRAMED_ONLY_WITH_A_BODY.has(req.method!)) headers.push('content-length', '0');
      const proxyReq = sendRequest({ agent, ...portal, method: req.method, path: portalPath(req.url!), headers });
      const exchange = new PortalExchange(req, res, proxyReq, options);
      (proxyReq as WithExchange<http.ClientRequest>)[EXCHANGE] = exchange;
      (res as WithExchange<http.ServerResponse>)[EXCHANGE] = exchange;
      proxyReq.on('response', onPortalResponse);
      proxyReq.on('error', onPortalError);
      res.on('close', onClientClosed);
      if (body) sendBody(exchange);
      else proxyReq.end();
    },
    ws(req, socket, head) {
      addForwardedHeaders(req);
      proxy.ws(req, socket, head);
    },
    close() {
      proxy.close();
      agent.destroy();
    },
  };
}

/**
 * The headers as a flat list: Node writes such a list as it is (checking each name and value)
 * instead of storing every header first. A request without `Host` (HTTP/1.0) gets the portal's.
 */
function headerList(headers: http.IncomingHttpHeaders, portalHost: string): string[] {
  const list: string[] = headers.host === undefined ? ['host', portalHost] : [];
  for (const name in headers) {
    const value = headers[name];
    if (typeof value === 'string') list.push(name, value);
    else if (value !== undefined) for (const each of value) list.push(name, each);
  }
  return list;
}

/** Streams the client's body to the portal; the portal's time starts again once the whole body is sent (a long upload is not a slow portal). */
function sendBody(exchange: PortalExchange): void {
  const { req, proxyReq } = exchange;
  if (!req.complete) {
    exchange.uploading = true;
    // A client that leaves before its body is whole takes the portal request with it, even once
    // the answer is finished: a portal that answered early (a 413) still awaits the body, and Node
    // no longer reports the request aborted then, only its connection closed.
    const { socket } = req;
    const onSocketClosed = () => clientLeft(exchange);
    socket.once('close', onSocketClosed);
    req.once('end', () => {
      socket.off('close', onSocketClosed);
      exchange.uploading = false;
      exchange.timer.refresh();
    });
  }
  req.pipe(proxyReq);
}

function onPortalResponse(this: WithExchange<http.ClientRequest>, proxyRes: http.IncomingMessage): void {
  const exchange = this[EXCHANGE];
  clearTimeout(exchange.timer);
  exchange.options.onResponse((performance.now() - exchange.started) / 1000);
  const client = exchange.client as http.ServerResponse;
  // A client that left first made the sidecar drop the portal's answer: not a portal failure.
  writeResponse(proxyRes, client, (error) => {
    if (!client.destroyed) exchange.options.onFailure('reset', exchange.req, client, error);
  });
}

function onPortalError(this: WithExchange<http.ClientRequest>, error: Error): void {
  failed(this[EXCHANGE], error);
}

function failed(exchange: PortalExchange, error: Error): void {
  clearTimeout(exchange.timer);
  if (exchange.settled) return void exchange.client.destroy();
  exchange.options.onFailure(exchange.timedOut ? 'timeout' : classify(error), exchange.req, exchange.client, error);
}

/** The client's response closed: if it did not finish, the client left, so the portal request goes too. */
function onClientClosed(this: WithExchange<http.ServerResponse>): void {
  const exchange = this[EXCHANGE];
  clearTimeout(exchange.timer);
  if (!this.writableFinished) clientLeft(exchange);
}

function clientLeft(exchange: PortalExchange): void {
  exchange.settled = 'client left';
  exchange.proxyReq.destroy();
}

function classify(error: NodeJS.ErrnoException): UpstreamFailure {
  if (error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') return 'refused';
  return 'reset';
}

/**
 * The portal did not take the connection or start answering in time: the request fails as
 * `timeout` (a 504). While the client is still sending its body to a portal that took the
 * connection, the time does not run out: the server's own time-outs bound a client that stalls.
 */
function timeOut(exchange: PortalExchange): void {
  if (exchange.uploading && exchange.proxyReq.socket?.connecting === false) return void exchange.timer.refresh();
  exchange.timedOut = true;
  exchange.proxyReq.destroy(new Error('upstream timeout'));
}

function carriesBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The portal's status and headers in one `writeHead` (Node frames the body itself), then its body
 * chunk by chunk, pausing while the client is slow: what `pipe` does, without the listeners `pipe`
 * sets up and takes down on both streams for every request (measured: about 5 % of a proxied
 * request's CPU time). A portal that breaks off mid-answer is reported, and the client's answer is
 * cut off too rather than left waiting for the rest.
 */
function writeResponse(proxyRes: http.IncomingMessage, res: http.ServerResponse, onBrokenOff: (error: Error) => void): void {
  const status = proxyRes.statusCode!;
  const headers = endToEndHeaders(proxyRes.rawHeaders);
  try {
    res.writeHead(status, proxyRes.statusMessage, headers);
  } catch {
    // A status text Node reads but will not write (a control character): an exception thrown here
    // would end the process. The answer goes out with the standard text instead.
    res.writeHead(status, http.STATUS_CODES[status] ?? 'Unknown', headers);
  }
  proxyRes.on('data', (chunk: Buffer) => {
    if (res.write(chunk)) return;
    proxyRes.pause();
    res.once('drain', () => proxyRes.resume());
  });
  proxyRes.on('end', () => res.end());
  proxyRes.on('error', onBrokenOff);
}
