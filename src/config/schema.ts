import { isIP } from 'node:net';
import { z } from 'zod';
import { isSecretHash } from '../clients/secret-hash.js';
import { isTrustedProxyEntry } from '../server/client-address.js';

/**
 * The one source of truth for the configuration (DESIGN.md §2): validation, defaults and the
 * documentation of every key. Each key's `describe()` text names the portal setting it realises
 * where there is one; the README's reference table follows it.
 *
 * Cross-field rules sit on the smallest object that holds every field they read, so that a mistake in
 * one section does not hide the rule violations of another.
 */

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** True for https URLs, and for http URLs whose host is a loopback address. */
export function isHttpsOrLoopback(value: string): boolean {
  const parsed = new URL(value);
  if (parsed.protocol === 'https:') return true;
  return LOOPBACK_HOSTS.has(parsed.hostname) || /^127\.\d+\.\d+\.\d+$/.test(parsed.hostname) || parsed.hostname.endsWith('.localhost');
}

/** An error message for a present but malformed value; a missing one keeps the general "is required". */
const malformed = (message: string) => (issue: { input?: unknown }) => (issue.input === undefined ? undefined : message);

const port = z.number().int().min(0).max(65535);
const text = z.string().min(1);
// `abort` keeps the refinements below from seeing a string that is not a URL at all.
const httpUrl = z.url({ protocol: /^https?$/, error: malformed('must be an absolute http:// or https:// URL'), abort: true });
/** A URL identity depends on (public URL, provider URLs): https, or plain http on a loopback host. */
const secureUrl = httpUrl.refine(isHttpsOrLoopback, 'must use https; plain http is accepted only for loopback hosts');
/** A cookie's Domain attribute: a domain name, with an optional leading dot. */
const COOKIE_DOMAIN = /^\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const regexSource = z.string().refine(isValidRegex, { message: 'is not a valid regular expression' });
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be "host:port"');
const textOrList = (message: string) => z.union([text, z.array(text).min(1)], { error: malformed(message) });

/** True for `https://host[:port]` (a trailing `/` allowed); also for a malformed URL, which has its own error. */
function isOrigin(text: string): boolean {
  if (!URL.canParse(text)) return true;
  const url = new URL(text);
  return url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
}

