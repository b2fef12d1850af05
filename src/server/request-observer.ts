import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log/index.js';
import type { HttpMetrics, HttpRoute } from '../metrics/index.js';
import { REQUEST_ID_HEADER } from './services.js';

/** The status recorded for a request whose client left before any answer (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;
const MAX_LOGGED_PATH = 1000;

/** What the pipeline learns about one request while answering it; recorded when the answer ends. */
export class ObservedRequest {
  /** Set by the pipeline as soon as it knows; a request refused for want of identity stays `proxy`. */
  route: HttpRoute = 'proxy';
  /** Who made it, for the access log: the session's user name … */
  user?: string;
  /** … or the machine client's id. */
  clientId?: string;
  readonly started = performance.now();

  constructor(readonly observer: RequestObserver) {}
}

const OBSERVED = Symbol('observed request');
type ObservedResponse = ServerResponse & { [OBSERVED]: ObservedRequest };

/**
 * Records every request of the main port once its answer ends (or the client leaves): the HTTP
 * metrics and, when `log.access` is on, one access-log line. Per request: one small object, one
 * `performance.now()` pair and one `close` listener shared by all requests.
 */
export class RequestObserver {
  constructor(
    private readonly metrics: HttpMetrics,
    private readonly accessLog: AccessLog | undefined,
  ) {}

  begin(res: ServerResponse): ObservedRequest {
    const observed = new ObservedRequest(this);
    (res as ObservedResponse)[OBSERVED] = observed;
    res.on('close', onClose);
    return observed;
  }

  finish(observed: ObservedRequest, res: ServerResponse): void {
    const seconds = (performance.now() - observed.started) / 1000;
    const status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST;
    this.metrics.record(observed.route, res.req.method, status, seconds);
    if (this.accessLog) logAccess(this.accessLog, observed, res.req, status, seconds);
  }
}

function onClose(this: ObservedResponse): void {
  const observed = this[OBSERVED];
  observed.observer.finish(observed, this);
}

/** `log.access`: where the lines go, and who the client is (past trusted proxies). */
export interface AccessLog {
  logger: Logger;
  clientAddress(req: IncomingMessage): string;
}

/** One line a request; the path without its query string, never a header, cookie or token. */
function logAccess({ logger, clientAddress }: AccessLog, observed: ObservedRequest, req: IncomingMessage, status: number, seconds: number): void {
  const url = req.url ?? '';
  const queryAt = url.indexOf('?');
  logger.info({
    method: req.method,
    path: (queryAt === -1 ? url : url.slice(0, queryAt)).slice(0, MAX_LOGGED_PATH),
    route: observed.route,
    status,
    durationMs: Math.round(seconds * 10_000) / 10,
    requestId: req.headers[REQUEST_ID_HEADER],
    user: observed.user,
    clientId: observed.clientId,
    ip: clientAddress(req),
  }, 'request');
}

