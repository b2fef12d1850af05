import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { ConfigError, envVariableName, loadConfig, redactConfig, type Config } from '../../src/config/index.js';

/** A well-formed clientSecretHash (of "reporting-job-secret"), as `oidc-sidecar hash-secret` prints. */
const SECRET_HASH = 'scrypt$32768$8$1$dlIxx90oa5GIdl_8by3CdQ$3TVNWIGtZlffSi-KXsrbh5BdMG__k-qiic0Vw36IGbY';

const SESSION_SECRET = 'session-secret-0123456789-abcdefghij';
const CLIENT_SECRET = 'client-secret-do-not-print';

/** The smallest valid configuration; tests change one thing at a time. */
function minimalConfig(): Record<string, unknown> {
  return {
    upstream: { url: 'http://127.0.0.1:8080' },
    publicUrl: 'https://portal.example.com',
    provider: { issuerUrl: 'https://idp.example.com', clientId: 'portal', clientSecret: CLIENT_SECRET },
    session: { secret: SESSION_SECRET },
  };
}

type Tree = Record<string, unknown>;
type Testdir = Pick<typeof t, 'testdir'>;

/** `minimalConfig()` with `changes` merged in; a value of `undefined` removes the key. */
function configWith(changes: Tree, base: Tree = minimalConfig()): Tree {
  const result: Tree = { ...base };
  for (const [key, value] of Object.entries(changes)) {
    const current = result[key];
    if (value === undefined) delete result[key];
    else if (isTree(value) && isTree(current)) result[key] = configWith(value, current);
    else result[key] = value;
  }
  return result;
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Writes `config` as YAML into `dir` and loads it with `env`. */
async function loadFrom(dir: string, config: Tree, env: NodeJS.ProcessEnv = {}) {
  const file = join(dir, 'sidecar.yaml');
  await writeFile(file, toYaml(config));
  return loadConfig({ file, env });
}

/** Loads `config` from a fresh directory (which replaces the test's previous one). */
async function loadTree(t: Testdir, config: Tree, env: NodeJS.ProcessEnv = {}) {
  return loadFrom(t.testdir(), config, env);
}

/** The problem lines of a configuration that must be refused. */
async function problemsOf(load: Promise<unknown>): Promise<string[]> {
  try {
    await load;
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('the configuration was accepted');
}

t.test('defaults fill every key the file leaves out', async (t) => {
  const { config, warnings } = await loadTree(t, minimalConfig());
  t.same(warnings, []);
  t.match(config, {
    listen: { host: '0.0.0.0', port: 4180 },
    metrics: { host: '0.0.0.0', port: 9464 },
    upstream: { url: 'http://127.0.0.1:8080', timeoutSeconds: 60, websockets: true },
    provider: {
      type: 'oidc',
      azure: { allowedTenants: [], authorityHost: 'https://login.microsoftonline.com', graphUrl: 'https://graph.microsoft.com' },
      clientAuth: 'client_secret_basic',
      scopes: ['openid', 'profile', 'email'],
      redirectPath: '/oauth2/callback',
    },
    session: {
      store: 'memory',
      cookie: { name: '_oidc_sidecar', type: 'persistent', secure: true, sameSite: 'lax' },
      idleTimeoutMinutes: 20,
      maxLifetimeHours: 12,
      refreshTokens: true,
    },
    redis: { tls: false, keyPrefix: 'oidc-sidecar:' },
    identity: { passAccessToken: false, passIdToken: false },
    authorization: { allowedGroups: [], allowedEmailDomains: [] },
    routes: { public: [], api: ['^/api/', '^/odata/', '^/scim/'], prefix: '/oauth2' },
    logout: { idpLogout: true, revokeTokens: true },
    errors: { detailed: false },
    audit: { enabled: true, stream: { maxLength: 100000 } },
    log: { level: 'info' },
    applications: [],
    clients: { tokenTtlSeconds: 3600 },
  });
  t.same(config.identity.headers['X-Forwarded-User'], ['preferred_username', 'upn', 'email', 'sub']);
  t.equal(config.session.cookie.domain, undefined);
});

t.test('the cookie is Secure by default only when publicUrl is https', async (t) => {
  const { config } = await loadTree(t, configWith({ publicUrl: 'http://localhost:4180' }));
  t.equal(config.session.cookie.secure, false);
});

t.test('the file is found through OIDC_SIDECAR_CONFIG, and the file option wins over it', async (t) => {
  const dir = t.testdir({
    'a.yaml': toYaml(configWith({ listen: { port: 1111 } })),
    'b.yaml': toYaml(configWith({ listen: { port: 2222 } })),
  });
  const env = { OIDC_SIDECAR_CONFIG: join(dir, 'a.yaml') };
  t.equal((await loadConfig({ env })).config.listen.port, 1111);
  t.equal((await loadConfig({ env, file: join(dir, 'b.yaml') })).config.listen.port, 2222);
});

t.test('JSON is accepted as YAML', async (t) => {
  const dir = t.testdir({ 'sidecar.json': JSON.stringify(minimalConfig()) });
  t.equal((await loadConfig({ file: join(dir, 'sidecar.json'), env: {} })).config.provider.clientId, 'portal');
});

const REQUIRED_ENV = {
  OIDC_SIDECAR_UPSTREAM__URL: 'http://127.0.0.1:8080',
  OIDC_SIDECAR_PUBLIC_URL: 'https://portal.example.com',
  OIDC_SIDECAR_PROVIDER__ISSUER_URL: 'https://idp.example.com',
  OIDC_SIDECAR_PROVIDER__CLIENT_ID: 'portal',
  OIDC_SIDECAR_PROVIDER__CLIENT_SECRET: CLIENT_SECRET,
  OIDC_SIDECAR_SESSION__SECRET: SESSION_SECRET,
};

t.test('a configuration may come from the environment alone', async (t) => {
  const { config } = await loadConfig({ env: REQUIRED_ENV });
  t.equal(config.publicUrl, 'https://portal.example.com');
  t.equal(config.session.secret, SESSION_SECRET);
});

t.test('environment variables set leaves of every type, and win over the file', async (t) => {
  const cases: Array<[variable: string, value: string, read: (c: Config) => unknown, expected: unknown]> = [
    ['OIDC_SIDECAR_LISTEN__HOST', '127.0.0.1', (c) => c.listen.host, '127.0.0.1'],
    ['OIDC_SIDECAR_LISTEN__PORT', '8080', (c) => c.listen.port, 8080],
    ['OIDC_SIDECAR_UPSTREAM__TIMEOUT_SECONDS', '2.5', (c) => c.upstream.timeoutSeconds, 2.5],
    ['OIDC_SIDECAR_UPSTREAM__WEBSOCKETS', 'false', (c) => c.upstream.websockets, false],
    ['OIDC_SIDECAR_ROUTES__PUBLIC', '["^/static/", "^/health$"]', (c) => c.routes.public, ['^/static/', '^/health$']],
    ['OIDC_SIDECAR_PROVIDER__SCOPES', '[openid, offline_access]', (c) => c.provider.scopes, ['openid', 'offline_access']],
    ['OIDC_SIDECAR_SESSION__COOKIE__SAME_SITE', 'strict', (c) => c.session.cookie.sameSite, 'strict'],
    ['OIDC_SIDECAR_AUTHORIZATION__ALLOWED_GROUPS', '[g1, g2]', (c) => c.authorization.allowedGroups, ['g1', 'g2']],
    ['OIDC_SIDECAR_IDENTITY__HEADERS', '{X-User: [email, sub]}', (c) => c.identity.headers, { 'X-User': ['email', 'sub'] }],
    ['OIDC_SIDECAR_AUDIT__STREAM__MAX_LENGTH', '500', (c) => c.audit.stream.maxLength, 500],
    ['OIDC_SIDECAR_LOG__LEVEL', 'debug', (c) => c.log.level, 'debug'],
    // A string key keeps the text as it is, even when it reads as a number or a boolean in YAML.
    ['OIDC_SIDECAR_PROVIDER__CLIENT_ID', '12345', (c) => c.provider.clientId, '12345'],
    ['OIDC_SIDECAR_REDIS__KEY_PREFIX', 'true', (c) => c.redis.keyPrefix, 'true'],
    ['OIDC_SIDECAR_PUBLIC_URL', 'https://other.example.com', (c) => c.publicUrl, 'https://other.example.com'],
  ];
  const file = configWith({ listen: { host: '::', port: 1234 }, log: { level: 'warn' } });
  for (const [variable, value, read, expected] of cases) {
    const { config } = await loadTree(t, file, { [variable]: value });
    t.same(read(config), expected, `${variable}=${value}`);
  }
});

t.test('environment variables reach keys inside optional sections', async (t) => {
  const { config } = await loadConfig({
    env: {
      ...REQUIRED_ENV,
      OIDC_SIDECAR_SESSION__STORE: 'redis',
      OIDC_SIDECAR_REDIS__SENTINEL__MASTER_NAME: 'mymaster',
      OIDC_SIDECAR_REDIS__SENTINEL__NODES: '["s1:26379", "s2:26379"]',
      OIDC_SIDECAR_CLIENTS__IDP_TOKENS__ISSUER: 'https://idp.example.com',
      OIDC_SIDECAR_CLIENTS__IDP_TOKENS__AUDIENCE: 'api://portal',
    },
  });
  t.same(config.redis.sentinel, { masterName: 'mymaster', nodes: ['s1:26379', 's2:26379'] });
  t.same(config.clients.idpTokens, { issuer: 'https://idp.example.com', audience: 'api://portal', requiredRoles: [] });
  for (const [audience, expected] of [['170086824411201793', '170086824411201793'], ['true', 'true'], ['[api://a, "170086824411201793"]', ['api://a', '170086824411201793']]] as const) {
    const loaded = await loadConfig({ env: { ...REQUIRED_ENV, OIDC_SIDECAR_CLIENTS__IDP_TOKENS__ISSUER: 'https://idp.example.com', OIDC_SIDECAR_CLIENTS__IDP_TOKENS__AUDIENCE: audience } });
    t.same(loaded.config.clients.idpTokens?.audience, expected, `text or a list: ${audience}`);
  }
});

t.test("clients.idpTokens.audience may not be the sign-in client's id (ID tokens would pass as machine tokens)", async (t) => {
  const error = await loadConfig({
    env: {
      ...REQUIRED_ENV,
      OIDC_SIDECAR_CLIENTS__IDP_TOKENS__ISSUER: 'https://idp.example.com',
      OIDC_SIDECAR_CLIENTS__IDP_TOKENS__AUDIENCE: REQUIRED_ENV.OIDC_SIDECAR_PROVIDER__CLIENT_ID,
    },
  }).catch((caught: unknown) => caught);
  t.type(error, ConfigError);
  t.match((error as ConfigError).problems, [/^clients\.idpTokens\.audience: must not be provider\.clientId/]);
});

t.test('an empty environment variable counts as unset', async (t) => {
  const { config } = await loadTree(t, configWith({ listen: { port: 1234 } }), { OIDC_SIDECAR_LISTEN__PORT: '' });
  t.equal(config.listen.port, 1234);
});

t.test('a key left empty in the file counts as unset', async (t) => {
  const dir = t.testdir({
    'sidecar.yaml': `${toYaml(minimalConfig())}redis:\n  # url: redis://127.0.0.1:6379\nlogout:\n  redirectUrl:\n`,
  });
  const { config } = await loadConfig({ file: join(dir, 'sidecar.yaml'), env: {} });
  t.equal(config.redis.keyPrefix, 'oidc-sidecar:');
  t.equal(config.logout.redirectUrl, undefined);
});

t.test('environment variable names follow the key path', async (t) => {
  t.equal(envVariableName(['provider', 'clientSecret']), 'OIDC_SIDECAR_PROVIDER__CLIENT_SECRET');
  t.equal(envVariableName(['session', 'cookie', 'sameSite']), 'OIDC_SIDECAR_SESSION__COOKIE__SAME_SITE');
  t.equal(envVariableName(['publicUrl']), 'OIDC_SIDECAR_PUBLIC_URL');
});

t.test('a secret key reads its value from the file its …File twin names', async (t) => {
  const dir = t.testdir({
    'client-secret': `${CLIENT_SECRET}\n`,
    'session-secret': `${SESSION_SECRET}\r\n`,
    'redis-password': 'pw with two newlines\n\n',
  });
  const secretFile = (name: string) => join(dir, name);
  const base = configWith({ provider: { clientSecret: undefined }, session: { secret: undefined } });

  const fromFile = await loadFrom(dir, configWith({
    provider: { clientSecretFile: secretFile('client-secret') },
    session: { secretFile: secretFile('session-secret') },
    redis: { passwordFile: secretFile('redis-password') },
  }, base));
  t.equal(fromFile.config.provider.clientSecret, CLIENT_SECRET);
  t.equal(fromFile.config.session.secret, SESSION_SECRET);
  t.equal(fromFile.config.redis.password, 'pw with two newlines\n', 'only one trailing newline is stripped');
  t.notOk('clientSecretFile' in fromFile.config.provider);

  const fromEnv = await loadFrom(dir, base, {
    OIDC_SIDECAR_PROVIDER__CLIENT_SECRET_FILE: secretFile('client-secret'),
    OIDC_SIDECAR_SESSION__SECRET_FILE: secretFile('session-secret'),
    OIDC_SIDECAR_REDIS__PASSWORD_FILE: secretFile('redis-password'),
  });
  t.equal(fromEnv.config.provider.clientSecret, CLIENT_SECRET);
  t.equal(fromEnv.config.session.secret, SESSION_SECRET);
  t.equal(fromEnv.config.redis.password, 'pw with two newlines\n');

  const envOverFile = await loadFrom(dir, configWith({ provider: { clientSecret: 'inline-in-the-file' } }), {
    OIDC_SIDECAR_PROVIDER__CLIENT_SECRET_FILE: secretFile('client-secret'),
  });
  t.equal(envOverFile.config.provider.clientSecret, CLIENT_SECRET, 'the environment wins over the file');
});

t.test('a secret and its …File twin together, or an unreadable twin, are refused by name', async (t) => {
  const dir = t.testdir({ 'client-secret': CLIENT_SECRET });
  const secretFile = join(dir, 'client-secret');
  const missing = join(dir, 'no-such-file');
  const withoutSecret = configWith({ provider: { clientSecret: undefined } });

  t.same(await problemsOf(loadFrom(dir, configWith({ provider: { clientSecretFile: secretFile } }))), [
    'provider.clientSecret: set either provider.clientSecret or provider.clientSecretFile, not both',
  ]);
  t.same(
    await problemsOf(
      loadFrom(dir, withoutSecret, { OIDC_SIDECAR_PROVIDER__CLIENT_SECRET: 'x', OIDC_SIDECAR_PROVIDER__CLIENT_SECRET_FILE: secretFile }),
    ),
    ['provider.clientSecret: set either OIDC_SIDECAR_PROVIDER__CLIENT_SECRET or OIDC_SIDECAR_PROVIDER__CLIENT_SECRET_FILE, not both'],
  );
  t.same(await problemsOf(loadFrom(dir, configWith({ provider: { clientSecretFile: missing } }, withoutSecret))), [
    `provider.clientSecret: cannot read the file "${missing}" named by provider.clientSecretFile (ENOENT)`,
  ]);
  t.same(await problemsOf(loadFrom(dir, configWith({ session: { secret: undefined } }), { OIDC_SIDECAR_SESSION__SECRET_FILE: dir })), [
    `session.secret: cannot read the file "${dir}" named by OIDC_SIDECAR_SESSION__SECRET_FILE (EISDIR)`,
  ]);
  // 16 random bytes (`head -c 16 /dev/urandom`) read as UTF-8 would come out about 32 bytes long.
  const binary = join(dir, 'binary-secret');
  await writeFile(binary, Buffer.from('f1e2d3c4b5a69788796a5b4c3d2e1f00', 'hex'));
  t.same(await problemsOf(loadFrom(dir, configWith({ session: { secret: undefined, secretFile: binary } }))), [
    `session.secret: the file "${binary}" named by session.secretFile is not text (UTF-8): write the secret as text, e.g. from \`openssl rand -base64 48\``,
  ]);
  t.same(await problemsOf(loadFrom(dir, configWith({ listen: { portFile: secretFile } }))), ['unknown key "listen.portFile"'], 'only secrets have twins');
});

t.test('every cross-field rule names the key it is about', async (t) => {
  const cases: Array<[rule: string, changes: Tree, problem: string]> = [
    ['issuerUrl is required for type oidc', { provider: { issuerUrl: undefined } }, 'provider.issuerUrl: is required when provider.type is "oidc"'],
    ['tenant is required for type azure', { provider: { type: 'azure', issuerUrl: undefined } }, 'provider.azure.tenant: is required when provider.type is "azure"'],
    ['scopes without openid', { provider: { scopes: ['profile', 'email'] } }, 'provider.scopes: must include openid: the sign-in needs the ID token it brings'],
    [
      'a sovereign cloud needs the tenant id',
      { provider: { type: 'azure', issuerUrl: undefined, azure: { tenant: 'organizations', authorityHost: 'https://login.microsoftonline.us' } } },
      'provider.azure.tenant: must be the tenant id (a GUID) with authorityHost https://login.microsoftonline.us: the issuer of a tenant name, "organizations" or "common" is checked on https://login.microsoftonline.com only',
    ],
    ['allowed tenants only with type azure', { provider: { azure: { allowedTenants: ['11111111-2222-3333-4444-555555555555'] } } }, 'provider.azure.allowedTenants: applies only when provider.type is "azure"'],
    ['clientSecret is required for client_secret_basic', { provider: { clientSecret: undefined } }, 'provider.clientSecret: is required when provider.clientAuth is "client_secret_basic"'],
    [
      'clientSecret is required for client_secret_post',
      { provider: { clientSecret: undefined, clientAuth: 'client_secret_post' } },
      'provider.clientSecret: is required when provider.clientAuth is "client_secret_post"',
    ],
    [
      'private_key_jwt needs privateKeyFile',
      { provider: { clientSecret: undefined, clientAuth: 'private_key_jwt' } },
      'provider.privateKeyFile: is required when provider.clientAuth is "private_key_jwt"',
    ],
    [
      'redis store without a mode',
      { session: { store: 'redis' } },
      'redis: set exactly one of redis.url, redis.sentinel, redis.cluster (session.store is "redis")',
    ],
    [
      'redis store with two modes',
      { session: { store: 'redis' }, redis: { url: 'redis://127.0.0.1:6379', cluster: { nodes: ['r1:6379'] } } },
      'redis: set exactly one of redis.url, redis.sentinel, redis.cluster (session.store is "redis")',
    ],
    ['plain http publicUrl off loopback', { publicUrl: 'http://portal.example.com' }, 'publicUrl: must use https; plain http is accepted only for loopback hosts'],
    ...['https://portal.example.com/portal', 'https://portal.example.com/?x=1', 'https://user@portal.example.com'].map((publicUrl): [string, Tree, string] => [
      `publicUrl ${publicUrl}`,
      { publicUrl },
      'publicUrl: must be an origin (scheme, host and port; no path, query or credentials): the sidecar answers at the root of its host',
    ]),
    [
      'plain http issuerUrl off loopback',
      { provider: { issuerUrl: 'http://idp.example.com' } },
      'provider.issuerUrl: must use https; plain http is accepted only for loopback hosts',
    ],
    [
      'plain http token endpoint off loopback',
      { provider: { tokenEndpoint: 'http://10.0.0.1/token' } },
      'provider.tokenEndpoint: must use https; plain http is accepted only for loopback hosts',
    ],
    ['a short session secret', { session: { secret: 'x'.repeat(31) } }, 'session.secret: must be at least 32 bytes long'],
    ['a cookie domain the publicUrl host is not in', { session: { cookie: { domain: 'example.org' } } }, 'session.cookie.domain: must be the publicUrl host or a parent domain of it'],
    [
      'a cookie domain that only ends like the publicUrl host',
      { publicUrl: 'https://portal.example.com', session: { cookie: { domain: 'le.com' } } },
      'session.cookie.domain: must be the publicUrl host or a parent domain of it',
    ],
    [
      'a cookie domain that is a "parent" of an IP address',
      { publicUrl: 'https://10.0.0.5', session: { cookie: { domain: '0.5' } } },
      'session.cookie.domain: must be the publicUrl host or a parent domain of it',
    ],
    ['a cookie domain that is not a domain name', { session: { cookie: { domain: 'example.com; SameSite=None' } } }, 'session.cookie.domain: must be a domain name such as example.com'],
    ['a __Host- name without Secure', { publicUrl: 'http://127.0.0.1:4180', provider: { issuerUrl: 'http://127.0.0.1:9000/' }, session: { cookie: { name: '__Host-portal' } } }, 'session.cookie.name: a __Host- or __Secure- name requires a Secure cookie (an https publicUrl)'],
    ['a __Host- name with a domain', { publicUrl: 'https://portal.example.com', session: { cookie: { name: '__Host-portal', domain: 'example.com' } } }, 'session.cookie.name: a __Host- name cannot have session.cookie.domain (a __Host- cookie is host-only)'],
    [
      'SameSite=None without Secure',
      { session: { cookie: { sameSite: 'none', secure: false } } },
      'session.cookie.sameSite: "none" requires a Secure cookie (session.cookie.secure: true)',
    ],
    [
      'client_credentials without a hash',
      { applications: [{ clientId: 'job', grantTypes: ['client_credentials'], routes: ['^/odata/'] }] },
      'applications[0].clientSecretHash: is required for grant type client_credentials',
    ],
    [
      'client_certificate without a key',
      { applications: [{ clientId: 'job', grantTypes: ['client_certificate'], routes: ['^/odata/'] }] },
      'applications[0].certificateFile: or hmacSecretFile is required for grant type client_certificate',
    ],
    [
      'a plain application secret',
      { applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: SECRET_HASH, clientSecret: 'plain', routes: ['^/'] }] },
      'applications[0].clientSecret: is not accepted: set clientSecretHash, made by `oidc-sidecar hash-secret`, instead',
    ],
    [
      'the same client id twice',
      {
        applications: [
          { clientId: 'job', grantTypes: ['client_certificate'], certificateFile: '/a.cer', routes: ['^/'] },
          { clientId: 'job', grantTypes: ['client_certificate'], certificateFile: '/b.cer', routes: ['^/'] },
        ],
      },
      'applications[1].clientId: "job" is registered twice',
    ],
  ];
  for (const [rule, changes, problem] of cases) t.same(await problemsOf(loadTree(t, configWith(changes))), [problem], rule);
  const malformedAuthority = await problemsOf(loadTree(t, configWith({ provider: { type: 'azure', issuerUrl: undefined, azure: { tenant: 'organizations', authorityHost: 'not a url' } } })));
  t.match(malformedAuthority, [/^provider\.azure\.authorityHost: /], 'a malformed authority host is said, once');
  t.equal(malformedAuthority.length, 1);
});

