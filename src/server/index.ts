import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import { AuditStream, createAuditLog } from '../audit/index.js';
import { MachineClients } from '../clients/index.js';
import { redactConfig } from '../config/index.js';
import type { Config } from '../config/schema.js';
import { createLogger, type Logger } from '../log/index.js';
import { InstrumentedStore, Metrics, type IdpEndpoint } from '../metrics/index.js';
import { OidcProvider } from '../oidc/provider.js';
import { BrowserSignIn } from '../oidc/sign-in.js';
import { LoginTransactions } from '../oidc/transactions.js';
import { IdentityHeaders, identityHeaderMap } from '../proxy/identity-headers.js';
import { createUpstream } from '../proxy/upstream.js';
import { MemoryStore } from '../session/memory-store.js';
import { createRedisClient, RedisStore } from '../session/redis-store.js';
import { SessionManager } from '../session/sessions.js';
import { systemClock, type Clock, type KeyValueStore } from '../session/store.js';
import { ClientAddresses } from './client-address.js';
import { createMetricsServer } from './metrics-server.js';
import { RouteList } from './paths.js';
import { createRequestHandler, createUpgradeHandler } from './pipeline.js';
import { answerSocket } from './responses.js';
import type { Services } from './services.js';
import { SessionCookies } from './session-cookies.js';
import { answerUpstreamFailure } from './upstream-failure.js';

/** A started sidecar: its main and metrics servers, ready to serve. */
export interface RunningSidecar {
  /** Base URL of the main port as bound (e.g. http://127.0.0.1:4180). */
  url: string;
  /** Base URL of the metrics port as bound. */
  metricsUrl: string;
  /**
   * Shuts down gracefully: `/readyz` answers 503 at once while requests are still served for
   * `drainMs` (load balancers take the replica out meanwhile), then the main port stops accepting
   * and the requests in flight get up to `finishMs` to end, then the metrics port, the proxy agent
   * and the store are closed. Defaults: no drain, 5 s to finish (tests); the CLI waits longer.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  drainMs?: number;
  finishMs?: number;
}

export interface StartOptions {
  logger?: Logger;
  /** Injected in tests to move time without sleeping. */
  clock?: Clock;
  /** The configuration file the sidecar was started from: reloads read its `applications` again. */
  configFile?: string;
  /** The environment that configuration was read with. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** How long requests in flight may take to finish when the sidecar closes, unless told otherwise. */
const DEFAULT_FINISH_MS = 5000;

/** Client request headers above this size are answered 431 by Node before any of our code runs. */
const MAX_HEADER_BYTES = 16 * 1024;

/**
 * Builds every service from the configuration and starts both servers. If any step fails, what was
 * already started is closed again before the error is thrown.
 */
export async function startSidecar(config: Config, options: StartOptions = {}): Promise<RunningSidecar> {
  const logger = options.logger ?? createLogger(config.log.level);
  const clock = options.clock ?? systemClock;
  const metrics = new Metrics();
  const { store, auditStream } = createStore(config, clock, logger, metrics);
  const transactions = transactionStore(config, store, clock);
  // Run newest first, so that servers stop before the services they use.
  const closers: Array<() => unknown> = [() => store.close()];
  if (transactions !== store) closers.unshift(() => transactions.close());
  const closeAll = async () => {
    for (const close of closers.splice(0)) await close();
  };
  let draining = false;
  try {
    const onIdpRequest = (endpoint: IdpEndpoint, seconds: number) => metrics.idpRequest(endpoint, seconds);
    const machineClients = await MachineClients.start({ config, logger, store, clock, configFile: options.configFile, env: options.env, onIdpRequest });
    closers.unshift(() => machineClients.close());
    const provider = new OidcProvider(config, logger, clock, onIdpRequest);
    closers.unshift(() => provider.close());
    await provider.start();
    const services = buildServices(config, logger, store, transactions, provider, clock, metrics, auditStream, machineClients);
    closers.unshift(() => services.audit.close());
    closers.unshift(() => services.upstream.close());
    const metricsServer = createMetricsServer(store, provider, () => metrics.exposition(), () => draining);
    await listen(metricsServer, config.metrics.port, config.metrics.host);
    closers.unshift(() => closeServer(metricsServer, 0));
    const main = createMainServer(services);
    await listen(main, config.listen.port, config.listen.host);
    let finishMs = DEFAULT_FINISH_MS;
    closers.unshift(() => closeServer(main, finishMs));
    logger.info({ url: baseUrl(main), metricsUrl: baseUrl(metricsServer), upstream: redactConfig(config.upstream.url), store: config.session.store }, 'oidc-sidecar started');
    const close = async ({ drainMs = 0, finishMs: finishWithin = DEFAULT_FINISH_MS }: CloseOptions = {}) => {
      draining = true;
      finishMs = finishWithin;
      if (drainMs > 0) await sleep(drainMs);
      await closeAll();
    };
    return { url: baseUrl(main), metricsUrl: baseUrl(metricsServer), close };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

function createMainServer(services: Services): http.Server {
  const main = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 300_000, headersTimeout: 30_000 }, createRequestHandler(services));
  // A client connection with nothing sent or received for twice the portal's time-out is closed: a
  // client that stops reading an answer would otherwise hold its portal connection for ever.
  main.setTimeout(2 * services.config.upstream.timeoutSeconds * 1000);
  main.on('upgrade', createUpgradeHandler(services));
  main.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    answerSocket(socket, error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request');
  });
  return main;
}

