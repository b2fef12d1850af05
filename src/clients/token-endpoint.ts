import { setTimeout as sleep } from 'node:timers/promises';
import type { MachineAuthenticator } from './authenticator.js';
import { throttleSource, type FailureThrottle } from './failure-throttle.js';
import { CheckLimit } from './check-limit.js';
import { clientRefusals, type Refusal } from './reasons.js';
import { clientCredentialsHash, type Application, type ApplicationRegistry } from './registry.js';
import type { RevocationList } from './revocation.js';
import { verifySecret } from './secret-hash.js';
import type { TokenIssuer } from './token-issuer.js';

/** The generic description of every `invalid_client` answer (the seed's wording): the same for every cause. */
export const INVALID_CLIENT_DESCRIPTION =
  'Client authentication failed, e.g. unknown client, no client authentication included, or unsupported authentication method';

/** A request to the token or revocation endpoint, its body already read. */
export interface ClientRequest {
  authorization: string | undefined;
  form: URLSearchParams;
  /** The peer address: failed client authentications are throttled per address and client id. */
  address: string;
}

/** What to answer, and what to audit about it. */
export interface OAuthAnswer {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
  audit?: { event: 'api_auth' | 'api_auth_failed'; clientId?: string; code?: string; reason: string };
}

export interface TokenEndpointOptions {
  registry: () => ApplicationRegistry;
  issuer: TokenIssuer;
  revocations: RevocationList;
  authenticator: MachineAuthenticator;
  throttle: FailureThrottle;
  /** `WWW-Authenticate: Basic realm=…` of `invalid_client` answers. */
  realm: string;
}

type ClientAuthentication = { ok: true; app: Application } | { ok: false; answer: OAuthAnswer };

const SINGLE_PARAMETERS = ['grant_type', 'scope', 'client_id', 'client_secret', 'token', 'token_type_hint'];
/** Weight of the newest secret check in the running estimate of how long one takes. */
const CHECK_TIME_WEIGHT = 0.1;
/** Secret checks run at once (half of libuv's default pool of 4) and queued; past that: 503. */
const MAX_RUNNING_SECRET_CHECKS = 2;
const MAX_WAITING_SECRET_CHECKS = 64;

/**
 * `POST /oauth2/token` (RFC 6749 §4.4, client credentials only) and `POST /oauth2/revoke` (RFC 7009),
 * the client authenticated by HTTP Basic (`client_secret_basic`) or form fields (`client_secret_post`).
 */
export class TokenEndpoint {
  /** How long a secret check takes, a running estimate: a throttled attempt is answered no sooner. */
  #checkMs = 0;
  readonly #secretChecks = new CheckLimit(MAX_RUNNING_SECRET_CHECKS, MAX_WAITING_SECRET_CHECKS);

  constructor(private readonly options: TokenEndpointOptions) {}

  async token(request: ClientRequest): Promise<OAuthAnswer> {
    const { form } = request;
    const malformed = repeatedParameter(form);
    if (malformed) return malformed;
    const grantType = form.get('grant_type');
    if (!grantType) return oauthError(400, 'invalid_request', 'grant_type is required.');
    if (grantType !== 'client_credentials') return oauthError(400, 'unsupported_grant_type', 'Only client_credentials is supported.');
    const client = await this.#authenticate(request);
    if (!client.ok) return client.answer;
    const { app } = client;
    const requested = (form.get('scope') ?? '').split(' ').filter(Boolean);
    if (requested.some((scope) => !app.scopes.includes(scope))) return oauthError(400, 'invalid_scope', 'The requested scope is not allowed for this client.');
    const scopes = requested.length > 0 ? [...new Set(requested)] : app.scopes;
    const { token } = await this.options.issuer.issue(app.clientId, scopes);
    return {
      status: 200,
      body: { access_token: token, token_type: 'Bearer', expires_in: this.options.issuer.ttlSeconds, scope: scopes.join(' ') },
      headers: { pragma: 'no-cache' },
      audit: { event: 'api_auth', clientId: app.clientId, reason: 'access token issued (client credentials grant)' },
    };
  }

  /** Revokes a token the client itself was issued; any other token is answered 200 and left alone (RFC 7009 §2.2). */
  async revoke(request: ClientRequest): Promise<OAuthAnswer> {
    const malformed = repeatedParameter(request.form);
    if (malformed) return malformed;
    const token = request.form.get('token');
    if (!token) return oauthError(400, 'invalid_request', 'token is required.');
    const client = await this.#authenticate(request);
    if (!client.ok) return client.answer;
    const claims = await this.options.issuer.verify(token).catch(() => undefined);
    // RFC 7009 §2.2: a token that is invalid, expired or not ours to know of is answered 200 …
    if (!claims) return { status: 200, body: {} };
    // … §2.1: one issued to another client is refused (whoever holds it can use it anyway: no oracle).
    if (claims.client_id !== client.app.clientId) return oauthError(400, 'unauthorized_client', 'The token was not issued to this client.');
    await this.options.revocations.revoke(claims.jti, claims.exp);
    this.options.authenticator.forget(token);
    return { status: 200, body: {} };
  }

