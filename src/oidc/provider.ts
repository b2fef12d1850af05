import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { importPKCS8 } from 'jose';
import * as client from 'openid-client';
import { readConfiguredFile } from '../config/files.js';
import { isHttpsOrLoopback, type Config } from '../config/schema.js';
import type { Logger } from '../log/index.js';
import { idpEndpointOf, timedFetch, type IdpEndpoint } from '../metrics/index.js';
import { hasGroupOverage, readGroupsFromGraph, withoutOverageClaims } from './group-overage.js';
import { LogoutTokenVerifier } from './logout-token.js';
import type { Claims } from '../session/session.js';
import { systemClock, type Clock } from '../session/store.js';

/** What a successful code exchange or refresh yields. */
export interface TokenSet {
  claims: Claims;
  idToken?: string;
  accessToken: string;
  refreshToken?: string;
  /** When the access token expires (ms since epoch), when the provider said. */
  expiresAt?: number;
}

/** The parameters one sign-in attempt is bound to (kept in the login transaction). */
export interface AuthorizationChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** Claims that describe the token rather than the user; not kept in sessions. */
const PROTOCOL_CLAIMS = new Set(['iss', 'aud', 'exp', 'iat', 'nbf', 'nonce', 'at_hash', 'c_hash', 'auth_time', 'azp', 'jti', 'acr', 'amr', 'uti', 'rh', 'aio']);
const IDP_TIMEOUT_SECONDS = 10;
const RETRY_DELAYS_MS = [1000, 2000, 5000, 10_000, 30_000];

/**
 * The OpenID Connect relying party: discovery (with endpoint overrides), the authorization URL,
 * the code exchange with PKCE/state/nonce checks, refresh, revocation and the end-session URL.
 * Discovery runs at start and is retried in the background until it succeeds; until then
 * `isReady()` is false and `/readyz` answers 503.
 */