t.test('configurations that satisfy the cross-field rules load', async (t) => {
  const cases: Array<[what: string, changes: Tree]> = [
    ['azure with a tenant needs no issuerUrl', { provider: { type: 'azure', issuerUrl: undefined, azure: { tenant: 'contoso.onmicrosoft.com' } } }],
    ['a sovereign cloud with the tenant id', { provider: { type: 'azure', issuerUrl: undefined, azure: { tenant: '0B5E2F64-3c1d-4f7a-9e8b-6a2d1c0f4e31', authorityHost: 'https://login.microsoftonline.us' } } }],
    ['private_key_jwt needs no clientSecret', { provider: { clientSecret: undefined, clientAuth: 'private_key_jwt', privateKeyFile: '/k.pem' } }],
    ['redis with one mode', { session: { store: 'redis' }, redis: { url: 'rediss://:pw@redis.example.com:6379' } }],
    ['plain http on 127.0.0.1', { publicUrl: 'http://127.0.0.1:4180', provider: { issuerUrl: 'http://127.0.0.1:9000/' } }],
    ['plain http on localhost', { publicUrl: 'http://localhost:4180', provider: { issuerUrl: 'http://idp.localhost:9000/' } }],
    ['plain http on [::1]', { publicUrl: 'http://[::1]:4180' }],
    ['a 32-byte secret of 16 two-byte characters', { session: { secret: 'é'.repeat(16) } }],
    ['SameSite=None on an https publicUrl', { session: { cookie: { sameSite: 'none' } } }],
    ['a __Host- session cookie on an https publicUrl', { session: { cookie: { name: '__Host-portal' } } }],
    ['a __Secure- session cookie shared with a parent domain', { publicUrl: 'https://portal.example.com', session: { cookie: { name: '__Secure-portal', domain: 'example.com' } } }],
    ['a cookie domain that is a parent of the publicUrl host', { publicUrl: 'https://portal.example.com', session: { cookie: { domain: '.Example.com' } } }],
    ['a cookie domain that is the publicUrl IP address', { publicUrl: 'http://127.0.0.1:4180', session: { cookie: { domain: '127.0.0.1' } } }],
    ['a cookie domain that is the publicUrl host', { publicUrl: 'https://portal.example.com', session: { cookie: { domain: 'portal.example.com' } } }],
    [
      'an application of each grant type',
      {
        applications: [
          { clientId: 'a', grantTypes: ['client_credentials'], clientSecretHash: SECRET_HASH, routes: ['^/odata/'] },
          { clientId: 'b', grantTypes: ['client_certificate'], hmacSecretFile: '/b.hmac', routes: ['^/odata/'] },
        ],
      },
    ],
  ];
  for (const [what, changes] of cases) {
    await t.resolves(loadTree(t, configWith(changes)), what);
  }
});