function isValidRegex(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

/**
 * A section with required keys that may still be left out: parsing it as `{}` makes a missing section
 * report its own missing keys (`upstream.url: is required`) instead of only `upstream: is required`.
 */
function requiredSection<T extends z.ZodType>(section: T) {
  return z.prefault(section, {} as z.input<T>);
}

export const DEFAULT_IDENTITY_HEADERS: Record<string, string | string[]> = {
  'X-Forwarded-User': ['preferred_username', 'upn', 'email', 'sub'],
  'X-Forwarded-Email': ['email', 'upn'],
  'X-Forwarded-Name': 'name',
  'X-Forwarded-Groups': 'groups',
  'X-Forwarded-Roles': 'roles',
  'X-Forwarded-Subject': 'sub',
};

const listenSchema = z
  .strictObject({
    host: text.default('0.0.0.0').describe('address the main port binds'),
    port: port.default(4180).describe('main port: browsers and API clients'),
    trustedProxies: z
      .array(text.refine(isTrustedProxyEntry, 'must be an IP address or a CIDR range'))
      .default([])
      .describe('proxies in front of the sidecar (an ingress), addresses or CIDR ranges: X-Forwarded-For past them names the client (audit, throttle), and only their forwarding headers (X-Forwarded-*, Forwarded, X-Real-IP, …) reach the portal'),
  })
  .prefault({});

const metricsSchema = z
  .strictObject({
    host: text.default('0.0.0.0').describe('address the metrics port binds'),
    port: port.default(9464).describe('metrics port: /metrics, /healthz, /readyz'),
  })
  .prefault({});

const upstreamSchema = requiredSection(
  z.strictObject({
    url: httpUrl.describe('the portal, e.g. http://127.0.0.1:8080; an https portal must have a certificate Node trusts (its CAs, or NODE_EXTRA_CA_CERTS for a private CA); a path is put before every request path'),
    timeoutSeconds: z.number().positive().max(3600).default(60).describe('how long the portal may take to take the connection, and to start answering once it has the whole request (an upload does not count), 504 after it; a client connection idle for twice as long is closed'),
    websockets: z.boolean().default(true).describe('proxy WebSocket upgrades to the portal'),
  }),
);

const azureSchema = z
  .strictObject({
    tenant: text.optional().describe('Azure tenant id or domain ("[tenant]" of the seed endpoints)'),
    allowedTenants: z.array(text).default([]).describe('tenant ids (`tid`) whose users may sign in; empty = any the tenant setting lets in'),
    authorityHost: secureUrl.default('https://login.microsoftonline.com').describe('Azure sign-in host (sovereign clouds, e.g. https://login.microsoftonline.us: the tenant must then be named by its id)'),
    graphUrl: secureUrl.default('https://graph.microsoft.com').describe('Microsoft Graph base URL: group overage (users in more than 200 groups)'),
  })
  .prefault({});

const providerObject = z.strictObject({
  type: z.enum(['oidc', 'azure']).default('oidc').describe('"oidc" or "azure" (seed: "Azure AD" / "Other project")'),
  issuerUrl: secureUrl.optional().describe('seed: "Identity Provider URL Server"; required for type oidc'),
  azure: azureSchema,
  authorizationEndpoint: secureUrl.optional().describe('seed: "OAuth2 Authorization Endpoint"; default from discovery'),
  tokenEndpoint: secureUrl.optional().describe('seed: "Token Endpoint"; default from discovery'),
  clientId: text.describe('seed: "Client ID"'),
  clientSecret: text.optional().describe('seed: "Client Secret"; required unless clientAuth is private_key_jwt'),
  clientAuth: z
    .enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt'])
    .default('client_secret_basic')
    .describe('how the sidecar authenticates to the token endpoint'),
  privateKeyFile: text.optional().describe('PEM RSA private key (PKCS#8 or PKCS#1) for private_key_jwt, read at start'),
  certificateFile: text.optional().describe('PEM or DER certificate of that key, checked to match it (Azure: its thumbprint is sent)'),
  scopes: z.array(text).min(1).default(['openid', 'profile', 'email']).describe('scopes requested at sign-in; must include openid (Azure AD and others issue refresh tokens only with offline_access)'),
  redirectPath: z
    .string()
    .regex(/^\/[^?#\s]*$/, 'must be an absolute path')
    .default('/oauth2/callback')
    .describe('seed: "Redirect URI" = publicUrl + this path'),
});

const providerSchema = requiredSection(providerObject.superRefine(checkProviderRules));
/** openid-client accepts an Entra issuer that names the tenant by id (a domain name, `organizations`) for this host only. */
const GLOBAL_AZURE_AUTHORITY = 'https://login.microsoftonline.com';
const AZURE_TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkProviderRules(provider: z.output<typeof providerObject>, ctx: z.RefinementCtx): void {
  const problem = (path: string[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  if (provider.type === 'oidc' && !provider.issuerUrl) problem(['issuerUrl'], 'is required when provider.type is "oidc"');
  if (provider.type === 'azure' && !provider.azure.tenant) problem(['azure', 'tenant'], 'is required when provider.type is "azure"');
  if (provider.scopes.length > 0 && !provider.scopes.includes('openid')) problem(['scopes'], 'must include openid: the sign-in needs the ID token it brings');
  const authority = URL.canParse(provider.azure.authorityHost) ? new URL(provider.azure.authorityHost).origin : GLOBAL_AZURE_AUTHORITY;
  if (provider.type === 'azure' && provider.azure.tenant && !AZURE_TENANT_ID.test(provider.azure.tenant) && authority !== GLOBAL_AZURE_AUTHORITY) {
    problem(['azure', 'tenant'], `must be the tenant id (a GUID) with authorityHost ${authority}: the issuer of a tenant name, "organizations" or "common" is checked on ${GLOBAL_AZURE_AUTHORITY} only`);
  }
  if (provider.type !== 'azure' && provider.azure.allowedTenants.length > 0) problem(['azure', 'allowedTenants'], 'applies only when provider.type is "azure"');
  if (provider.clientAuth === 'private_key_jwt') {
    if (!provider.privateKeyFile) problem(['privateKeyFile'], 'is required when provider.clientAuth is "private_key_jwt"');
  } else if (!provider.clientSecret) {
    problem(['clientSecret'], `is required when provider.clientAuth is "${provider.clientAuth}"`);
  }
}

const cookieSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'may hold only letters, digits, "_", "." and "-"')
      .default('_oidc_sidecar')
      .describe('session cookie name; `__Host-…` (https, no domain) keeps sibling subdomains from planting one'),
    type: z.enum(['persistent', 'session']).default('persistent').describe('seed: "Cookie type" persistent/session'),
    domain: z
      .string()
      .regex(COOKIE_DOMAIN, 'must be a domain name such as example.com')
      .optional()
      .describe('seed: "Enable Single Sign On Cookie": the publicUrl host or a parent domain of it, shares the cookie; unset = host-only'),
    secure: z.boolean().optional().describe('Secure attribute; default true when publicUrl is https'),
    sameSite: z.enum(['lax', 'strict', 'none']).default('lax').describe('SameSite attribute; with strict, sign-in ends on a page of the sidecar that moves on to the page asked for (a redirect from the provider would not bring a Strict cookie along)'),
  })
  .prefault({});

const sessionSchema = requiredSection(
  z.strictObject({
    store: z.enum(['memory', 'redis']).default('memory').describe('"memory" (single replica) or "redis"'),
    secret: z
      .string()
      .refine((s) => Buffer.byteLength(s) >= 32, 'must be at least 32 bytes long')
      .describe('signs and encrypts cookies and session records'),
    cookie: cookieSchema,
    idleTimeoutMinutes: z
      .number()
      .positive()
      .max(7 * 24 * 60)
      .default(20)
      .describe('seed: "Idle session time-out" (above 60 is not recommended)'),
    maxLifetimeHours: z.number().positive().max(24 * 90).default(12).describe('absolute session lifetime'),
    refreshTokens: z.boolean().default(true).describe('seed: "Enable Refresh Token"'),
  }),
);

const redisSchema = z
  .strictObject({
    url: z.url({ protocol: /^rediss?$/, error: malformed('must be a redis:// or rediss:// URL') }).optional().describe('standalone Redis'),
    sentinel: z
      .strictObject({ masterName: text, nodes: z.array(hostPort).min(1) })
      .optional()
      .describe('Redis Sentinel: masterName and nodes ["host:port", …]'),
    cluster: z.strictObject({ nodes: z.array(hostPort).min(1) }).optional().describe('Redis Cluster: nodes ["host:port", …]'),
    password: text.optional().describe('Redis password (AUTH)'),
    tls: z.boolean().default(false).describe('connect with TLS'),
    keyPrefix: z.string().default('oidc-sidecar:').describe('prefix of every key the sidecar writes'),
  })
  .prefault({});

/**
 * Identity headers are stripped from every incoming request: these must reach the sidecar and the
 * portal as the client sent them (HTTP's own, credentials), or are set by the sidecar itself.
 */
const RESERVED_HEADERS = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'content-type', 'expect',
  'cookie', 'authorization', 'x-clientcertificate-token', 'x-request-id', 'x-auth-method', 'x-forwarded-client-id', 'x-forwarded-access-token',
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
]);