  async #authenticate({ authorization, form, address }: ClientRequest): Promise<ClientAuthentication> {
    const basic = basicCredentials(authorization);
    if (basic && form.has('client_secret')) return refuse(oauthError(400, 'invalid_request', 'Use one client authentication method, not several.'));
    if (basic === 'malformed') return refuse(this.#invalidClient(clientRefusals.malformed));
    if (basic && form.has('client_id') && form.get('client_id') !== basic.clientId) {
      return refuse(oauthError(400, 'invalid_request', 'client_id differs from the authenticated client.'));
    }
    const credentials = basic ?? formCredentials(form);
    if (!credentials) return refuse(this.#invalidClient(clientRefusals.noCredentials));
    const registry = this.options.registry();
    const app = registry.get(credentials.clientId);
    const clientId = app?.clientId;
    // An application without this grant is throttled and checked like an unknown client id. Those share
    // one counter per address (changing the id must not escape the throttle) and the registry's decoy.
    const hash = clientCredentialsHash(app);
    const attempt = `${throttleSource(address)} ${hash === undefined ? '(unknown client)' : clientId}`;
    if (this.options.throttle.isThrottled(attempt)) {
      // Answering at once would tell a throttled id (an unknown one, say) from one still checked.
      await sleep(this.#checkMs);
      return refuse(this.#invalidClient(clientRefusals.throttled, clientId));
    }
    // Counted as a failure until it succeeds: parallel attempts cannot all pass the check above.
    this.options.throttle.recordFailure(attempt);
    const secretMatches = await this.#secretChecks.run(() => this.#checkSecret(credentials.secret, hash ?? registry.decoySecretHash));
    if (secretMatches === 'busy') {
      this.options.throttle.forgive(attempt);
      return refuse(busyAnswer(clientId));
    }
    if (app && hash && secretMatches) {
      this.options.throttle.forgive(attempt);
      return { ok: true, app };
    }
    const refusal = !app ? clientRefusals.unknownClient : !hash ? clientRefusals.grantType : clientRefusals.secret;
    return refuse(this.#invalidClient(refusal, clientId));
  }

  /** Checks a secret against its hash, keeping the running estimate of how long that takes. */
  async #checkSecret(secret: string, hash: string): Promise<boolean> {
    const started = performance.now();
    const matches = await verifySecret(secret, hash);
    const checkMs = performance.now() - started;
    this.#checkMs = this.#checkMs === 0 ? checkMs : this.#checkMs + CHECK_TIME_WEIGHT * (checkMs - this.#checkMs);
    return matches;
  }

  #invalidClient(refusal: Refusal, clientId?: string): OAuthAnswer {
    return {
      ...oauthError(401, 'invalid_client', INVALID_CLIENT_DESCRIPTION),
      headers: { 'www-authenticate': `Basic realm="${this.options.realm}"` },
      audit: { event: 'api_auth_failed', clientId, ...refusal },
    };
  }
}

/** Too many secret checks running and waiting: try again in a moment (not a verdict on the client). */
function busyAnswer(clientId: string | undefined): OAuthAnswer {
  return {
    ...oauthError(503, 'temporarily_unavailable', 'Too many client authentications at once; try again in a moment.'),
    headers: { 'retry-after': '1' },
    audit: { event: 'api_auth_failed', clientId, ...clientRefusals.busy },
  };
}

function refuse(answer: OAuthAnswer): ClientAuthentication {
  return { ok: false, answer };
}

function oauthError(status: number, error: string, description: string): OAuthAnswer {
  return { status, body: { error, error_description: description } };
}

/** RFC 6749 §3.1: parameters must not be repeated. */
function repeatedParameter(form: URLSearchParams): OAuthAnswer | undefined {
  const repeated = SINGLE_PARAMETERS.find((name) => form.getAll(name).length > 1);
  return repeated ? oauthError(400, 'invalid_request', `${repeated} is repeated.`) : undefined;
}

interface Credentials {
  clientId: string;
  secret: string;
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded. */
function basicCredentials(authorization: string | undefined): Credentials | 'malformed' | undefined {
  if (!authorization || !/^basic(?: |$)/i.test(authorization)) return undefined;
  const encoded = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(authorization)?.[1];
  const decoded = encoded === undefined ? '' : Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return 'malformed';
  try {
    return { clientId: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    return 'malformed';
  }
}

function formCredentials(form: URLSearchParams): Credentials | undefined {
  const clientId = form.get('client_id');
  const secret = form.get('client_secret');
  return clientId && secret !== null ? { clientId, secret } : undefined;
}

function formDecode(text: string): string {
  return decodeURIComponent(text.replaceAll('+', ' '));
}