t.test('bad values and missing keys are refused, one line per key', async (t) => {
  const cases: Array<[what: string, config: Tree, problems: string[]]> = [
    ['a port that is text', configWith({ listen: { port: 'eighty' } }), ['listen.port: expected a number, received a string']],
    ['a port out of range', configWith({ metrics: { port: 70000 } }), ['metrics.port: must be at most 65535']],
    ['a fractional port', configWith({ listen: { port: 80.5 } }), ['listen.port: must be a whole number']],
    ['a trusted proxy by name', configWith({ listen: { trustedProxies: ['10.0.0.0/8', 'ingress.local'] } }), ['listen.trustedProxies[1]: must be an IP address or a CIDR range']],
    ['a non-positive timeout', configWith({ upstream: { timeoutSeconds: 0 } }), ['upstream.timeoutSeconds: must be greater than 0']],
    ['a boolean that is text', configWith({ upstream: { websockets: 'yes please' } }), ['upstream.websockets: expected true or false, received a string']],
    ['an unknown log level', configWith({ log: { level: 'loud' } }), ['log.level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"']],
    ['a bad route regex', configWith({ routes: { public: ['^/ok/', '('] } }), ['routes.public[1]: is not a valid regular expression']],
    ['an empty scope list', configWith({ provider: { scopes: [] } }), ['provider.scopes: must list at least 1 item']],
    ['an empty client id', configWith({ provider: { clientId: '' } }), ['provider.clientId: must not be empty']],
    ['a section that is a list', configWith({ listen: [] }), ['listen: expected a mapping, received a list']],
    ['a URL that is no URL', configWith({ upstream: { url: 'portal:8080' } }), ['upstream.url: must be an absolute http:// or https:// URL']],
    ['a redis URL of another scheme', configWith({ redis: { url: 'http://redis:6379' } }), ['redis.url: must be a redis:// or rediss:// URL']],
    ['a claim that is a number', configWith({ identity: { headers: { 'X-User': 5 } } }), ['identity.headers.X-User: must be a claim name or a list of claim names']],
    [
      'headers the sidecar or HTTP needs',
      configWith({ identity: { headers: { Cookie: 'sub', authorization: 'roles', 'X-Request-Id': 'sub', 'Content-Length': 'sub' } } }),
      ['Cookie', 'authorization', 'X-Request-Id', 'Content-Length'].map((name) => `identity.headers.${name}: is a header the sidecar or HTTP itself needs (it is stripped from every request)`),
    ],
    ['a header name that is no token', configWith({ identity: { headers: { 'X User': 'sub' } } }), ['identity.headers.X User: header names may hold only letters, digits and "-"']],
    ['a header named twice', configWith({ identity: { headers: { 'X-User': 'sub', 'x-user': 'email' } } }), ['identity.headers: names a header twice (header names are not case-sensitive)']],
    [
      'an empty file',
      {},
      ['upstream.url: is required', 'publicUrl: is required', 'provider.clientId: is required', 'session.secret: is required'],
    ],
  ];
  for (const [what, config, problems] of cases) t.same(await problemsOf(loadTree(t, config)), problems, what);
});

