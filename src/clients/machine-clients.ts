import type { IncomingHttpHeaders } from 'node:http';
import type { JWK } from 'jose';
import type { ApplicationConfig, Config } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { IdpEndpoint } from '../metrics/index.js';
import { RouteList } from '../server/paths.js';
import type { Clock, KeyValueStore } from '../session/store.js';
import { MachineAuthenticator, type MachineAuthOutcome } from './authenticator.js';
import { FailureThrottle } from './failure-throttle.js';
import { IdpTokenVerifier } from './idp-tokens.js';
import { ApplicationRegistry, applicationFiles } from './registry.js';
import { applicationsSource, watchFiles, type ApplicationsSource } from './reload.js';
import { RevocationList } from './revocation.js';
import { TokenEndpoint, type ClientRequest, type OAuthAnswer } from './token-endpoint.js';
import { TokenIssuer } from './token-issuer.js';

export interface MachineClientsOptions {
  config: Config;
  logger: Logger;
  /** The shared store: revoked tokens are kept there, so that every replica sees them. */
  store: KeyValueStore;
  clock: Clock;
  /** The configuration file the sidecar was started from: reloads read its `applications` again. */
  configFile?: string;
  /** The environment that configuration was read with. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Told of each request to the identity provider (`clients.idpTokens`' discovery and key set), for `idp_request_duration_seconds`. */
  onIdpRequest?: (endpoint: IdpEndpoint, seconds: number) => void;
}

const THROTTLE = { limit: 20, windowMs: 60_000, maxKeys: 10_000 };

/**
 * Machine clients (DESIGN.md §5): the registered applications, the tokens the sidecar issues to them,
 * and the pipeline's check of their credentials. The registry is read again — without a restart —
 * when its file (or a certificate or key file it names) changes, and on SIGHUP; a registry that fails
 * to load leaves the last good one in use.
 */
export class MachineClients {
  #stopWatching: () => void = () => undefined;
  #reloading: Promise<boolean> = Promise.resolve(true);
  readonly #onSighup = () => void this.reload();

  private constructor(
    private readonly issuer: TokenIssuer,
    private readonly authenticator: MachineAuthenticator,
    private readonly endpoint: TokenEndpoint,
    private readonly source: ApplicationsSource | undefined,
    private readonly logger: Logger,
  ) {}

  /** Reads the applications and the signing keys; throws when either is unusable. */
  static async start(options: MachineClientsOptions): Promise<MachineClients> {
    const { config, logger, store, clock } = options;
    const source = applicationsSource(config, options.configFile, options.env ?? process.env);
    // The configuration holds the applications as read at start, except an applicationsFile it only names.
    const applications = config.applicationsFile !== undefined && source ? await source.read() : config.applications;
    const registry = await ApplicationRegistry.load(applications);
    warnOfCheaperSecretHashes(logger, registry);
    const origin = new URL(config.publicUrl).origin;
    const issuer = await TokenIssuer.create({ keyFile: config.clients.signingKeyFile, issuer: origin + config.routes.prefix, ttlSeconds: config.clients.tokenTtlSeconds, clock });
    const revocations = new RevocationList(store, clock);
    const idpTokens = config.clients.idpTokens;
    const idp = idpTokens && {
      verifier: new IdpTokenVerifier(idpTokens, clock, (error) => logger.warn({ err: error, issuer: idpTokens.issuer }, 'the identity provider keys for clients.idpTokens could not be loaded'), {
        onIdpRequest: options.onIdpRequest,
      }),
      routes: new RouteList(idpTokens.routes ?? config.routes.api),
    };
    const authenticator = new MachineAuthenticator({ registry, issuer, idp, revocations, clock });
    const endpoint = new TokenEndpoint({ registry: () => authenticator.registry, issuer, revocations, authenticator, throttle: new FailureThrottle(THROTTLE, clock), realm: origin });
    const clients = new MachineClients(issuer, authenticator, endpoint, source, logger);
    clients.#watch(applications);
    process.on('SIGHUP', clients.#onSighup);
    return clients;
  }

  /** Pipeline step 4: the machine credential of a request, if it carries one. */
  authenticate(headers: IncomingHttpHeaders, path: string): Promise<MachineAuthOutcome> {
    return this.authenticator.authenticate(headers, path);
  }

  /** `POST /oauth2/token`. */
  token(request: ClientRequest): Promise<OAuthAnswer> {
    return this.endpoint.token(request);
  }

  /** `POST /oauth2/revoke`. */
  revoke(request: ClientRequest): Promise<OAuthAnswer> {
    return this.endpoint.revoke(request);
  }

  /** `GET /oauth2/jwks`. */
  jwks(): { keys: JWK[] } {
    return this.issuer.jwks();
  }

  #closed = false;

  /** Reads the applications again; resolves to false (the last good registry staying in use) when they are unusable. */
  reload(): Promise<boolean> {
    this.#reloading = this.#reloading.then(() => this.#reloadNow());
    return this.#reloading;
  }

  close(): void {
    this.#closed = true;
    process.off('SIGHUP', this.#onSighup);
    this.#stopWatching();
  }

  async #reloadNow(): Promise<boolean> {
    if (!this.source) {
      this.logger.info('applications not reloaded: they come from the configuration given at start');
      return false;
    }
    try {
      const applications = await this.source.read();
      const registry = await ApplicationRegistry.load(applications);
      warnOfCheaperSecretHashes(this.logger, registry);
      this.authenticator.useRegistry(registry);
      this.#watch(applications);
      this.logger.info({ applications: registry.size, file: this.source.file }, 'applications reloaded');
      return true;
    } catch (error) {
      const problems = (error as { problems?: string[] }).problems ?? [(error as Error).message];
      this.logger.error({ problems, file: this.source.file }, 'applications not reloaded: the last good registry stays in use');
      return false;
    }
  }

  #watch(applications: readonly ApplicationConfig[]): void {
    // A reload that finishes after close() must not start watching again.
    if (!this.source || this.#closed) return;
    this.#stopWatching();
    const files = [this.source.file, ...applicationFiles(applications)];
    this.#stopWatching = watchFiles(files, () => void this.reload(), (error) => this.logger.warn({ err: error }, 'watching the applications files failed'));
  }
}

/** Hashes made with weaker parameters than the others make their client ids tell from unknown ones by timing. */
function warnOfCheaperSecretHashes(logger: Logger, registry: ApplicationRegistry): void {
  if (registry.cheaperSecretHashes.length === 0) return;
  logger.warn(
    { clientIds: registry.cheaperSecretHashes },
    'these client secrets are hashed with cheaper scrypt parameters than the costliest one: /oauth2/token refuses a wrong secret for them sooner than for an unknown client id; hash every client secret with the same parameters',
  );
}
