import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpRoute } from '../metrics/index.js';
import { authenticateSession } from './browser-auth.js';
import { backchannelLogout, frontchannelLogout } from './logout-routes.js';
import { jwksEndpoint, revocationEndpoint, tokenEndpoint } from './machine-client-routes.js';
import { safeReturnUrl } from './redirects.js';
import { acceptsHtml, sendHtml, sendJson, sendUnauthorized } from './responses.js';
import { REQUEST_ID_HEADER, type Services } from './services.js';
import { finishSignIn, signOut, startSignIn } from './sign-in-routes.js';

type EndpointHandler = (services: Services, req: IncomingMessage, res: ServerResponse, rawQuery: string) => Promise<void>;

interface Endpoint {
  methods: readonly string[];
  handle: EndpointHandler;
}

const GET = ['GET', 'HEAD'] as const;

/** The sidecar's own endpoints under the prefix (DESIGN.md §3), by path after the prefix. */
const ENDPOINTS: Record<string, Endpoint> = {
  '/start': { methods: GET, handle: start },
  '/sign_out': { methods: [...GET, 'POST'], handle: signOut },
  '/userinfo': { methods: GET, handle: userinfo },
  '/auth': { methods: GET, handle: forwardAuth },
  '/backchannel-logout': { methods: ['POST'], handle: backchannelLogout },
  '/frontchannel-logout': { methods: GET, handle: frontchannelLogout },
  '/token': { methods: ['POST'], handle: tokenEndpoint },
  '/revoke': { methods: ['POST'], handle: revocationEndpoint },
  '/jwks': { methods: GET, handle: jwksEndpoint },
};

/**
 * The route label of an own endpoint's normalized path: the endpoint dispatch finds (`callback`,
 * `sign_out`, `backchannel_logout`, …), or `not_found` — a near miss such as `/sign-out` too.
 */
export function ownEndpointRoute(path: string, prefix: string, redirectPath: string): HttpRoute {
  if (path === redirectPath) return 'callback';
  const endpointPath = path.slice(prefix.length);
  return Object.hasOwn(ENDPOINTS, endpointPath) ? (endpointPath.slice(1).replaceAll('-', '_') as HttpRoute) : 'not_found';
}

/** The redirect URI (`provider.redirectPath`, which may lie outside the prefix). */
const CALLBACK: Endpoint = { methods: GET, handle: finishSignIn };

/** Answers a request for an own endpoint; `path` is the normalized path. */
export async function handleOwnEndpoint(services: Services, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const endpoint = path === services.config.provider.redirectPath ? CALLBACK : ENDPOINTS[path.slice(services.prefix.length)];
  if (!endpoint) return sendNotFound(req, res);
  if (!endpoint.methods.includes(req.method ?? '')) {
    return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: endpoint.methods.join(', ') });
  }
  return endpoint.handle(services, req, res, queryOf(req.url));
}

/** True when the normalized path is one the sidecar answers itself. */
export function isOwnEndpoint(services: Services, path: string): boolean {
  return path.startsWith(services.prefix + '/') || path === services.config.provider.redirectPath;
}

async function start(services: Services, req: IncomingMessage, res: ServerResponse, rawQuery: string): Promise<void> {
  const requested = new URLSearchParams(rawQuery).get('rd');
  const returnTo = safeReturnUrl(requested, services.publicOrigin) ?? `${services.publicOrigin}/`;
  return startSignIn(services, req, res, returnTo);
}

async function userinfo(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const session = await authenticateSession(services, req);
  if (!session) return sendUnauthorized(res, services.publicOrigin);
  const { claims } = session;
  sendJson(res, 200, {
    user: session.user,
    subject: session.subject,
    email: claims.email,
    name: claims.name,
    groups: claims.groups ?? [],
    roles: claims.roles ?? [],
    sessionExpiresAt: new Date(session.expiresAt).toISOString(),
  });
}

/** For nginx `auth_request` and Traefik forward-auth: 202 with the identity headers, or 401. */
async function forwardAuth(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const session = await authenticateSession(services, req);
  if (!session) return sendUnauthorized(res, services.publicOrigin);
  const headers = { ...services.identity.forSession(session), 'cache-control': 'no-store' };
  res.writeHead(202, headers);
  res.end();
}

function sendNotFound(req: IncomingMessage, res: ServerResponse): void {
  if (!acceptsHtml(req)) return sendJson(res, 404, { error: 'not_found' });
  sendHtml(res, 404, { title: 'Not found', message: 'There is no such page.', requestId: String(req.headers[REQUEST_ID_HEADER]) });
}

function queryOf(url: string | undefined): string {
  const at = url?.indexOf('?') ?? -1;
  return at === -1 ? '' : url!.slice(at + 1);
}
