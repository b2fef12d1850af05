import { generateKeyPair, randomBytes, randomUUID, type JsonWebKey } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { errors, Provider, type Account, type Client, type Configuration, type Interaction, type KoaContextWithOIDC } from 'oidc-provider';
import { listen, stopServer } from './free-port.js';
import { escapeHtml, htmlPage } from './html.js';
import { createIdpRequestHandler } from './idp-interactions.js';

/**
 * The test identity provider: a real, certified OpenID Provider (`oidc-provider` 9) on loopback with
 * a small login page of its own (see idp-interactions.ts). Used by the tests and by `npm run demo`.
 */

export interface TestUser {
  /** The stable subject identifier (`sub`), also oidc-provider's account id. */
  sub: string;
  /** Sign-in name, also the `preferred_username` claim. */
  username: string;
  password: string;
  name: string;
  email: string;
  emailVerified: boolean;
  groups: string[];
  roles: string[];
  /** The tenant id claim (`tid`) an Azure AD user has; none by default. */
  tid?: string;
  /**
   * In too many groups for a token, as Azure AD has it: the ID token names Microsoft Graph
   * (`_claim_names`, `_claim_sources`) instead of listing `groups`.
   */
  groupOverage?: boolean;
}

export const DEMO_USERS = {
  alice: {
    sub: '6f1c2a0e-5b7d-4c39-9a8e-2d41f0b3a11c',
    username: 'alice',
    password: 'alice-password',
    name: 'Alice Zoë Example',
    email: 'alice@example.com',
    emailVerified: true,
    groups: ['portal-users', 'admins'],
    roles: ['Portal.Admin'],
  },
  bob: {
    sub: 'b0b5e1d3-8a42-4e6f-b7c9-1f2e3d4c5b6a',
    username: 'bob',
    password: 'bob-password',
    name: 'Bob Builder',
    email: 'bob@example.org',
    emailVerified: true,
    groups: ['portal-users'],
    roles: [],
  },
} satisfies Record<string, TestUser>;

export type TokenEndpointAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';

export interface TestClient {
  clientId: string;
  /** Required unless `tokenEndpointAuthMethod` is `none` or `private_key_jwt`. */
  clientSecret?: string;
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  /** Default: `client_secret_basic` with a secret, else `none`. */
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  /** Default: `['authorization_code', 'refresh_token']`; add `client_credentials` for machine clients. */
  grantTypes?: string[];
  backchannelLogoutUri?: string;
  /** Public keys for `private_key_jwt` client authentication. */
  jwks?: { keys: JsonWebKey[] };
  /** A `roles` claim for the JWT access tokens of its client credentials grants (see `apiResources`). */
  roles?: string[];
}

export interface IdpOptions {
  /** Default 0: any free port. */
  port?: number;
  /** The issuer's path, as Azure AD's `/<tenant>/v2.0`; default none: the issuer is the origin. */
  issuerPath?: string;
  /**
   * The issuer's host name, default `127.0.0.1`. `localhost` makes the IdP another site than a
   * sidecar on 127.0.0.1, as a real provider is (SameSite rules); it listens on 127.0.0.1 either way.
   */
  issuerHost?: '127.0.0.1' | 'localhost';
  clients: TestClient[];
  /** Default: the two DEMO_USERS. */
  users?: readonly TestUser[];
  /** Lifetime of access tokens (and client-credentials tokens). Default 3600. */
  accessTokenTtlSeconds?: number;
  /** Default 3600. */
  idTokenTtlSeconds?: number;
  /**
   * Each refresh answers with a new refresh token and consumes the old one; using a consumed one
   * revokes the whole grant (as Azure AD and OAuth 2.1 do). Default true.
   */
  rotateRefreshTokens?: boolean;
  /**
   * Performs the IdP's outgoing requests (back-channel logout). Called without oidc-provider's
   * dispatcher, which refuses loopback addresses. Default: the global `fetch`.
   */
  fetch?: typeof globalThis.fetch;
  /**
   * Resource indicators (RFC 8707) of APIs: a client credentials grant with `resource=` one of these
   * gets a JWT access token (RFC 9068) with that audience, as Azure AD issues for app roles.
   */
  apiResources?: string[];
}

