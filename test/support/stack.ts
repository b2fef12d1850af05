import { randomBytes } from 'node:crypto';
import { configSchema, type Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/log/index.js';
import { startSidecar, type RunningSidecar } from '../../src/server/index.js';
import type { Clock } from '../../src/session/store.js';
import { CookieJar, signInWithoutBrowser } from './browserless.js';
import { freePort } from './free-port.js';
import { request } from './http.js';
import { DEMO_USERS, startIdp, type IdpOptions, type TestClient, type TestIdp, type TestUser } from './idp.js';
import { startPortal, type LegacyPortal } from './portal.js';

/**
 * A whole deployment on loopback for integration tests: the real test IdP, the demo portal and one
 * or more sidecars (replicas) sharing one configuration — and, for the Redis store, one Redis.
 */
export interface Stack {
  idp: TestIdp;
  portal: LegacyPortal;
  config: Config;
  /** The first replica; its address is also `publicUrl`. */
  sidecar: RunningSidecar;
  /** Every line the sidecars logged (audit events included), for assertions and secret scans. */
  logLines: string[];
  /** Starts another replica with the same configuration on another port. */
  addReplica(): Promise<RunningSidecar>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Configuration merged over the stack's defaults (deeply, objects only); may depend on the IdP. */
  config?: Record<string, unknown> | ((idp: TestIdp) => Promise<Record<string, unknown>>);
  /** IdP options; its `clients` are registered besides the sidecar's own. */
  idp?: Partial<IdpOptions>;
  clock?: Clock;
  /** Register the sidecar's back-channel logout endpoint at the IdP. */
  backchannelLogout?: boolean;
  /** Changes to the sidecar's registration at the IdP (e.g. `private_key_jwt` and its keys). */
  sidecarClient?: Partial<TestClient>;
}

export const CLIENT_ID = 'portal-sidecar';
/** Headers of a top-level browser navigation (Node's fetch says `sec-fetch-mode: cors` otherwise). */
export const NAVIGATION = { accept: 'text/html', 'sec-fetch-mode': 'navigate' };
export const CLIENT_SECRET = 'portal-sidecar-client-secret-for-tests';

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const portal = await startPortal();
  const idp = await startIdp({
    ...options.idp,
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        redirectUris: [`${publicUrl}/oauth2/callback`],
        postLogoutRedirectUris: [`${publicUrl}/oauth2/sign_out`, `${publicUrl}/`],
        backchannelLogoutUri: options.backchannelLogout ? `${publicUrl}/oauth2/backchannel-logout` : undefined,
        ...options.sidecarClient,
      },
      ...(options.idp?.clients ?? []),
    ],
  });
  const config = configSchema.parse(
    deepMerge(
      {
        listen: { host: '127.0.0.1', port },
        metrics: { host: '127.0.0.1', port: 0 },
        upstream: { url: portal.url, timeoutSeconds: 5 },
        publicUrl,
        provider: { issuerUrl: idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
        session: { secret: randomBytes(32).toString('base64url') },
        log: { level: 'info' },
      },
      typeof options.config === 'function' ? await options.config(idp) : (options.config ?? {}),
    ),
  );
  const logLines: string[] = [];
  const logger = createLogger(config.log.level, { write: (line: string) => void logLines.push(line) });
  const replicas: RunningSidecar[] = [];
  const start = async (listenPort: number) => {
    const replica = await startSidecar({ ...config, listen: { ...config.listen, port: listenPort } }, { logger, clock: options.clock });
    replicas.push(replica);
    return replica;
  };
  // A sidecar that cannot start leaves nothing running: the test fails instead of hanging.
  const sidecar = await start(port).catch(async (error: unknown) => {
    await Promise.all([idp.stop(), portal.stop()]);
    throw error;
  });
  return {
    idp,
    portal,
    config,
    sidecar,
    logLines,
    addReplica: () => start(0),
    async stop() {
      await Promise.all(replicas.map((replica) => replica.close()));
      await Promise.all([idp.stop(), portal.stop()]);
    },
  };
}

/** The audit events logged so far, parsed. */
export function auditEvents(stack: Stack): Array<Record<string, unknown>> {
  return stack.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.log === 'audit');
}

/**
 * Signs `user` in through the sidecar at `baseUrl` like a browser would, without one: asks for
 * `path`, follows the redirect to the IdP, signs in there, and returns to the callback.
 * Resolves with the session cookie value and where the callback sent the browser.
 */
export async function signIn(
  stack: Stack,
  options: { user?: TestUser; path?: string; baseUrl?: string; callbackBaseUrl?: string } = {},
): Promise<{ cookie: string; location: string; cookieHeader: string; setCookie: string }> {
  const user = options.user ?? DEMO_USERS.alice;
  const baseUrl = options.baseUrl ?? stack.sidecar.url;
  const cookieName = stack.config.session.cookie.name;
  const start = await request(baseUrl + (options.path ?? '/'), { headers: NAVIGATION });
  if (start.status !== 302) throw new Error(`the sidecar answered ${start.status} instead of sending the browser to the IdP`);
  const binding = start.cookies[`${cookieName}_csrf`];
  const callback = new URL(await signInWithoutBrowser(String(start.headers.location), user.username, user.password, new CookieJar()));
  const answer = await request((options.callbackBaseUrl ?? baseUrl) + callback.pathname + callback.search, {
    headers: { ...NAVIGATION, cookie: `${cookieName}_csrf=${binding}` },
  });
  if (answer.status !== 302) throw new Error(`callback answered ${answer.status}: ${answer.body}`);
  const cookie = answer.cookies[cookieName]!;
  // The session cookie is the last of its name (a host-only one may be ended before it: session.cookie.domain).
  const setCookie = (answer.headers['set-cookie'] ?? []).findLast((header) => header.startsWith(cookieName + '='))!;
  return { cookie, location: String(answer.headers.location), cookieHeader: `${cookieName}=${cookie}`, setCookie };
}

function deepMerge(base: Record<string, unknown>, overrides: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    const current = result[key];
    result[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return result;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