const identitySchema = z
  .strictObject({
    headers: z
      .record(
        z
          .string()
          .regex(/^[A-Za-z0-9-]+$/, 'header names may hold only letters, digits and "-"')
          .refine((name) => !RESERVED_HEADERS.has(name.toLowerCase()), 'is a header the sidecar or HTTP itself needs (it is stripped from every request)'),
        textOrList('must be a claim name or a list of claim names'),
      )
      .default(DEFAULT_IDENTITY_HEADERS)
      .refine((headers) => new Set(Object.keys(headers).map((name) => name.toLowerCase())).size === Object.keys(headers).length, 'names a header twice (header names are not case-sensitive)')
      .describe('header → claim name, or a list tried in order'),
    passAccessToken: z.boolean().default(false).describe('forward the access token (X-Forwarded-Access-Token)'),
    passIdToken: z.boolean().default(false).describe('forward the ID token (Authorization: Bearer)'),
  })
  .prefault({});

const authorizationSchema = z
  .strictObject({
    allowedGroups: z.array(text).default([]).describe('sign-in allowed to members of these groups, checked again at every token refresh; empty = anyone'),
    allowedEmailDomains: z.array(text).default([]).describe('sign-in allowed to these e-mail domains (an address the provider has not verified passes none), checked again at every token refresh; empty = any'),
  })
  .prefault({});