t.test('unknown keys in the file and unknown variables in the environment are refused by name', async (t) => {
  const config = configWith({ foo: 1, session: { cookie: { sameSit: 'lax', secur: true } }, provider: { azure: { tenantId: 'x' } } });
  t.same(await problemsOf(loadTree(t, config, { OIDC_SIDECAR_SESSION__SECRETT: 'x', OIDC_SIDECAR_CONFIG_FILE: '/x', OTHER_VARIABLE: 'ignored' })), [
    'unknown environment variable OIDC_SIDECAR_SESSION__SECRETT: no configuration key has this name',
    'unknown environment variable OIDC_SIDECAR_CONFIG_FILE: no configuration key has this name',
    'unknown key "provider.azure.tenantId"',
    'unknown key "session.cookie.sameSit"',
    'unknown key "session.cookie.secur"',
    'unknown key "foo"',
  ]);
});

t.test("Kubernetes' service links of a Service named oidc-sidecar are no configuration: ignored", async (t) => {
  const serviceLinks = {
    OIDC_SIDECAR_SERVICE_HOST: '10.96.0.12',
    OIDC_SIDECAR_SERVICE_PORT: '80',
    OIDC_SIDECAR_SERVICE_PORT_HTTP: '80',
    OIDC_SIDECAR_PORT: 'tcp://10.96.0.12:80',
    OIDC_SIDECAR_PORT_80_TCP: 'tcp://10.96.0.12:80',
    OIDC_SIDECAR_PORT_80_TCP_PROTO: 'tcp',
    OIDC_SIDECAR_PORT_80_TCP_PORT: '80',
    OIDC_SIDECAR_PORT_80_TCP_ADDR: '10.96.0.12',
  };
  await t.resolves(loadTree(t, configWith({}), serviceLinks));
});

