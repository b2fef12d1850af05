import http from 'node:http';
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

/** One request on its way to the portal: kept on the client's request, no closure per request. */
interface PendingRequest {
  readonly proxyReq: http.ClientRequest;
  readonly started: number;
  readonly timer: NodeJS.Timeout;
  timedOut: boolean;
  /** The client is still sending the body: the time-out waits. */
  uploading?: boolean;
  /**
   * A WebSocket upgrade that needs no HTTP answer any more: the portal accepted it (a failure now is
   * the sockets' to end), or the client left before (not a portal failure).
   */
  settled?: 'upgraded' | 'client left';
}

const PENDING = Symbol('pending upstream request');
type ProxiedRequest = http.IncomingMessage & { [PENDING]?: PendingRequest };

/**
 * The http-proxy wiring. http-proxy 1.18 is unmaintained, so: a keep-alive agent is always passed,
 * `error` is always handled, and the upstream request is destroyed when the client goes away.
 * The portal's response is written by `writeResponse` rather than by http-proxy's own passes: one
 * `writeHead` with the raw header list, hop-by-hop headers dropped.
 */
export function createUpstream(options: UpstreamOptions): Upstream {
  // Connections to the portal are not capped (as with nginx or oauth2-proxy): a cap would let a few
  // clients that stop reading hold every connection while later requests queue. Idle ones are kept
  // up to a bound.
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64, timeout: 60_000 });
  const proxy = httpProxy.createProxyServer({ target: options.target.href, agent, ws: true, xfwd: false, selfHandleResponse: true });
  removeDeleteLengthPass(proxy);
  const forwardedProto = options.publicUrl.protocol.slice(0, -1);
  const forwardedHost = options.publicUrl.host;

  proxy.on('proxyReq', (proxyReq, req, res) => {
    // The client may have left in the moment before the portal connection was handed out.
    if (res.destroyed) return void proxyReq.destroy();
    const pending: PendingRequest = { proxyReq, started: performance.now(), timer: setTimeout(timeOut, options.timeoutMs, req), timedOut: false };
    (req as ProxiedRequest)[PENDING] = pending;
    res.on('close', abandonIfUnfinished);
    // The portal's time starts again once the client has sent the whole body: a long upload is not a slow portal.
    if (carriesBody(req) && !req.complete) {
      pending.uploading = true;
      req.once('end', () => {
        pending.uploading = false;
        pending.timer.refresh();
      });
    }
  });

  // An upgrade has the same time-out (a client that leaves meanwhile is noticed by it at the latest:
  // its socket is not read before the portal answers, so only a reset shows at once). Once
  // upgraded, http-proxy joins the two sockets until either ends; one destroyed without ending
  // (which http-proxy's pipes do not pass on) takes the other with it.
  proxy.on('proxyReqWs', (proxyReq, req, client) => {
    const pending: PendingRequest = { proxyReq, started: performance.now(), timer: setTimeout(timeOut, options.timeoutMs, req), timedOut: false };
    (req as ProxiedRequest)[PENDING] = pending;
    const clientLeft = () => {
      pending.settled = 'client left';
      proxyReq.destroy();
    };
    if (client.destroyed) return clientLeft();
    client.once('close', clientLeft);
    proxyReq.once('response', () => clearTimeout(pending.timer));
    proxyReq.once('upgrade', (_response: http.IncomingMessage, portal: Duplex) => {
      clearTimeout(pending.timer);
      pending.settled = 'upgraded';
      client.off('close', clientLeft);
      if (client.destroyed) return void portal.destroy();
      // Not after an orderly end: the pipe ended the other side, which still sends what it holds (the last frames).
      client.once('close', () => void (portal.writableEnded || portal.destroy()));
      portal.once('close', () => void (client.writableEnded || client.destroy()));
    });
  });

  proxy.on('proxyRes', (proxyRes, req, res) => {
    const pending = (req as ProxiedRequest)[PENDING];
    if (pending) {
      clearTimeout(pending.timer);
      options.onResponse((performance.now() - pending.started) / 1000);
    }
    const client = res as http.ServerResponse;
    // A client that left first made the sidecar drop the portal's answer: not a portal failure.
    writeResponse(proxyRes, client, (error) => {
      if (!client.destroyed) options.onFailure('reset', req, client, error);
    });
  });

  proxy.on('error', (error, req, res) => {
    const pending = (req as ProxiedRequest)[PENDING];
    if (pending) clearTimeout(pending.timer);
    if (pending?.settled) return void res.destroy();
    options.onFailure(pending?.timedOut ? 'timeout' : classify(error), req, res, error);
  });

  // A client that left first is not a portal failure: http-proxy reports it separately.
  proxy.on('econnreset', () => undefined);

  /** X-Forwarded-For: a trusted proxy's chain (nobody else's reaches here: see portalRequestHeaders) plus the peer. */
  function addForwardedHeaders(req: http.IncomingMessage): void {
    const remote = req.socket.remoteAddress ?? '';
    const prior = req.headers['x-forwarded-for'];
    req.headers['x-forwarded-for'] = prior ? `${prior}, ${remote}` : remote;
    req.headers['x-forwarded-proto'] = forwardedProto;
    req.headers['x-forwarded-host'] = forwardedHost;
  }

  return {
    web(req, res) {
      addForwardedHeaders(req);
      proxy.web(req, res);
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
 * http-proxy's `deleteLength` pass gives a DELETE or OPTIONS without Content-Length a
 * `Content-Length: 0` and drops its `Transfer-Encoding` — and still streams the body, which the portal
 * then reads as a request of its own, past every check of the sidecar (request smuggling:
 * node-http-proxy#1720, unfixed in 1.18.1). Without the pass Node frames such a request as it came.
 */
function removeDeleteLengthPass(proxy: httpProxy): void {
  const { webPasses } = proxy as unknown as { webPasses: Array<{ name: string }> };
  const at = webPasses.findIndex((pass) => pass.name === 'deleteLength');
  if (at === -1) throw new Error("http-proxy's deleteLength pass is gone: check what its new version does with a chunked DELETE");
  webPasses.splice(at, 1);
}

function classify(error: NodeJS.ErrnoException): UpstreamFailure {
  if (error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') return 'refused';
  return 'reset';
}

/**
 * The portal did not start answering in time: the request fails as `timeout` (a 504). While the
 * client is still sending its body the time does not run out (the server's own time-outs bound a
 * client that stalls); a portal connection that cannot even be opened does.
 */
function timeOut(req: ProxiedRequest): void {
  const pending = req[PENDING]!;
  if (pending.uploading) return void pending.timer.refresh();
  pending.timedOut = true;
  pending.proxyReq.destroy(new Error('upstream timeout'));
}

function carriesBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The client's response closed: if it did not finish, the client left, so the portal request goes too. */
function abandonIfUnfinished(this: http.ServerResponse): void {
  const pending = (this.req as ProxiedRequest)[PENDING];
  if (!pending) return;
  clearTimeout(pending.timer);
  if (!this.writableFinished) pending.proxyReq.destroy();
}

/**
 * The portal's status and headers in one `writeHead` (Node frames the body itself), then its body
 * chunk by chunk, pausing while the client is slow: what `pipe` does, without the listeners `pipe`
 * sets up and takes down on both streams for every request (measured: about 5 % of a proxied
 * request's CPU time). A portal that breaks off mid-answer is reported, and the client's answer is
 * cut off too rather than left waiting for the rest.
 */
function writeResponse(proxyRes: http.IncomingMessage, res: http.ServerResponse, onBrokenOff: (error: Error) => void): void {
  res.writeHead(proxyRes.statusCode!, proxyRes.statusMessage, endToEndHeaders(proxyRes.rawHeaders));
  proxyRes.on('data', (chunk: Buffer) => {
    if (res.write(chunk)) return;
    proxyRes.pause();
    res.once('drain', () => proxyRes.resume());
  });
  proxyRes.on('end', () => res.end());
  proxyRes.on('error', onBrokenOff);
}