export class OidcProvider {
  readonly redirectUri: string;
  #configuration: client.Configuration | undefined;
  #logoutTokens: LogoutTokenVerifier | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Every request to the provider goes through it, timed by endpoint. */
  readonly #fetch: ReturnType<typeof timedFetch>;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
    onIdpRequest: (endpoint: IdpEndpoint, seconds: number) => void = () => undefined,
  ) {
    this.redirectUri = new URL(config.provider.redirectPath, config.publicUrl).href;
    const graphUrl = config.provider.type === 'azure' ? config.provider.azure.graphUrl.replace(/\/$/, '') + '/' : undefined;
    const endpointOf = (url: string) => (graphUrl && url.startsWith(graphUrl) ? 'graph' : idpEndpointOf(url, this.#configuration?.serverMetadata()));
    this.#fetch = timedFetch(endpointOf, onIdpRequest);
  }

  /**
   * Reads the client's credentials (a bad key or certificate file stops the start, naming its key),
   * then starts discovery; resolves once the first attempt is over, whatever its outcome.
   */
  async start(): Promise<void> {
    await this.#discover(await providerClientAuth(this.config.provider), 0);
  }

  isReady(): boolean {
    return this.#configuration !== undefined;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
  }

  /** The URL that sends the browser to the provider's sign-in. */
  async authorizationUrl(checks: AuthorizationChecks): Promise<URL> {
    const configuration = this.#ready();
    return client.buildAuthorizationUrl(configuration, {
      redirect_uri: this.redirectUri,
      scope: this.config.provider.scopes.join(' '),
      response_type: 'code',
      state: checks.state,
      nonce: checks.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(checks.codeVerifier),
      code_challenge_method: 'S256',
    });
  }

  /** Exchanges the code of `callbackQuery` and validates the ID token. */
  async exchangeCode(callbackQuery: string, checks: AuthorizationChecks): Promise<TokenSet> {
    const callbackUrl = new URL(this.redirectUri);
    callbackUrl.search = callbackQuery;
    const response = await client.authorizationCodeGrant(this.#ready(), callbackUrl, {
      expectedState: checks.state,
      expectedNonce: checks.nonce,
      pkceCodeVerifier: checks.codeVerifier,
      idTokenExpected: true,
    });
    return this.#resolveGroupOverage(toTokenSet(response, undefined, this.clock()));
  }

  /**
   * Renews tokens with a refresh token, keeping the previous claims when the provider sends no new
   * ID token. Throws the provider's refusal as it is (the session ends),
   * but an outage — unreachable, too slow, a 5xx — as `ProviderUnavailableError` (answered 503, the
   * session kept and refreshed on a later request).
   */
  async refresh(refreshToken: string, previousClaims: Claims): Promise<TokenSet> {
    let response: TokenResponse;
    try {
      response = await client.refreshTokenGrant(this.#ready(), refreshToken);
    } catch (error) {
      if (isOutage(error)) throw new ProviderUnavailableError('the identity provider could not renew the tokens: it is unreachable or failing', { cause: error });
      throw error;
    }
    const tokens = await this.#resolveGroupOverage(toTokenSet(response, previousClaims, this.clock()), previousClaims.groups);
    return { ...tokens, refreshToken: tokens.refreshToken ?? refreshToken };
  }

  /**
   * Azure AD's group overage: for a user in too many groups the ID token names Microsoft Graph
   * instead of listing `groups`, so they are read there. If that fails the user has no groups
   * (`authorization.allowedGroups` then refuses) or, on a refresh, keeps those read before; the
   * failure is logged.
   */
  async #resolveGroupOverage(tokens: TokenSet, previousGroups?: unknown): Promise<TokenSet> {
    if (this.config.provider.type !== 'azure' || !hasGroupOverage(tokens.claims)) return tokens;
    const claims = withoutOverageClaims(tokens.claims);
    try {
      claims.groups = await readGroupsFromGraph(this.#fetch, this.config.provider.azure.graphUrl, tokens.accessToken);
    } catch (error) {
      this.logger.warn({ err: errorSummary(error), subject: claims.sub }, "group overage: the user's groups could not be read from Microsoft Graph");
      if (Array.isArray(previousGroups)) claims.groups = previousGroups;
    }
    return { ...tokens, claims };
  }

  /** Revokes a token at the provider when it offers revocation; failures are logged, not thrown. */
  async revoke(token: string, hint: 'access_token' | 'refresh_token'): Promise<void> {
    const configuration = this.#configuration;
    if (!configuration?.serverMetadata().revocation_endpoint) return;
    try {
      await client.tokenRevocation(configuration, token, { token_type_hint: hint });
    } catch (error) {
      this.logger.warn({ err: errorSummary(error) }, 'token revocation at the identity provider failed');
    }
  }

  /** The provider's end-session URL, or null when it has none. */
  endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string): URL | null {
    const configuration = this.#configuration;
    if (!configuration?.serverMetadata().end_session_endpoint) return null;
    const parameters: Record<string, string> = { post_logout_redirect_uri: postLogoutRedirectUri, client_id: this.config.provider.clientId };
    if (idTokenHint) parameters.id_token_hint = idTokenHint;
    return client.buildEndSessionUrl(configuration, parameters);
  }

  /** The provider's issuer identifier, once its metadata is loaded. */
  issuer(): string | undefined {
    return this.#configuration?.serverMetadata().issuer;
  }

  /** The verifier of the provider's back-channel logout tokens. */
  logoutTokens(): LogoutTokenVerifier {
    const metadata = this.#ready().serverMetadata();
    if (!metadata.jwks_uri) throw new Error('the identity provider publishes no jwks_uri');
    this.#logoutTokens ??= new LogoutTokenVerifier(metadata.issuer, metadata.jwks_uri, this.config.provider.clientId, () => Math.floor(this.clock() / 1000), this.#fetch, (error) =>
      this.logger.warn({ err: errorSummary(error) }, "the identity provider's keys for back-channel logout tokens could not be fetched"),
    );
    return this.#logoutTokens;
  }

  #ready(): client.Configuration {
    if (!this.#configuration) throw new ProviderUnavailableError();
    return this.#configuration;
  }

  async #discover(clientAuth: client.ClientAuth, attempt: number): Promise<void> {
    if (this.#closed) return;
    try {
      this.#configuration = await this.#buildConfiguration(clientAuth);
      this.logger.info({ issuer: this.#configuration.serverMetadata().issuer }, 'identity provider metadata loaded');
    } catch (error) {
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;
      this.logger.error({ err: errorSummary(error), retryInMs: delay }, 'identity provider discovery failed');
      this.#retryTimer = setTimeout(() => void this.#discover(clientAuth, attempt + 1), delay);
      this.#retryTimer.unref();
    }
  }

  async #buildConfiguration(clientAuth: client.ClientAuth): Promise<client.Configuration> {
    const issuer = new URL(issuerUrl(this.config));
    const insecure = issuer.protocol === 'http:' && isHttpsOrLoopback(issuer.href);
    const configuration = await client.discovery(issuer, this.config.provider.clientId, { redirect_uris: [this.redirectUri] }, clientAuth, {
      timeout: IDP_TIMEOUT_SECONDS,
      execute: insecure ? [client.allowInsecureRequests] : [],
      [client.customFetch]: withEndpointOverrides(this.#fetch, this.config.provider),
    });
    configuration[client.customFetch] = this.#fetch;
    return configuration;
  }
}

/**
 * The sidecar's own authentication at the provider's token endpoint; for `private_key_jwt` its key
 * and certificate files are read, and an unusable one throws a line naming its key.
 */
export async function providerClientAuth(provider: Config['provider']): Promise<client.ClientAuth> {
  switch (provider.clientAuth) {
    case 'client_secret_post':
      return client.ClientSecretPost(provider.clientSecret);
    case 'private_key_jwt':
      return privateKeyJwt(provider.privateKeyFile!, provider.certificateFile);
    default:
      return client.ClientSecretBasic(provider.clientSecret);
  }
}

/**
 * The provider's fetch for discovery, with `provider.authorizationEndpoint`/`tokenEndpoint` written
 * into the discovery document as it arrives: openid-client then treats the endpoints as discovered,
 * with everything it derives from discovery kept (such as Azure AD's per-tenant issuer check for
 * `organizations`/`common`, which a configuration built by hand would lose).
 */
function withEndpointOverrides(fetch: client.CustomFetch, provider: Config['provider']): client.CustomFetch {
  const overrides = {
    ...(provider.authorizationEndpoint && { authorization_endpoint: provider.authorizationEndpoint }),
    ...(provider.tokenEndpoint && { token_endpoint: provider.tokenEndpoint }),
  };
  if (Object.keys(overrides).length === 0) return fetch;
  return async (url, options) => {
    const response = await fetch(url, options);
    if (response.status !== 200) return response;
    const document = (await response.json()) as Record<string, unknown>;
    return new Response(JSON.stringify({ ...document, ...overrides }), { status: 200, headers: { 'content-type': 'application/json' } });
  };
}

/** The issuer to discover: the configured one, or Azure AD's v2.0 issuer for the tenant. */
export function issuerUrl(config: Config): string {
  const { provider } = config;
  if (provider.type === 'azure') return `${provider.azure.authorityHost.replace(/\/$/, '')}/${provider.azure.tenant}/v2.0`;
  return provider.issuerUrl!;
}

/**
 * `private_key_jwt` client authentication with an RSA key (PKCS#8 or PKCS#1 PEM), signing RS256;
 * with a certificate (PEM or DER) of that key, its thumbprints go in the header (Azure AD wants `x5t`).
 */
async function privateKeyJwt(privateKeyFile: string, certificateFile: string | undefined): Promise<client.ClientAuth> {
  const privateKey = await readPrivateKey(privateKeyFile);
  const key = await importPKCS8(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 'RS256');
  if (!certificateFile) return client.PrivateKeyJwt(key);
  const certificate = await readCertificate(certificateFile);
  if (!certificate.checkPrivateKey(privateKey)) throw new Error(`provider.certificateFile: "${certificateFile}" is not the certificate of provider.privateKeyFile's key`);
  const x5t = createHash('sha1').update(certificate.raw).digest('base64url');
  const x5tS256 = createHash('sha256').update(certificate.raw).digest('base64url');
  return client.PrivateKeyJwt(key, {
    [client.modifyAssertion]: (header) => {
      header.x5t = x5t;
      header['x5t#S256'] = x5tS256;
    },
  });
}

async function readPrivateKey(file: string): Promise<KeyObject> {
  const text = await readConfiguredFile('provider.privateKeyFile', file);
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch {
    throw new Error(`provider.privateKeyFile: "${file}" holds no PEM private key`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`provider.privateKeyFile: "${file}" must hold an RSA private key (private_key_jwt signs RS256)`);
  return key;
}

async function readCertificate(file: string): Promise<X509Certificate> {
  const content = await readConfiguredFile('provider.certificateFile', file);
  try {
    return new X509Certificate(content);
  } catch {
    throw new Error(`provider.certificateFile: "${file}" is not an X.509 certificate (PEM or DER)`);
  }
}

type TokenResponse = client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;

/** Claims from the response's ID token (or `previousClaims`); expiry from `expires_in`, else the ID token's `exp`. */
function toTokenSet(response: TokenResponse, previousClaims: Claims | undefined, now: number): TokenSet {
  const idTokenClaims = response.claims();
  const claims = idTokenClaims ? userClaims(idTokenClaims) : previousClaims;
  if (!claims) throw new Error('the provider returned no ID token');
  const expiresIn = response.expiresIn();
  return {
    claims,
    idToken: response.id_token,
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    expiresAt: expiresIn !== undefined ? now + expiresIn * 1000 : idTokenClaims ? idTokenClaims.exp * 1000 : undefined,
  };
}

/** The ID token's claims about the user (and the IdP session id `sid`), without the protocol claims. */
function userClaims(idToken: client.IDToken): Claims {
  const claims: Claims = {};
  for (const [name, value] of Object.entries(idToken)) {
    if (!PROTOCOL_CLAIMS.has(name)) claims[name] = value;
  }
  return claims;
}

export class ProviderUnavailableError extends Error {
  constructor(message = 'the identity provider metadata is not loaded yet', options?: ErrorOptions) {
    super(message, options);
  }
}

/** The provider could not be reached or failed (network, time-out, 5xx), rather than refusing. */
function isOutage(error: unknown): boolean {
  if (error instanceof TypeError) return true; // fetch failed: refused, reset, DNS
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return true;
  const status = error instanceof client.ResponseBodyError ? error.status : error instanceof Error && error.cause instanceof Response ? error.cause.status : undefined;
  return status !== undefined && status >= 500;
}

/** A log-safe description of an error: its name, code and message, never a response body. */
export function errorSummary(error: unknown): { name: string; code?: string; message: string } {
  if (error instanceof Error) return { name: error.name, code: (error as { code?: string }).code, message: error.message };
  return { name: 'Error', message: String(error) };
}