export interface TestIdp {
  /** `http://127.0.0.1:<port>` (or `localhost`, with `issuerHost`) */
  issuer: string;
  /** An absolute URL on the IdP, e.g. `url('/.well-known/openid-configuration')`. */
  url(path: string): string;
  provider: Provider;
  users: readonly TestUser[];
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const ONE_DAY = 24 * 60 * 60;

export async function startIdp(options: IdpOptions): Promise<TestIdp> {
  const users = options.users ?? Object.values(DEMO_USERS);
  const signingKey = await processSigningKey();
  const server = createServer();
  const port = await listen(server, options.port ?? 0, HOST);
  const issuer = `http://${options.issuerHost ?? HOST}:${port}${options.issuerPath ?? ''}`;
  const provider = new Provider(issuer, providerConfiguration(options, users, signingKey));
  // oidc-provider puts `sid` in ID tokens only for clients with a back-channel logout URI; relying
  // parties also need it for front-channel logout (Azure sends only `sid`), so every client gets it.
  provider.Client.prototype.includeSid = () => true;
  const handle = createIdpRequestHandler(provider, users);
  server.on('request', options.issuerPath ? mountedAt(options.issuerPath, handle) : handle);
  return {
    issuer,
    url: (path) => new URL(path, issuer).href,
    provider,
    users,
    stop: () => stopServer(server),
  };
}

type SigningKey = JsonWebKey & { kid: string; alg: string; use: string };
let processKey: Promise<SigningKey> | undefined;

/** One RS256 key per process: generating one can take a second, and tests start many IdPs. */
function processSigningKey(): Promise<SigningKey> {
  processKey ??= generateSigningKey();
  return processKey;
}

async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function providerConfiguration(options: IdpOptions, users: readonly TestUser[], signingKey: JsonWebKey): Configuration {
  const accessTokenTtl = options.accessTokenTtlSeconds ?? 3600;
  return {
    clients: options.clients.map(clientMetadata),
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    findAccount: accountFinder(users),
    claims: {
      acr: null,
      sid: null,
      auth_time: null,
      iss: null,
      openid: ['sub'],
      profile: ['preferred_username', 'name', 'groups', 'roles', 'tid'],
      email: ['email', 'email_verified'],
    },
    // Every scope claim goes into the ID token too, as Azure AD and most providers do.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    // oidc-provider issues refresh tokens only for `offline_access` with `prompt=consent`; this IdP
    // issues one to every client allowed the refresh_token grant.
    issueRefreshToken: (_ctx: unknown, client: Client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: options.rotateRefreshTokens ?? true,
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      IdToken: options.idTokenTtlSeconds ?? 3600,
      RefreshToken: ONE_DAY,
      Grant: ONE_DAY,
      Session: ONE_DAY,
      Interaction: 600,
    },
    interactions: { url: (_ctx: unknown, interaction: Interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: apiResourceIndicators(options.apiResources),
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource: confirmLogoutAutomatically, postLogoutSuccessSource: renderSignedOut },
    },
    renderError,
    fetch: withoutSsrfGuard(options.fetch ?? globalThis.fetch),
    extraTokenClaims: clientRoles(options.clients),
  };
}

/** JWT access tokens for the `apiResources`; oidc-provider's default (opaque tokens, no resources) otherwise. */
function apiResourceIndicators(resources: readonly string[] = []) {
  return {
    enabled: resources.length > 0,
    getResourceServerInfo: (_ctx: unknown, resource: string) => {
      if (!resources.includes(resource)) throw new errors.InvalidTarget();
      return { audience: resource, scope: 'api', accessTokenFormat: 'jwt' as const, jwt: { sign: { alg: 'RS256' as const } } };
    },
  };
}

/** The `roles` of a client credentials token's client. */
function clientRoles(clients: readonly TestClient[]) {
  const rolesByClient = new Map(clients.map((client) => [client.clientId, client.roles]));
  return (_ctx: unknown, token: { kind: string; clientId?: string }) => {
    const roles = token.kind === 'ClientCredentials' && token.clientId ? rolesByClient.get(token.clientId) : undefined;
    return roles ? { roles } : undefined;
  };
}

function clientMetadata(client: TestClient): Record<string, unknown> {
  const grantTypes = client.grantTypes ?? ['authorization_code', 'refresh_token'];
  return {
    client_id: client.clientId,
    client_secret: client.clientSecret,
    redirect_uris: client.redirectUris,
    post_logout_redirect_uris: client.postLogoutRedirectUris ?? [],
    token_endpoint_auth_method: client.tokenEndpointAuthMethod ?? (client.clientSecret ? 'client_secret_basic' : 'none'),
    grant_types: grantTypes,
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    backchannel_logout_uri: client.backchannelLogoutUri,
    backchannel_logout_session_required: client.backchannelLogoutUri ? true : undefined,
    jwks: client.jwks,
  };
}

function accountFinder(users: readonly TestUser[]) {
  const bySubject = new Map(users.map((user) => [user.sub, user]));
  return (_ctx: unknown, sub: string): Account | undefined => {
    const user = bySubject.get(sub);
    return user && { accountId: user.sub, claims: () => userClaims(user) };
  };
}

function userClaims(user: TestUser): Record<string, unknown> {
  return {
    sub: user.sub,
    preferred_username: user.username,
    name: user.name,
    email: user.email,
    email_verified: user.emailVerified,
    ...(user.groupOverage ? GROUP_OVERAGE_CLAIMS : { groups: user.groups }),
    roles: user.roles,
    tid: user.tid,
  };
}

const GROUP_OVERAGE_CLAIMS = {
  _claim_names: { groups: 'src1' },
  _claim_sources: { src1: { endpoint: 'https://graph.windows.net/tenant/users/user/getMemberObjects' } },
};

/**
 * Serves the provider under `path`, as a framework's mount would: the provider sees the rest of the
 * URL and finds its mount path in `originalUrl`. Its login pages stay at the origin's root.
 */
function mountedAt(path: string, handle: (req: IncomingMessage, res: ServerResponse) => void) {
  return (req: IncomingMessage & { originalUrl?: string }, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url === path || url.startsWith(path + '/') || url.startsWith(path + '?')) {
      req.originalUrl = url;
      req.url = url.slice(path.length) || '/';
    }
    handle(req, res);
  };
}

