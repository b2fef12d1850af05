import type { IncomingMessage } from 'node:http';
import type { AuditEvent, AuditLog } from '../audit/index.js';
import type { MachineClients } from '../clients/index.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/index.js';
import type { Metrics } from '../metrics/index.js';
import type { OidcProvider } from '../oidc/provider.js';
import type { BrowserSignIn } from '../oidc/sign-in.js';
import type { IdentityHeaders } from '../proxy/identity-headers.js';
import type { Upstream } from '../proxy/upstream.js';
import type { SessionManager } from '../session/sessions.js';
import type { Clock, KeyValueStore } from '../session/store.js';
import type { ClientAddresses } from './client-address.js';
import type { RouteList } from './paths.js';
import type { SessionCookies } from './session-cookies.js';

/** Everything the request pipeline and the own endpoints use, built once at start. */
export interface Services {
  config: Config;
  logger: Logger;
  /** Authentication events: stdout, the Redis stream and `auth_events_total`, in one call. */
  audit: AuditLog;
  /** The Prometheus metrics (DESIGN.md §8). */
  metrics: Metrics;
  store: KeyValueStore;
  sessions: SessionManager;
  provider: OidcProvider;
  signIn: BrowserSignIn;
  /** OAuth 2 applications: their credentials (pipeline step 4) and the token endpoints. */
  machineClients: MachineClients;
  upstream: Upstream;
  identity: IdentityHeaders;
  cookies: SessionCookies;
  publicRoutes: RouteList;
  apiRoutes: RouteList;
  /** The own endpoints' path prefix, e.g. `/oauth2`. */
  prefix: string;
  /** `publicUrl`'s origin, e.g. `https://portal.example.com`. */
  publicOrigin: string;
  /** Who a request's client is, past `listen.trustedProxies`: for the audit and access logs and the throttle. */
  clientAddresses: ClientAddresses;
  clock: Clock;
}

export const REQUEST_ID_HEADER = 'x-request-id';

/** The audit fields every event of a request shares. */
export function requestAuditFields(services: Pick<Services, 'clientAddresses'>, req: IncomingMessage): Pick<AuditEvent, 'ip' | 'userAgent' | 'requestId'> {
  return {
    ip: services.clientAddresses.of(req),
    userAgent: req.headers['user-agent']?.slice(0, 256),
    requestId: req.headers[REQUEST_ID_HEADER] as string | undefined,
  };
}