t.test('a problem in a value set by the environment names the variable', async (t) => {
  t.same(await problemsOf(loadTree(t, minimalConfig(), { OIDC_SIDECAR_LISTEN__PORT: 'eighty' })), [
    'listen.port: expected a number, received a string (from OIDC_SIDECAR_LISTEN__PORT)',
  ]);
  t.same(await problemsOf(loadTree(t, minimalConfig(), { OIDC_SIDECAR_ROUTES__PUBLIC: '[^/a/' })), [
    'routes.public: OIDC_SIDECAR_ROUTES__PUBLIC is not a valid YAML value (MISSING_CHAR)',
  ]);
});

t.test('an unreadable file or a YAML syntax error names the file and the line, never the text', async (t) => {
  const dir = t.testdir({
    'broken.yaml': `publicUrl: https://portal.example.com\nsession:\n  secret: "${SESSION_SECRET}\n`,
    'list.yaml': '- a\n- b\n',
    'empty.yaml': '',
  });
  const broken = join(dir, 'broken.yaml');
  const problems = await problemsOf(loadConfig({ file: broken, env: {} }));
  t.equal(problems.length, 1);
  t.match(problems[0], new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML syntax error: `));
  t.notMatch(problems[0], SESSION_SECRET);

  const missing = join(dir, 'missing.yaml');
  t.same(await problemsOf(loadConfig({ file: missing, env: {} })), [`${missing}: cannot read the configuration file (ENOENT)`]);
  t.same(await problemsOf(loadConfig({ file: join(dir, 'list.yaml'), env: {} })), [
    `${join(dir, 'list.yaml')}: expected a mapping of configuration keys at the top level`,
  ]);
  await t.resolves(loadConfig({ file: join(dir, 'empty.yaml'), env: REQUIRED_ENV }), 'an empty file is an empty mapping');
});

t.test('ConfigError carries a stable code and its problems as the message', async (t) => {
  try {
    await loadConfig({ env: {} });
    t.fail('accepted');
  } catch (error) {
    t.ok(error instanceof ConfigError);
    const configError = error as ConfigError;
    t.equal(configError.code, 'ERR_CONFIG_INVALID');
    t.equal(configError.message, configError.problems.join('\n'));
  }
});

t.test('applications may come from applicationsFile', async (t) => {
  const application = { clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: SECRET_HASH, routes: ['^/odata/'] };
  const dir = t.testdir({
    'apps.yaml': toYaml([application]),
    'bad-apps.yaml': toYaml([{ clientId: 'job', grantTypes: ['client_credentials'] }]),
  });
  const { config } = await loadFrom(dir, configWith({ applicationsFile: join(dir, 'apps.yaml') }));
  t.same(config.applications, [{ ...application, scopes: [] }]);

  t.same(await problemsOf(loadFrom(dir, configWith({ applicationsFile: join(dir, 'apps.yaml'), applications: [] }))), [
    'applications: set either applications or applicationsFile, not both',
  ]);
  t.same(await problemsOf(loadFrom(dir, configWith({ applicationsFile: join(dir, 'bad-apps.yaml') }))), [
    `applications[0].routes: is required (from applicationsFile ${join(dir, 'bad-apps.yaml')})`,
  ]);
  t.same(await problemsOf(loadFrom(dir, configWith({ applicationsFile: join(dir, 'none.yaml') }))), [
    `applications: applicationsFile: cannot read "${join(dir, 'none.yaml')}" (ENOENT)`,
  ]);
});

t.test('questionable settings load with a warning', async (t) => {
  const cases: Array<[what: string, changes: Tree, warning: RegExp]> = [
    ['an idle time-out above 60 minutes', { session: { idleTimeoutMinutes: 90 } }, /^session\.idleTimeoutMinutes is 90: .*not recommended/],
    ['an insecure cookie behind https', { session: { cookie: { secure: false } } }, /^session\.cookie\.secure is false although publicUrl is https/],
    ['a client secret private_key_jwt ignores', { provider: { clientAuth: 'private_key_jwt', privateKeyFile: '/k.pem' } }, /^provider\.clientSecret is ignored/],
    [
      'generated token keys with several replicas',
      {
        session: { store: 'redis' },
        redis: { url: 'redis://127.0.0.1:6379' },
        applications: [{ clientId: 'a', grantTypes: ['client_credentials'], clientSecretHash: SECRET_HASH, routes: ['^/'] }],
      },
      /^clients\.signingKeyFile is unset/,
    ],
    [
      'a multi-tenant Azure app open to every tenant',
      { provider: { type: 'azure', issuerUrl: undefined, scopes: ['openid', 'offline_access'], azure: { tenant: 'organizations' } } },
      /^provider\.azure\.tenant is "organizations" and provider\.azure\.allowedTenants is empty: users of any Entra ID tenant can sign in/,
    ],
    [
      'Azure without offline_access',
      { provider: { type: 'azure', issuerUrl: undefined, azure: { tenant: '0b5e2f64-3c1d-4f7a-9e8b-6a2d1c0f4e31' } } },
      /^provider\.scopes has no offline_access: Azure AD then issues no refresh token/,
    ],
  ];
  for (const [what, changes, warning] of cases) {
    const { warnings } = await loadTree(t, configWith(changes));
    t.equal(warnings.length, 1, what);
    t.match(warnings[0], warning, what);
  }
});

t.test('redactConfig hides every secret and leaves the configuration untouched', async (t) => {
  const { config } = await loadTree(
    t,
    configWith({
      redis: { url: 'rediss://user:redis-url-password@redis.example.com:6379', password: 'redis-password' },
      applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: SECRET_HASH, routes: ['^/'] }],
    }),
  );
  const redacted = redactConfig(config);
  const text = JSON.stringify(redacted);
  for (const secret of [CLIENT_SECRET, SESSION_SECRET, 'redis-url-password', 'redis-password', SECRET_HASH]) {
    t.notOk(text.includes(secret), `${secret} is hidden`);
  }
  t.equal(redacted.provider.clientSecret, '[redacted]');
  t.equal(redacted.session.secret, '[redacted]');
  t.equal(redacted.redis.password, '[redacted]');
  t.equal(redacted.redis.url, 'rediss://user:[redacted]@redis.example.com:6379');
  t.equal(redacted.applications[0]?.clientSecretHash, '[redacted]');
  t.equal(redacted.provider.clientId, 'portal');
  t.equal(config.provider.clientSecret, CLIENT_SECRET, 'the original keeps its values');
});