function buildServices(
  config: Config,
  logger: Logger,
  store: KeyValueStore,
  transactions: KeyValueStore,
  provider: OidcProvider,
  clock: Clock,
  metrics: Metrics,
  auditStream: AuditStream | undefined,
  machineClients: MachineClients,
): Services {
  const sessions = new SessionManager({
    store,
    secret: config.session.secret,
    idleTimeoutMs: config.session.idleTimeoutMinutes * 60_000,
    clock,
    onError: (error) => logger.warn({ err: error }, 'extending a session in the store failed'),
  });
  const upstream = createUpstream({
    target: new URL(config.upstream.url),
    timeoutMs: config.upstream.timeoutSeconds * 1000,
    publicUrl: new URL(config.publicUrl),
    onResponse: (seconds) => metrics.upstreamResponse(seconds),
    onFailure: (failure, req, res, error) => {
      metrics.upstreamError(failure);
      answerUpstreamFailure(logger, failure, req, res, error);
    },
  });
  return {
    config,
    logger,
    audit: createAuditLog({ logger, enabled: config.audit.enabled, metrics, stream: auditStream }),
    metrics,
    store,
    sessions,
    provider,
    signIn: new BrowserSignIn(config, provider, new LoginTransactions(transactions, config.session.secret, clock), clock),
    machineClients,
    upstream,
    identity: new IdentityHeaders(identityHeaderMap(config.identity.headers, config.provider.type), config.identity),
    cookies: new SessionCookies(config, sessions.isGenuineCookie),
    publicRoutes: new RouteList(config.routes.public),
    apiRoutes: new RouteList(config.routes.api),
    prefix: config.routes.prefix,
    publicOrigin: new URL(config.publicUrl).origin,
    clientAddresses: new ClientAddresses(config.listen.trustedProxies),
    clock,
  };
}

/** Used login states that the memory store keeps apart, so that they never evict a session. */
const MEMORY_TRANSACTIONS_MAX = 10_000;

/**
 * Where the used-state marks of login transactions live (a transaction itself travels in its
 * state): the shared store with Redis, so a replayed callback is refused on every replica; with the
 * memory store, a small store of their own.
 */
function transactionStore(config: Config, store: KeyValueStore, clock: Clock): KeyValueStore {
  return config.session.store === 'memory' ? new MemoryStore({ clock, maxEntries: MEMORY_TRANSACTIONS_MAX }) : store;
}

/** The session store, timed by operation; with Redis, the audit stream shares its connection. */
function createStore(config: Config, clock: Clock, logger: Logger, metrics: Metrics): { store: KeyValueStore; auditStream?: AuditStream } {
  if (config.session.store === 'redis') {
    const client = createRedisClient(config.redis, (error) => logger.warn({ err: error }, 'redis connection error'));
    const onError = (error: unknown) => logger.warn({ err: error }, 'redis invalidation connection error (local session copies are off until it is back)');
    return { store: new InstrumentedStore(new RedisStore(client, { onError }), metrics.store), auditStream: new AuditStream(client, config.audit.stream.maxLength) };
  }
  return { store: new InstrumentedStore(new MemoryStore({ clock }), metrics.store) };
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function baseUrl(server: http.Server): string {
  const { address, port, family } = server.address() as AddressInfo;
  const host = address === '0.0.0.0' || address === '::' ? '127.0.0.1' : family === 'IPv6' ? `[${address}]` : address;
  return `http://${host}:${port}`;
}

/** Lets requests in flight finish for up to `finishMs`, then closes what is left (e.g. WebSockets). */
function closeServer(server: http.Server, finishMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), finishMs).unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