const routesSchema = z
  .strictObject({
    public: z.array(regexSource).default([]).describe('path regexes proxied without sign-in'),
    api: z.array(regexSource).default(['^/api/', '^/odata/', '^/scim/']).describe('path regexes answered 401, never redirected'),
    corsPreflight: z
      .boolean()
      .default(false)
      .describe('CORS preflights (OPTIONS with Origin and Access-Control-Request-Method, no credentials by definition) go to the portal without sign-in, so scripts of other origins can call its APIs'),
    prefix: z
      .string()
      .regex(/^\/[A-Za-z0-9_.~-]+$/, 'must be one path segment such as "/oauth2"')
      .default('/oauth2')
      .describe("path prefix of the sidecar's own endpoints"),
  })
  .prefault({});

const logoutSchema = z
  .strictObject({
    redirectUrl: httpUrl.optional().describe('seed: "Redirect to a logoff page after logoff"'),
    idpLogout: z.boolean().default(true).describe('also end the session at the identity provider'),
    revokeTokens: z.boolean().default(true).describe('revoke the tokens at sign-out'),
  })
  .prefault({});

const errorsSchema = z
  .strictObject({ detailed: z.boolean().default(false).describe('seed: "Show detailed authentication error messages"') })
  .prefault({});

const auditSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('seed: "Enable authentication logging" (AUTHLOG)'),
    stream: z
      .strictObject({ maxLength: z.number().int().positive().default(100000).describe('approximate cap of the Redis audit stream') })
      .prefault({}),
  })
  .prefault({});

const logSchema = z
  .strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('log level'),
    access: z.boolean().default(false).describe('one access-log line a request: method, path (no query), route, status, duration, request id, user or client'),
  })
  .prefault({});

const GRANT_TYPES = ['client_credentials', 'client_certificate'] as const;

