import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CERTIFICATE_TOKEN_HEADER } from '../clients/index.js';
import { portalRequestHeaders } from '../proxy/portal-headers.js';
import type { Session } from '../session/session.js';
import { authenticateSession, authenticateSessionNow } from './browser-auth.js';
import { handleOwnEndpoint, isOwnEndpoint, ownEndpointRoute } from './endpoints.js';
import { normalizeRequestPath } from './paths.js';
import { safeReturnUrl } from './redirects.js';
import { authenticateMachineClient, MACHINE_CREDENTIAL_HEADERS, sendInvalidClient } from './machine-client-routes.js';
import { isBrowserNavigation } from './request-kind.js';
import { RequestObserver, type ObservedRequest } from './request-observer.js';
import { acceptsHtml, answerSocket, sendHtml, sendJson, sendUnauthorized } from './responses.js';
import { REQUEST_ID_HEADER, type Services } from './services.js';
import { startSignIn } from './sign-in-routes.js';

const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** A store outage is usually brief: clients may try again in a few seconds. */
const RETRY_SOON = { 'retry-after': '5' };

/**
 * The request pipeline of the main port (DESIGN.md §1), in order:
 * strip spoofable headers → validate the path → own endpoints → public routes → machine credentials →
 * browser session → anonymous (redirect to the provider, or 401). What goes to the portal carries the
 * identity found, never the sidecar's cookies, a verified credential or hop-by-hop headers.
 */
export function createRequestHandler(services: Services): (req: IncomingMessage, res: ServerResponse) => void {
  const accessLog = services.config.log.access ? { logger: services.logger.child({ log: 'access' }), clientAddress: (req: IncomingMessage) => services.clientAddresses.of(req) } : undefined;
  const observer = new RequestObserver(services.metrics.http, accessLog);
  const passCorsPreflights = services.config.routes.corsPreflight;

  /** Answers one request; a promise only when a step has to wait (machine credentials, the session store, sign-in). */
  function handle(req: IncomingMessage, res: ServerResponse, observed: ObservedRequest): void | Promise<void> {
    services.identity.strip(req.headers);
    assignRequestId(req);
    const path = normalizeRequestPath(req.url);
    if (!path.ok) {
      observed.route = 'invalid_path';
      return sendJson(res, 400, { error: 'bad_request', error_description: 'The request path is not acceptable.' });
    }
    if (isOwnEndpoint(services, path.normalized)) {
      observed.route = ownEndpointRoute(path.normalized, services.prefix, services.config.provider.redirectPath);
      return handleOwnEndpoint(services, req, res, path.normalized);
    }
    if (services.publicRoutes.matches(path.normalized) || (passCorsPreflights && isCorsPreflight(req))) {
      observed.route = 'public';
      return forward(req, res);
    }
    if (carriesMachineCredential(req)) return handleMachineCredential(req, res, observed, path.normalized);
    return handleBrowser(req, res, observed, path.normalized);
  }

  async function handleMachineCredential(req: IncomingMessage, res: ServerResponse, observed: ObservedRequest, path: string): Promise<void> {
    const machine = await authenticateMachineClient(services, req, path);
    if (machine.status === 'refused') return sendInvalidClient(res, services.publicOrigin);
    if (machine.status === 'authenticated') {
      observed.clientId = machine.clientId;
      return forward(req, res, machine.headers, MACHINE_CREDENTIAL_HEADERS);
    }
    return handleBrowser(req, res, observed, path);
  }

  /** The browser session: found without waiting when its record is at hand, else read from the store. */
  function handleBrowser(req: IncomingMessage, res: ServerResponse, observed: ObservedRequest, path: string): void | Promise<void> {
    const session = authenticateSessionNow(services, req);
    if (session !== undefined) return handleSession(req, res, observed, session, path);
    return authenticateSession(services, req).then((stored) => handleSession(req, res, observed, stored, path));
  }

  /** With a session, to the portal; without, to the provider (a browser navigation) or a 401. */
  function handleSession(req: IncomingMessage, res: ServerResponse, observed: ObservedRequest, session: Session | null, path: string): void | Promise<void> {
    if (session) {
      observed.user = session.user;
      return forward(req, res, services.identity.forSession(session));
    }
    if (isBrowserNavigation(req.method, req.headers, services.apiRoutes.matches(path))) {
      const returnTo = safeReturnUrl(services.publicOrigin + req.url, services.publicOrigin) ?? services.publicOrigin + '/';
      return startSignIn(services, req, res, returnTo);
    }
    return sendUnauthorized(res, services.publicOrigin);
  }

  function forward(req: IncomingMessage, res: ServerResponse, added = NO_HEADERS, removed?: readonly string[]): void {
    const fromTrustedProxy = services.clientAddresses.isFromTrustedProxy(req);
    req.headers = portalRequestHeaders(req.headers, { cookie: services.cookies.withoutOwn(req.headers.cookie), added, removed, fromTrustedProxy });
    services.upstream.web(req, res);
  }

  // The usual request (a session whose record is at hand) is answered without a promise.
  return (req, res) => {
    try {
      handle(req, res, observer.begin(res))?.catch((error: unknown) => sendInternalError(services, req, res, error));
    } catch (error) {
      sendInternalError(services, req, res, error);
    }
  };
}

