import { z } from 'zod';

/**
 * The one source of truth for the configuration (DESIGN.md §2): validation, defaults and the
 * documentation of every key. Each key's `describe()` text names the portal setting it realises
 * where there is one; the README's reference table follows it.
 */

const port = z.number().int().min(0).max(65535);
const url = z.url({ protocol: /^https?$/ });
const regexSource = z.string().refine(isValidRegex, { message: 'is not a valid regular expression' });
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be "host:port"');

function isValidRegex(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

const claimNames = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

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
    host: z.string().min(1).default('0.0.0.0'),
    port: port.default(4180),
  })
  .prefault({});

const metricsSchema = z
  .strictObject({
    host: z.string().min(1).default('0.0.0.0'),
    port: port.default(9464),
  })
  .prefault({});

const upstreamSchema = z.strictObject({
  url: url.describe('the portal'),
  timeoutSeconds: z.number().positive().max(3600).default(60),
  websockets: z.boolean().default(true),
});

const azureSchema = z
  .strictObject({
    tenant: z.string().min(1).optional(),
    allowedTenants: z.array(z.string().min(1)).default([]),
    authorityHost: url.default('https://login.microsoftonline.com'),
    graphUrl: url.default('https://graph.microsoft.com'),
  })
  .prefault({});

const providerSchema = z.strictObject({
  type: z.enum(['oidc', 'azure']).default('oidc'),
  issuerUrl: url.optional(),
  azure: azureSchema,
  authorizationEndpoint: url.optional(),
  tokenEndpoint: url.optional(),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1).optional(),
  clientAuth: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt']).default('client_secret_basic'),
  privateKeyFile: z.string().min(1).optional(),
  certificateFile: z.string().min(1).optional(),
  scopes: z.array(z.string().min(1)).min(1).default(['openid', 'profile', 'email']),
  redirectPath: z.string().regex(/^\/[^?#\s]*$/, 'must be an absolute path').default('/oauth2/callback'),
});

const cookieSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'may hold only letters, digits, "_", "." and "-"').default('_oidc_sidecar'),
    type: z.enum(['persistent', 'session']).default('persistent'),
    domain: z.string().min(1).optional(),
    secure: z.boolean().optional(),
    sameSite: z.enum(['lax', 'strict', 'none']).default('lax'),
  })
  .prefault({});

const sessionSchema = z.strictObject({
  store: z.enum(['memory', 'redis']).default('memory'),
  secret: z.string().refine((s) => Buffer.byteLength(s) >= 32, 'must be at least 32 bytes long'),
  cookie: cookieSchema,
  idleTimeoutMinutes: z.number().positive().max(7 * 24 * 60).default(20),
  maxLifetimeHours: z.number().positive().max(24 * 90).default(12),
  refreshTokens: z.boolean().default(true),
});

const redisSchema = z
  .strictObject({
    url: z.url({ protocol: /^rediss?$/ }).optional(),
    sentinel: z
      .strictObject({ masterName: z.string().min(1), nodes: z.array(hostPort).min(1) })
      .optional(),
    cluster: z.strictObject({ nodes: z.array(hostPort).min(1) }).optional(),
    password: z.string().min(1).optional(),
    tls: z.boolean().default(false),
    keyPrefix: z.string().default('oidc-sidecar:'),
  })
  .prefault({});

const identitySchema = z
  .strictObject({
    headers: z
      .record(z.string().regex(/^[A-Za-z0-9-]+$/, 'header names may hold only letters, digits and "-"'), claimNames)
      .default(DEFAULT_IDENTITY_HEADERS),
    passAccessToken: z.boolean().default(false),
    passIdToken: z.boolean().default(false),
  })
  .prefault({});

const authorizationSchema = z
  .strictObject({
    allowedGroups: z.array(z.string().min(1)).default([]),
    allowedEmailDomains: z.array(z.string().min(1)).default([]),
  })
  .prefault({});

const routesSchema = z
  .strictObject({
    public: z.array(regexSource).default([]),
    api: z.array(regexSource).default(['^/api/', '^/odata/', '^/scim/']),
    prefix: z.string().regex(/^\/[A-Za-z0-9_.~-]+$/, 'must be one path segment such as "/oauth2"').default('/oauth2'),
  })
  .prefault({});

const logoutSchema = z
  .strictObject({
    redirectUrl: url.optional(),
    idpLogout: z.boolean().default(true),
    revokeTokens: z.boolean().default(true),
  })
  .prefault({});

const errorsSchema = z.strictObject({ detailed: z.boolean().default(false) }).prefault({});

const auditSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    stream: z.strictObject({ maxLength: z.number().int().positive().default(100000) }).prefault({}),
  })
  .prefault({});

const logSchema = z
  .strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .prefault({});

const configObject = z.strictObject({
    listen: listenSchema,
    metrics: metricsSchema,
    upstream: upstreamSchema,
    publicUrl: url,
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
});

export const configSchema = configObject.superRefine(checkCrossFieldRules);

function checkCrossFieldRules(config: z.output<typeof configObject>, ctx: z.RefinementCtx): void {
  const problem = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const { provider, session, redis } = config;
  if (provider.type === 'oidc' && !provider.issuerUrl) problem(['provider', 'issuerUrl'], 'is required when provider.type is "oidc"');
  if (provider.type === 'azure' && !provider.azure.tenant) problem(['provider', 'azure', 'tenant'], 'is required when provider.type is "azure"');
  if (provider.clientAuth === 'private_key_jwt') {
    if (!provider.privateKeyFile) problem(['provider', 'privateKeyFile'], 'is required when provider.clientAuth is "private_key_jwt"');
  } else if (!provider.clientSecret) {
    problem(['provider', 'clientSecret'], `is required when provider.clientAuth is "${provider.clientAuth}"`);
  }
  if (session.store === 'redis') {
    const modes = [redis.url, redis.sentinel, redis.cluster].filter(Boolean).length;
    if (modes !== 1) problem(['redis'], 'session.store is "redis": set exactly one of redis.url, redis.sentinel, redis.cluster');
  }
  if (session.cookie.sameSite === 'none' && session.cookie.secure === false) {
    problem(['session', 'cookie', 'sameSite'], '"none" requires session.cookie.secure: true');
  }
  for (const [path, value] of [
    [['publicUrl'], config.publicUrl],
    [['provider', 'issuerUrl'], provider.issuerUrl],
    [['provider', 'authorizationEndpoint'], provider.authorizationEndpoint],
    [['provider', 'tokenEndpoint'], provider.tokenEndpoint],
  ] as const) {
    if (value && !isHttpsOrLoopback(value)) problem([...path], 'must use https (plain http is accepted only for loopback hosts)');
  }
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** True for https URLs, and for http URLs whose host is a loopback address. */
export function isHttpsOrLoopback(value: string): boolean {
  const parsed = new URL(value);
  if (parsed.protocol === 'https:') return true;
  return LOOPBACK_HOSTS.has(parsed.hostname) || /^127\.\d+\.\d+\.\d+$/.test(parsed.hostname) || parsed.hostname.endsWith('.localhost');
}

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