const applicationSchema = z
  .strictObject({
    clientId: text.describe('seed: OAuth 2 application "Client ID"'),
    grantTypes: z.array(z.enum(GRANT_TYPES)).min(1).describe('client_credentials and/or client_certificate'),
    clientSecretHash: z
      .string()
      .refine(isSecretHash, 'must be a hash printed by `oidc-sidecar hash-secret` ("scrypt$N$r$p$salt$hash")')
      .optional()
      .describe('for client_credentials'),
    clientSecret: z
      .never({ error: 'is not accepted: set clientSecretHash, made by `oidc-sidecar hash-secret`, instead' })
      .optional()
      .describe('refused: plain secrets are never stored; use clientSecretHash'),
    certificateFile: text.optional().describe('PEM or DER X.509 certificate, for RS* certificate tokens'),
    hmacSecretFile: text.optional().describe('key file for HS* certificate tokens (at least 32 bytes)'),
    routes: z.array(regexSource).min(1).describe('path regexes where its credentials are accepted'),
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be an RFC 6749 scope token (printable ASCII, no space, " or \\)'))
      .default([])
      .describe('scopes it may request at /oauth2/token (a request naming none gets them all); sent as X-Forwarded-Roles'),
  })
  .superRefine((app, ctx) => {
    if (app.grantTypes.includes('client_credentials') && !app.clientSecretHash) {
      ctx.addIssue({ code: 'custom', path: ['clientSecretHash'], message: 'is required for grant type client_credentials' });
    }
    if (app.grantTypes.includes('client_certificate') && !app.certificateFile && !app.hmacSecretFile) {
      ctx.addIssue({ code: 'custom', path: ['certificateFile'], message: 'or hmacSecretFile is required for grant type client_certificate' });
    }
  });

export const applicationsSchema = z
  .array(applicationSchema)
  .superRefine((apps, ctx) => {
    const seen = new Set<string>();
    apps.forEach((app, index) => {
      if (seen.has(app.clientId)) ctx.addIssue({ code: 'custom', path: [index, 'clientId'], message: `"${app.clientId}" is registered twice` });
      seen.add(app.clientId);
    });
  })
  .default([])
  .describe('OAuth 2 applications (machine clients), DESIGN.md §5');

const clientsSchema = z
  .strictObject({
    tokenTtlSeconds: z.number().int().positive().max(86400).default(3600).describe('lifetime of the access tokens the sidecar issues'),
    signingKeyFile: text
      .optional()
      .describe('PEM private key(s) signing those tokens: the first signs, every one verifies (rotation); unset = generated per start (single replica only)'),
    idpTokens: z
      .strictObject({
        issuer: secureUrl.describe("the IdP's token issuer"),
        audience: textOrList('must be an audience or a list of audiences').describe('accepted audience(s)'),
        requiredRoles: z.array(text).default([]).describe('roles a token must carry; empty = none'),
        routes: z.array(regexSource).min(1).optional().describe('path regexes where those tokens are accepted; unset = routes.api'),
      })
      .optional()
      .describe("accept the IdP's own JWT access tokens as Bearer credentials"),
  })
  .prefault({});

const configObject = z.strictObject({
  listen: listenSchema,
  metrics: metricsSchema,
  upstream: upstreamSchema,
  publicUrl: secureUrl
    .refine(isOrigin, 'must be an origin (scheme, host and port; no path, query or credentials): the sidecar answers at the root of its host')
    .describe('seed: "Bizagi server URL": external base URL of the portal, an origin'),
  provider: providerSchema,
  session: sessionSchema,
  redis: redisSchema,
  identity: identitySchema,
  authorization: authorizationSchema,
  routes: routesSchema,
  logout: logoutSchema,
  errors: errorsSchema,
  audit: auditSchema,
  log: logSchema,
  applications: applicationsSchema,
  applicationsFile: text.optional().describe('YAML file holding the applications list instead of `applications`'),
  clients: clientsSchema,
});

type ParsedConfig = z.output<typeof configObject>;

export const configSchema = configObject.superRefine(checkCrossSectionRules).transform(resolveDerivedDefaults);

function isHttps(value: string): boolean {
  return value.startsWith('https:');
}

function checkCrossSectionRules(config: ParsedConfig, ctx: z.RefinementCtx): void {
  const { session, redis } = config;
  if (session.store === 'redis') {
    const modes = [redis.url, redis.sentinel, redis.cluster].filter(Boolean).length;
    if (modes !== 1) {
      ctx.addIssue({ code: 'custom', path: ['redis'], message: 'set exactly one of redis.url, redis.sentinel, redis.cluster (session.store is "redis")' });
    }
  }
  if (session.cookie.domain !== undefined && !cookieDomainCovers(session.cookie.domain, config.publicUrl)) {
    // Browsers drop a cookie whose Domain does not cover the host that set it: sign-in would loop.
    ctx.addIssue({ code: 'custom', path: ['session', 'cookie', 'domain'], message: 'must be the publicUrl host or a parent domain of it' });
  }
  if (session.cookie.sameSite === 'none' && !secureCookie(config)) {
    ctx.addIssue({ code: 'custom', path: ['session', 'cookie', 'sameSite'], message: '"none" requires a Secure cookie (session.cookie.secure: true)' });
  }
  // Browsers drop a cookie whose name prefix promises what its attributes do not: sign-in would loop.
  const { name } = session.cookie;
  if ((name.startsWith('__Host-') || name.startsWith('__Secure-')) && !secureCookie(config)) {
    ctx.addIssue({ code: 'custom', path: ['session', 'cookie', 'name'], message: 'a __Host- or __Secure- name requires a Secure cookie (an https publicUrl)' });
  }
  if (name.startsWith('__Host-') && session.cookie.domain !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['session', 'cookie', 'name'], message: 'a __Host- name cannot have session.cookie.domain (a __Host- cookie is host-only)' });
  }
  const idpAudiences = [config.clients.idpTokens?.audience ?? []].flat();
  if (idpAudiences.includes(config.provider.clientId)) {
    // Users' ID tokens carry that audience: they must never pass as machine credentials.
    ctx.addIssue({ code: 'custom', path: ['clients', 'idpTokens', 'audience'], message: 'must not be provider.clientId (users\' ID tokens carry that audience)' });
  }
}

/**
 * The browsers' rule (RFC 6265 §5.1.3): the host itself, or a parent domain of a host name — an
 * IP address has none. True also when the domain or publicUrl is malformed: each has its own error.
 */
function cookieDomainCovers(domain: string, publicUrl: string): boolean {
  if (!COOKIE_DOMAIN.test(domain) || !URL.canParse(publicUrl)) return true;
  const host = new URL(publicUrl).hostname.toLowerCase();
  const name = domain.replace(/^\./, '').toLowerCase();
  return host === name || (isIP(host) === 0 && host.endsWith('.' + name));
}

function secureCookie(config: ParsedConfig): boolean {
  return config.session.cookie.secure ?? isHttps(config.publicUrl);
}

/** Fills in the defaults that depend on other keys. */
function resolveDerivedDefaults(config: ParsedConfig) {
  const { session } = config;
  return { ...config, session: { ...session, cookie: { ...session.cookie, secure: secureCookie(config) } } };
}

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type ApplicationConfig = Config['applications'][number];
