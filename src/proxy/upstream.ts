import http from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';

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

const TIMED_OUT = Symbol('upstream timed out');
type TimedRequest = http.IncomingMessage & { [TIMED_OUT]?: boolean };

/**
 * The http-proxy wiring. http-proxy 1.18 is unmaintained, so: a keep-alive agent is always passed,
 * `error` is always handled, and the upstream request is destroyed when the client goes away.
 */
export function createUpstream(options: UpstreamOptions): Upstream {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000 });
  const proxy = httpProxy.createProxyServer({ target: options.target.href, agent, ws: true, xfwd: false });
  const forwardedProto = options.publicUrl.protocol.slice(0, -1);
  const forwardedHost = options.publicUrl.host;

  proxy.on('proxyReq', (proxyReq, req, res) => {
    const started = performance.now();
    const timer = setTimeout(() => {
      (req as TimedRequest)[TIMED_OUT] = true;
      proxyReq.destroy(new Error('upstream timeout'));
    }, options.timeoutMs);
    proxyReq.once('response', () => {
      clearTimeout(timer);
      options.onResponse((performance.now() - started) / 1000);
    });
    proxyReq.once('close', () => clearTimeout(timer));
    res.once('close', () => {
      if (!res.writableFinished) proxyReq.destroy();
    });
  });

  proxy.on('error', (error, req, res) => {
    const failure = (req as TimedRequest)[TIMED_OUT] ? 'timeout' : classify(error);
    options.onFailure(failure, req, res, error);
  });

  // A client that left first is not a portal failure: http-proxy reports it separately.
  proxy.on('econnreset', () => undefined);

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

function classify(error: NodeJS.ErrnoException): UpstreamFailure {
  if (error.code === 'ECONNREFUSED' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN') return 'refused';
  return 'reset';
}