/**
 * WebSocket upgrades go through the same checks as any request: path, public routes, machine
 * credentials, session.
 * There is no redirect for a socket: without a session the answer is 401.
 */
export function createUpgradeHandler(services: Services): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  async function handle(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    services.identity.strip(req.headers);
    assignRequestId(req);
    if (!services.config.upstream.websockets) return refuseUpgrade(socket, 403, 'Forbidden');
    if (!isWebSocketUpgrade(req)) return refuseUpgrade(socket, 400, 'Bad Request');
    const path = normalizeRequestPath(req.url);
    if (!path.ok || isOwnEndpoint(services, path.normalized)) return refuseUpgrade(socket, 400, 'Bad Request');
    const machine = services.publicRoutes.matches(path.normalized) ? undefined : await authenticateMachineClient(services, req, path.normalized);
    if (machine?.status === 'refused') return refuseUpgrade(socket, 401, 'Unauthorized');
    const verified = machine?.status === 'authenticated';
    let added = verified ? machine.headers : NO_HEADERS;
    if (machine?.status === 'absent') {
      const session = await authenticateSession(services, req);
      if (!session) return refuseUpgrade(socket, 401, 'Unauthorized');
      added = services.identity.forSession(session);
    }
    const cookie = services.cookies.withoutOwn(req.headers.cookie);
    const fromTrustedProxy = services.clientAddresses.isFromTrustedProxy(req);
    req.headers = portalRequestHeaders(req.headers, { cookie, added, removed: verified ? MACHINE_CREDENTIAL_HEADERS : undefined, upgrade: true, fromTrustedProxy });
    services.upstream.ws(req, socket, head);
  }

  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    handle(req, socket, head).catch((error: unknown) => {
      services.logger.error({ err: error, requestId: req.headers[REQUEST_ID_HEADER] }, 'websocket upgrade failed');
      refuseUpgrade(socket, 500, 'Internal Server Error');
    });
  };
}

/**
 * Only WebSocket upgrades are tunnelled. Another protocol — `h2c` above all — would turn the
 * connection into one on which the client sends the portal any number of requests the sidecar never
 * sees (h2c smuggling). http-proxy drops such an upgrade too, without an answer; here it gets a 400
 * before any credential is looked at.
 */
function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return req.method === 'GET' && req.headers.upgrade?.trim().toLowerCase() === 'websocket';
}

/**
 * A browser asking whether a script of another origin may send a request (`routes.corsPreflight`):
 * it never carries credentials, so without this the portal could not answer it. One that carries
 * a credential or a body is no preflight.
 */
function isCorsPreflight(req: IncomingMessage): boolean {
  const { headers } = req;
  return (
    req.method === 'OPTIONS' &&
    headers.origin !== undefined &&
    headers['access-control-request-method'] !== undefined &&
    !carriesMachineCredential(req) &&
    headers.cookie === undefined &&
    headers['transfer-encoding'] === undefined &&
    (headers['content-length'] === undefined || headers['content-length'] === '0')
  );
}

/** Cheap pre-check, so browser requests skip the machine-credential step without an await. */
function carriesMachineCredential(req: IncomingMessage): boolean {
  return req.headers.authorization !== undefined || req.headers[CERTIFICATE_TOKEN_HEADER] !== undefined;
}

function assignRequestId(req: IncomingMessage): void {
  const incoming = req.headers[REQUEST_ID_HEADER];
  if (typeof incoming !== 'string' || !VALID_REQUEST_ID.test(incoming)) req.headers[REQUEST_ID_HEADER] = randomUUID();
}

function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  answerSocket(socket, `${status} ${text}`);
}

/** Something failed inside the sidecar (e.g. the session store is down): fail closed, say little. */
function sendInternalError(services: Services, req: IncomingMessage, res: ServerResponse, error: unknown): void {
  const requestId = String(req.headers[REQUEST_ID_HEADER]);
  services.logger.error({ err: error, requestId }, 'request failed inside the sidecar');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (!acceptsHtml(req)) {
    return sendJson(res, 503, { error: 'temporarily_unavailable', error_description: 'The service is temporarily unavailable.' }, RETRY_SOON);
  }
  sendHtml(res, 503, { title: 'Temporarily unavailable', message: 'The service is temporarily unavailable. Please try again in a moment.', requestId }, RETRY_SOON);
}