/**
 * RP-initiated logout without a question: the page holds oidc-provider's confirmation form with
 * `logout=yes` (end the whole IdP session) and submits it on load. Without JavaScript (and for
 * signOutWithoutBrowser) its one button does the same.
 */
function confirmLogoutAutomatically(ctx: KoaContextWithOIDC, form: string): void {
  const confirmingForm = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>');
  ctx.body = htmlPage(
    'Signing out',
    `<h1>Signing out…</h1>
${confirmingForm}
<button type="submit" form="op.logoutForm">Sign out</button>
<script>document.forms[0].submit()</script>`,
  );
}

function renderSignedOut(ctx: KoaContextWithOIDC): void {
  ctx.body = htmlPage('Signed out', '<h1>Signed out</h1><p>You are signed out of the test identity provider.</p>');
}

function renderError(ctx: KoaContextWithOIDC, out: { error: string; error_description?: string }): void {
  ctx.type = 'html';
  const message = out.error_description ? `${out.error}: ${out.error_description}` : out.error;
  ctx.body = htmlPage('Sign-in error', `<h1>Sign-in error</h1><p role="alert">${escapeHtml(message)}</p>`);
}

type FetchInit = RequestInit & { dispatcher?: unknown };

/** oidc-provider (≥ 9.7) passes a dispatcher that refuses loopback peers; tests need loopback. */
function withoutSsrfGuard(fetch: typeof globalThis.fetch) {
  return (url: string, { dispatcher: _ssrfGuard, ...init }: FetchInit) => fetch(url, init);
}
