/**
 * The Helm chart (helm/oidc-sidecar), rendered without Helm: test/helm/render is a Go program using
 * text/template and sprig, the libraries Helm is made of, from Debian's golang-go and
 * golang-github-masterminds-sprig-dev (installed by .ci/run), built offline in GOPATH mode. Each
 * values file in test/helm/values is checked against values.schema.json (as Helm does), rendered,
 * parsed, validated against the Kubernetes schemas (kubernetes-models), cross-checked (every name a
 * manifest refers to exists) and its ConfigMap loaded through the sidecar's own configuration schema.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Ajv, type ErrorObject } from 'ajv';
import t from 'tap';
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml';
import { configSchema } from '../../src/config/schema.js';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(ROOT, 'helm/oidc-sidecar');
const RENDERER = join(ROOT, 'test/helm/render');
const VALUES_DIR = join(ROOT, 'test/helm/values');
const GOPATH = '/usr/share/gocode';
const RELEASE = 'portal-auth';
const NAMESPACE = 'portal';
const FULLNAME = 'portal-auth-oidc-sidecar';
const SIDECAR = 'oidc-sidecar';

/** The secrets a Secret managed outside the chart would hold (values file existing-secret.yaml). */
const EXTERNAL_SECRETS: Record<string, Record<string, string>> = {
  'portal-oidc': {
    'cookie-key': 'session-secret-from-an-external-secret-0123456789',
    'client-key.pem': '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIE\n-----END PRIVATE KEY-----\n',
    'client-cert.pem': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  },
  'portal-oidc-applications': {
    'applications.yaml': toYaml([{ clientId: 'nightly-export', grantTypes: ['client_certificate'], certificateFile: '/etc/oidc-sidecar/apps/nightly-export.cer', routes: ['^/odata/'] }]),
    'nightly-export.cer': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    'token-signing-key.pem': '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIE\n-----END PRIVATE KEY-----\n',
  },
};

type Mapping = Record<string, unknown>;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  securityContext?: Mapping;
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  startupProbe?: { httpGet?: { path: string; port: string | number } };
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
  lifecycle?: Mapping;
}

interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string };
  emptyDir?: Mapping;
  [key: string]: unknown;
}

interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
  securityContext?: Mapping;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
}

interface Deployment extends K8sObject {
  spec: {
    replicas?: number;
    strategy?: Mapping;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec };
  };
}

interface Rendered {
  objects: K8sObject[];
  notes: string;
  values: Mapping;
}

// ---- the renderer ------------------------------------------------------------------------------

const GO_PACKAGES = 'golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev';
const GO_MISSING = `the chart tests need Go with sprig: install the Debian packages (.ci/run does): apt-get install -y ${GO_PACKAGES}`;

/** Builds test/helm/render once per source version (cached in the temporary folder); offline, GOPATH mode. */
async function buildRenderer(): Promise<string> {
  const version = await execFileAsync('go', ['version']).catch(() => undefined);
  if (!version) throw new Error(`\`go\` was not found: ${GO_MISSING}`);
  for (const library of ['github.com/Masterminds/sprig', 'gopkg.in/yaml.v2']) {
    if (!existsSync(join(GOPATH, 'src', library))) throw new Error(`${library} was not found in ${GOPATH}: ${GO_MISSING}`);
  }
  const source = await readFile(join(RENDERER, 'main.go'));
  const key = createHash('sha256').update(source).update(version.stdout).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `oidc-sidecar-helm-render-${key}`);
  const binary = join(dir, 'render');
  if (existsSync(binary)) return binary;
  await mkdir(dir, { recursive: true });
  const partial = `${binary}.${process.pid}`;
  const env = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH,
    GOPROXY: 'off',
    GOFLAGS: '',
    GOTOOLCHAIN: 'local',
    CGO_ENABLED: '0',
    GOCACHE: join(tmpdir(), 'oidc-sidecar-helm-gocache'),
  };
  try {
    await execFileAsync('go', ['build', '-o', partial, '.'], { cwd: RENDERER, env });
  } catch (error) {
    throw new Error(`building the chart renderer failed (${GO_MISSING}):\n${(error as { stderr?: string }).stderr ?? String(error)}`, { cause: error });
  }
  await rename(partial, binary);
  return binary;
}

const renderer = buildRenderer();
// A failed build fails the first test with its reason, and every test that renders with the same one.
renderer.catch(() => undefined);

const scratch = await mkdtemp(join(tmpdir(), 'oidc-sidecar-chart-'));
t.teardown(() => rm(scratch, { recursive: true, force: true }));
let scratchFiles = 0;

/** Values: the name of a file in test/helm/values, or an object. Later ones win, as with `helm -f a -f b`. */
type ValuesSource = string | Mapping;

async function valueArgs(sources: ValuesSource[]): Promise<string[]> {
  const args: string[] = [];
  for (const source of sources) {
    let file: string;
    if (typeof source === 'string') {
      file = join(VALUES_DIR, `${source}.yaml`);
    } else {
      file = join(scratch, `values-${++scratchFiles}.yaml`);
      await writeFile(file, toYaml(source));
    }
    args.push('-f', file);
  }
  return args;
}

async function runRenderer(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  const binary = await renderer;
  const common = ['--chart', CHART, '--release', RELEASE, '--namespace', NAMESPACE];
  try {
    const { stdout, stderr } = await execFileAsync(binary, [...common, ...args], { maxBuffer: 32 * 1024 * 1024 });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: failure.stdout ?? '', stderr: failure.stderr ?? String(error), code: failure.code ?? 1 };
  }
}

// ---- values.schema.json ------------------------------------------------------------------------

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validateValues = ajv.compile(JSON.parse(await readFile(join(CHART, 'values.schema.json'), 'utf8')) as object);

function schemaProblem(error: ErrorObject): string {
  const path = error.instancePath.replace(/^\//, '').replaceAll('/', '.') || '(values)';
  const extra = error.keyword === 'additionalProperties' ? ` "${String(error.params.additionalProperty)}"` : '';
  const allowed = error.keyword === 'enum' ? `: ${(error.params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(', ')}` : '';
  return `${path}: ${error.message ?? error.keyword}${extra}${allowed}`;
}

/** What Helm checks before it renders: the coalesced values against values.schema.json. */
async function schemaProblems(...sources: ValuesSource[]): Promise<string[]> {
  const result = await runRenderer(['--values-only', ...(await valueArgs(sources))]);
  if (result.code !== 0) throw new Error(result.stderr);
  const values = JSON.parse(result.stdout) as Mapping;
  return validateValues(values) ? [] : (validateValues.errors ?? []).map(schemaProblem);
}

// ---- rendering ---------------------------------------------------------------------------------

async function render(...sources: ValuesSource[]): Promise<Rendered> {
  const problems = await schemaProblems(...sources);
  if (problems.length > 0) throw new Error(`values.schema.json rejects the values:\n${problems.join('\n')}`);
  const result = await runRenderer(['--json', ...(await valueArgs(sources))]);
  if (result.code !== 0) throw new Error(`rendering failed: ${result.stderr}`);
  const output = JSON.parse(result.stdout) as { manifests: { source: string; content: string }[] | null; notes: string; values: Mapping };
  const objects: K8sObject[] = [];
  for (const { source, content } of output.manifests ?? []) {
    for (const document of parseAllDocuments(content)) {
      if (document.errors.length > 0) throw new Error(`${source}: not valid YAML: ${document.errors[0]?.message}`);
      const object: unknown = document.toJS();
      if (object === null) continue;
      objects.push(object as K8sObject);
    }
  }
  return { objects, notes: output.notes, values: output.values };
}

/** The error Helm would print for these values. */
async function renderError(...sources: ValuesSource[]): Promise<string> {
  const result = await runRenderer(['--json', ...(await valueArgs(sources))]);
  if (result.code === 0) throw new Error('rendering succeeded, a failure was expected');
  return result.stderr.trim();
}

function find<T extends K8sObject = K8sObject>(rendered: Rendered, kind: string, name = FULLNAME): T {
  const object = rendered.objects.find((candidate) => candidate.kind === kind && candidate.metadata.name === name);
  if (!object) throw new Error(`no ${kind} ${name} among ${rendered.objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return object as T;
}

function kinds(rendered: Rendered): string[] {
  return rendered.objects.map((object) => object.kind);
}

function container(deployment: Deployment, name = SIDECAR): Container {
  const found = deployment.spec.template.spec.containers.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

function renderedConfig(rendered: Rendered): Mapping {
  const configMap = find(rendered, 'ConfigMap') as K8sObject & { data: Record<string, string> };
  return parseYaml(configMap.data['config.yaml'] ?? '') as Mapping;
}

// ---- Kubernetes schemas and cross references ---------------------------------------------------

type ModelClass = new (data: unknown) => { validate(): void };

async function modelOf(object: K8sObject): Promise<ModelClass> {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  const base = group === 'monitoring.coreos.com' ? '@kubernetes-models/prometheus-operator' : 'kubernetes-models';
  const module = (await import(`${base}/${group ? `${group}/` : ''}${version}/${object.kind}`)) as Record<string, ModelClass>;
  const model = module[object.kind];
  if (!model) throw new Error(`no model for ${object.apiVersion} ${object.kind}`);
  return model;
}

/** One line per problem: schema errors from kubernetes-models and the checks it does not make. */
async function manifestProblems(rendered: Rendered): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const object of rendered.objects) {
    const id = `${object.kind}/${object.metadata?.name}`;
    if (!object.apiVersion || !object.kind || !object.metadata?.name) problems.push(`${id}: apiVersion, kind and metadata.name are required`);
    if (seen.has(id)) problems.push(`${id}: rendered twice`);
    seen.add(id);
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(object.metadata.name) || object.metadata.name.length > 63) problems.push(`${id}: not a DNS-1123 label`);
    for (const [key, value] of Object.entries(object.metadata.labels ?? {})) {
      if (typeof value !== 'string' || value.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(value)) problems.push(`${id}: label ${key} has an invalid value`);
    }
    for (const label of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', 'helm.sh/chart']) {
      if (!object.metadata.labels?.[label]) problems.push(`${id}: label ${label} is missing`);
    }
    try {
      const Model = await modelOf(object);
      new Model(object).validate();
    } catch (error) {
      const errors = (error as { errors?: ErrorObject[] }).errors;
      problems.push(`${id}: ${errors ? errors.map((e) => `${e.instancePath} ${e.message}`).join('; ') : String(error)}`);
    }
  }
  problems.push(...referenceProblems(rendered));
  return problems;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

function referenceProblems(rendered: Rendered): string[] {
  const problems: string[] = [];
  const deployment = find<Deployment>(rendered, 'Deployment');
  const pod = deployment.spec.template;
  const volumes = new Map((pod.spec.volumes ?? []).map((volume) => [volume.name, volume]));
  const named = (kind: string, name: string) => rendered.objects.some((object) => object.kind === kind && object.metadata.name === name);
  const values = rendered.values as { secrets: { existingSecret: string }; applications: { existingSecret: string } };
  const external = new Set([values.secrets.existingSecret, values.applications.existingSecret].filter(Boolean));

  if (!matches(deployment.spec.selector.matchLabels, pod.metadata.labels)) problems.push('Deployment: the selector does not match the pod labels');
  const names = pod.spec.containers.map((c) => c.name);
  if (new Set(names).size !== names.length) problems.push('Deployment: container names repeat');
  const portNames = pod.spec.containers.flatMap((c) => (c.ports ?? []).map((port) => port.name));
  if (new Set(portNames).size !== portNames.length) problems.push('Deployment: port names repeat within the pod');
  for (const c of pod.spec.containers) {
    for (const mount of c.volumeMounts ?? []) {
      if (!volumes.has(mount.name)) problems.push(`Deployment: container ${c.name} mounts the missing volume ${mount.name}`);
    }
    for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
      const port = probe?.httpGet?.port;
      if (typeof port === 'string' && !c.ports?.some((p) => p.name === port)) problems.push(`Deployment: a probe of ${c.name} uses the unknown port ${port}`);
    }
  }
  for (const volume of volumes.values()) {
    if (volume.configMap && !named('ConfigMap', volume.configMap.name)) problems.push(`Deployment: volume ${volume.name} names a missing ConfigMap`);
    if (volume.secret && !named('Secret', volume.secret.secretName) && !external.has(volume.secret.secretName)) {
      problems.push(`Deployment: volume ${volume.name} names the missing Secret ${volume.secret.secretName}`);
    }
  }
  const account = pod.spec.serviceAccountName;
  if (account && account !== 'default' && !named('ServiceAccount', account)) problems.push(`Deployment: ServiceAccount ${account} is missing`);

  const services = rendered.objects.filter((object) => object.kind === 'Service') as (K8sObject & {
    spec: { selector: Record<string, string>; ports: { name: string; targetPort: string | number }[] };
  })[];
  for (const service of services) {
    if (!matches(service.spec.selector, pod.metadata.labels)) problems.push(`Service ${service.metadata.name}: the selector does not match the pods`);
    for (const port of service.spec.ports) {
      if (!portNames.includes(String(port.targetPort))) problems.push(`Service ${service.metadata.name}: targetPort ${port.targetPort} is no named port of the pod`);
    }
  }
  for (const object of rendered.objects) {
    const spec = object.spec as Mapping | undefined;
    if (object.kind === 'Ingress') {
      for (const rule of (spec?.rules ?? []) as { http: { paths: { backend: { service: { name: string; port: { name: string } } } }[] } }[]) {
        for (const path of rule.http.paths) {
          const service = services.find((s) => s.metadata.name === path.backend.service.name);
          if (!service?.spec.ports.some((p) => p.name === path.backend.service.port.name)) problems.push('Ingress: a backend names a missing Service port');
        }
      }
    }
    if (object.kind === 'ServiceMonitor') {
      const selector = (spec?.selector as { matchLabels: Record<string, string> }).matchLabels;
      const selected = services.filter((s) => matches(selector, s.metadata.labels));
      const endpoints = spec?.endpoints as { port: string }[];
      if (selected.length !== 1) problems.push(`ServiceMonitor: selects ${selected.length} Services`);
      if (!endpoints.every((e) => selected[0]?.spec.ports.some((p) => p.name === e.port))) problems.push('ServiceMonitor: an endpoint names a missing port');
    }
    if (object.kind === 'HorizontalPodAutoscaler') {
      const target = spec?.scaleTargetRef as { kind: string; name: string };
      if (!named(target.kind, target.name)) problems.push('HorizontalPodAutoscaler: the target is missing');
    }
    if (object.kind === 'PodDisruptionBudget' || object.kind === 'NetworkPolicy') {
      const selector = ((spec?.selector ?? spec?.podSelector) as { matchLabels: Record<string, string> }).matchLabels;
      if (!matches(selector, pod.metadata.labels)) problems.push(`${object.kind}: the selector does not match the pods`);
    }
  }
  return problems;
}

// ---- the sidecar's own view of the ConfigMap ---------------------------------------------------

const SECRET_KEY = /(Secret|secret|password)$/;

/** What the sidecar container would find at a path: the content of a mounted Secret's key. */
function mountedFiles(rendered: Rendered, external: Record<string, Record<string, string>>): Map<string, string> {
  const deployment = find<Deployment>(rendered, 'Deployment');
  const volumes = new Map((deployment.spec.template.spec.volumes ?? []).map((volume) => [volume.name, volume]));
  const files = new Map<string, string>();
  for (const mount of container(deployment).volumeMounts ?? []) {
    const secretName = volumes.get(mount.name)?.secret?.secretName;
    if (!secretName) continue;
    const secret = rendered.objects.find((object) => object.kind === 'Secret' && object.metadata.name === secretName) as
      | (K8sObject & { data?: Record<string, string> })
      | undefined;
    const data = secret
      ? Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]))
      : external[secretName];
    if (!data) throw new Error(`the Secret ${secretName} is neither rendered nor given`);
    for (const [key, value] of Object.entries(data)) files.set(posix.join(mount.mountPath, key), value);
  }
  return files;
}

/**
 * The rendered config.yaml as the sidecar loads it: `…File` twins of secrets and applicationsFile
 * read from the mounted Secrets (what src/config/load.ts does), then the sidecar's schema.
 * Also returns every path the configuration names that no mounted Secret holds.
 */
function loadAsSidecar(rendered: Rendered, external: Record<string, Record<string, string>> = {}) {
  const files = mountedFiles(rendered, external);
  const missing: string[] = [];
  const read = (path: string) => {
    const content = files.get(path);
    if (content === undefined) missing.push(path);
    return content ?? '';
  };
  // Twins exist for the schema's secret keys, which sit in mappings; inside lists (applications) a key
  // such as hmacSecretFile is a key of its own. Every path is checked to be mounted either way.
  const resolve = (node: unknown, twins = true): unknown => {
    if (Array.isArray(node)) return node.map((item) => resolve(item, false));
    if (typeof node !== 'object' || node === null) return node;
    const out: Mapping = {};
    for (const [key, value] of Object.entries(node)) {
      const twin = key.replace(/File$/, '');
      if (twins && key !== twin && SECRET_KEY.test(twin) && typeof value === 'string') out[twin] = read(value).replace(/\r?\n$/, '');
      else if (twins && key === 'applicationsFile' && typeof value === 'string') out.applications = resolve(parseYaml(read(value)), false);
      else {
        if (key.endsWith('File') && typeof value === 'string') read(value);
        out[key] = resolve(value, twins);
      }
    }
    return out;
  };
  const tree = resolve(renderedConfig(rendered));
  return { result: configSchema.safeParse(tree), missing };
}

// ---- the tests ---------------------------------------------------------------------------------

const VALUES_FILES = ['sidecar', 'standalone', 'sentinel', 'cluster', 'observability', 'existing-secret', 'applications'];

t.test('the Go renderer builds offline from the Debian packages', async (t) => {
  const binary = await renderer;
  t.ok(existsSync(binary), binary);
});

t.test('Chart.yaml: apiVersion v2, appVersion = the package version', async (t) => {
  const chart = parseYaml(await readFile(join(CHART, 'Chart.yaml'), 'utf8')) as Mapping;
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  t.equal(chart.apiVersion, 'v2');
  t.equal(chart.name, 'oidc-sidecar');
  t.equal(chart.appVersion, pkg.version);
  t.match(chart.version, /^\d+\.\d+\.\d+/);
});

t.test('every values file passes the schema, renders to valid Kubernetes objects and cross-checks', async (t) => {
  const files = (await readdir(VALUES_DIR)).filter((file) => file.endsWith('.yaml')).map((file) => file.replace(/\.yaml$/, ''));
  t.same(files.sort(), [...VALUES_FILES].sort(), 'each values file in test/helm/values is listed here');
  for (const file of VALUES_FILES) {
    const rendered = await render(file);
    t.ok(rendered.objects.length >= 6, `${file}: ${kinds(rendered).join(', ')}`);
    t.same(await manifestProblems(rendered), [], `${file}: Kubernetes schemas and references`);
    for (const object of rendered.objects) {
      if (object.kind !== 'ServiceMonitor' && object.kind !== 'ConfigMap') t.equal(object.metadata.namespace, NAMESPACE, `${file}: ${object.kind} in the release namespace`);
    }
    t.match(rendered.notes, /Register this redirect URI at the identity provider:\n {2}https:\/\/portal\.example\.com\/oauth2\/callback/, `${file}: NOTES`);
  }
});

t.test('every values file also renders with a missing key as an error, as `helm lint --strict` does', async (t) => {
  for (const file of VALUES_FILES) {
    const result = await runRenderer(['--strict', '--json', ...(await valueArgs([file]))]);
    t.equal(result.code, 0, `${file}${result.code === 0 ? '' : `: ${result.stderr}`}`);
  }
});

t.test("the ConfigMap's config.yaml loads in the sidecar's schema once the Secrets are mounted", async (t) => {
  for (const file of VALUES_FILES) {
    const rendered = await render(file);
    const { result, missing } = loadAsSidecar(rendered, EXTERNAL_SECRETS);
    t.same(missing, [], `${file}: every file the configuration names is in a mounted Secret`);
    t.ok(result.success, `${file}: ${result.success ? 'valid' : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
});

t.test('every configuration key passes through verbatim: a complete configuration round-trips', async (t) => {
  // Every key with a default (filled in by the schema) and each optional key set here.
  const input = {
    listen: { host: '0.0.0.0', port: 8443 },
    metrics: { host: '0.0.0.0', port: 9090 },
    upstream: { url: 'http://portal.portal.svc.cluster.local:8080', timeoutSeconds: 30, websockets: false },
    publicUrl: 'https://portal.example.com',
    provider: {
      type: 'azure',
      azure: { tenant: 'organizations', allowedTenants: ['11111111-2222-3333-4444-555555555555'] },
      authorizationEndpoint: 'https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize',
      tokenEndpoint: 'https://login.microsoftonline.com/organizations/oauth2/v2.0/token',
      clientId: 'portal',
      clientSecret: 'the client secret',
      clientAuth: 'client_secret_post',
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      redirectPath: '/auth/callback',
    },
    session: {
      store: 'redis',
      secret: 'session-secret-0123456789-abcdefghijklmnop',
      cookie: { name: '__Secure-portal', type: 'session', domain: 'example.com', secure: true, sameSite: 'strict' },
      idleTimeoutMinutes: 15,
      maxLifetimeHours: 8,
      refreshTokens: false,
    },
    redis: { sentinel: { masterName: 'mymaster', nodes: ['sentinel-0:26379'] }, password: 'redis password', tls: true, keyPrefix: 'portal:' },
    identity: { headers: { 'X-Remote-User': 'preferred_username', 'X-Remote-Groups': ['groups', 'roles'] }, passAccessToken: true, passIdToken: true },
    authorization: { allowedGroups: ['portal-users'], allowedEmailDomains: ['example.com'] },
    routes: { public: ['^/static/', '^/favicon\\.ico$'], api: ['^/api/'], prefix: '/auth' },
    logout: { redirectUrl: 'https://portal.example.com/bye.html', idpLogout: false, revokeTokens: false },
    errors: { detailed: true },
    audit: { enabled: false, stream: { maxLength: 5000 } },
    log: { level: 'debug' },
    applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: 'scrypt$32768$8$1$dlIxx90oa5GIdl_8by3CdQ$3TVNWIGtZlffSi-KXsrbh5BdMG__k-qiic0Vw36IGbY', routes: ['^/odata/'] }],
    clients: {
      tokenTtlSeconds: 600,
      signingKeyFile: '/etc/oidc-sidecar/secrets/token-signing-key.pem',
      idpTokens: { issuer: 'https://login.microsoftonline.com/tenant/v2.0', audience: ['api://portal'], requiredRoles: ['Portal.Read'] },
    },
  };
  const parsed = configSchema.safeParse(input);
  t.ok(parsed.success, 'the input is a valid configuration');
  if (!parsed.success) return;
  const full = parsed.data as unknown as { provider: Mapping; session: Mapping; redis: Mapping };
  // The secrets go through the chart's Secret; everything else into config verbatim.
  const { clientSecret, ...provider } = full.provider;
  const { secret: sessionSecret, ...session } = full.session;
  const { password: redisPassword, ...redis } = full.redis;
  const config = { ...full, provider, session, redis };
  const rendered = await render({
    mode: 'standalone',
    replicaCount: 2,
    config,
    secrets: { clientSecret, sessionSecret, redisPassword, files: { 'token-signing-key.pem': 'PEM' } },
  });
  t.same(await manifestProblems(rendered), []);
  const deployment = find<Deployment>(rendered, 'Deployment');
  t.same(
    container(deployment).ports?.map((port) => [port.name, port.containerPort]),
    [
      ['http', 8443],
      ['metrics', 9090],
    ],
    'the container ports follow listen.port and metrics.port',
  );
  const { result, missing } = loadAsSidecar(rendered);
  t.same(missing, []);
  t.ok(result.success, 'the rendered configuration is valid');
  if (result.success) t.same(result.data, parsed.data, 'the sidecar reads back exactly the configuration given');
});

t.test('mode sidecar: the portal container beside the sidecar, the Service on the sidecar port', async (t) => {
  const rendered = await render('sidecar');
  const deployment = find<Deployment>(rendered, 'Deployment');
  const containers = deployment.spec.template.spec.containers;
  t.same(
    containers.map((c) => c.name),
    ['portal', SIDECAR],
  );
  t.equal(container(deployment, 'portal').image, 'registry.example.com/legacy/portal:7.4');
  t.same(container(deployment, 'portal').ports, [{ name: 'portal', containerPort: 8080, protocol: 'TCP' }]);
  t.same(container(deployment, 'portal').readinessProbe, { tcpSocket: { port: 'portal' }, periodSeconds: 5 }, 'ready once the portal accepts connections');
  t.same(container(deployment, 'portal').lifecycle, { preStop: { sleep: { seconds: 25 } } }, 'the portal serves until the sidecar has drained (25 s)');
  t.equal(deployment.spec.template.spec.terminationGracePeriodSeconds, 40);
  const ownProbe = find<Deployment>(await render('sidecar', { portal: { readinessProbe: { httpGet: { path: '/health', port: 'portal' } }, lifecycle: { preStop: { exec: { command: ['/stop'] } } } } }), 'Deployment');
  t.same(container(ownProbe, 'portal').readinessProbe, { httpGet: { path: '/health', port: 'portal' } }, "the values' own probe replaces it");
  t.same(container(ownProbe, 'portal').lifecycle, { preStop: { exec: { command: ['/stop'] } } });
  const recreate = find<Deployment>(await render('sidecar', { strategy: { type: 'Recreate' } }), 'Deployment');
  t.same(recreate.spec.strategy, { type: 'Recreate' }, 'Recreate: without the default rollingUpdate, which the API would refuse');
  t.equal(container(deployment).image, 'ghcr.io/example/oidc-sidecar:0.1.0', 'the sidecar image defaults to appVersion');
  t.same(container(deployment).args, ['--config', '/etc/oidc-sidecar/config.yaml']);
  t.equal(renderedConfig(rendered).upstream && (renderedConfig(rendered).upstream as Mapping).url, 'http://127.0.0.1:8080', 'the sidecar proxies to the portal on loopback');

  const service = find(rendered, 'Service') as K8sObject & { spec: { ports: { name: string; port: number; targetPort: string }[] } };
  t.same(
    service.spec.ports.map((p) => [p.name, p.port, p.targetPort]),
    [['http', 80, 'http']],
    'one port',
  );
  const target = containers.flatMap((c) => (c.ports ?? []).map((p) => ({ container: c.name, ...p }))).find((p) => p.name === service.spec.ports[0]?.targetPort);
  t.same(target, { container: SIDECAR, name: 'http', containerPort: 4180, protocol: 'TCP' }, 'the targetPort is the sidecar container port 4180');

  const policy = find(rendered, 'NetworkPolicy') as K8sObject & { spec: { ingress: { ports: { port: number }[] }[]; policyTypes: string[] } };
  t.same(
    policy.spec.ingress.flatMap((rule) => rule.ports.map((p) => p.port)),
    [4180, 9464],
    'only the sidecar ports are open to other pods, not the portal port',
  );
  t.same(policy.spec.policyTypes, ['Ingress'], 'egress is not restricted by default');
  t.same(
    kinds(rendered).sort(),
    ['ConfigMap', 'Deployment', 'NetworkPolicy', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceAccount'],
    'no Ingress, HPA, ServiceMonitor or dashboard by default',
  );
});

t.test('mode standalone: the sidecar alone, upstream = the portal Service (through tpl)', async (t) => {
  const rendered = await render('standalone');
  const deployment = find<Deployment>(rendered, 'Deployment');
  t.same(
    deployment.spec.template.spec.containers.map((c) => c.name),
    [SIDECAR],
  );
  t.equal(deployment.spec.replicas, 2);
  const config = renderedConfig(rendered) as { upstream: Mapping; redis: Mapping };
  t.equal(config.upstream.url, `http://${RELEASE}-portal.${NAMESPACE}.svc.cluster.local:8080`);
  t.equal(config.upstream.timeoutSeconds, 30);
  t.same(config.redis, { keyPrefix: 'portal:', passwordFile: '/etc/oidc-sidecar/secrets/redis-password', url: 'redis://redis-master.redis.svc.cluster.local:6379' });
});

t.test("mode standalone: with networkPolicy.portalPodSelector, only the sidecars reach the portal's pods", async (t) => {
  const rendered = await render('standalone', { networkPolicy: { portalPodSelector: { app: 'portal' } } });
  const portalPolicy = find<K8sObject & { spec: { podSelector: unknown; ingress: unknown[] } }>(rendered, 'NetworkPolicy', `${FULLNAME}-portal`);
  t.same(portalPolicy.spec.podSelector, { matchLabels: { app: 'portal' } });
  t.same(portalPolicy.spec.ingress, [{ from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'oidc-sidecar', 'app.kubernetes.io/instance': RELEASE } } }] }], 'from the sidecar pods only');
  t.same(kinds(await render('standalone')).filter((kind) => kind === 'NetworkPolicy'), ['NetworkPolicy'], 'none for the portal unless asked for');
  t.match(await renderError('sidecar', { networkPolicy: { portalPodSelector: { app: 'portal' } } }), /networkPolicy\.portalPodSelector is for mode standalone/);
});

t.test('several replicas are spread over nodes unless the values say how', async (t) => {
  const spreadOf = async (...sources: ValuesSource[]) => (find<Deployment>(await render(...sources), 'Deployment').spec.template.spec as unknown as Mapping).topologySpreadConstraints;
  t.match(await spreadOf('standalone'), [
    { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'oidc-sidecar', 'app.kubernetes.io/instance': RELEASE } } },
  ]);
  t.equal(await spreadOf('sidecar'), undefined, 'one replica: none');
  const own = [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: { app: 'x' } } }];
  t.same(await spreadOf('standalone', { topologySpreadConstraints: own }), own, 'values given: used as they are');
});

t.test('the sidecar container is locked down: non-root, read-only root, no capabilities, seccomp', async (t) => {
  for (const file of VALUES_FILES) {
    const deployment = find<Deployment>(await render(file), 'Deployment');
    const pod = deployment.spec.template.spec;
    const sidecar = container(deployment);
    t.match(sidecar.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    }, `${file}: container securityContext`);
    t.match(pod.securityContext, { seccompProfile: { type: 'RuntimeDefault' } }, `${file}: pod seccomp profile`);
    t.equal(pod.automountServiceAccountToken, false, `${file}: no service account token`);
    const tmp = sidecar.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
    t.ok(tmp && pod.volumes?.find((volume) => volume.name === tmp.name)?.emptyDir, `${file}: /tmp is an emptyDir`);
    t.ok(sidecar.volumeMounts?.filter((mount) => mount.mountPath !== '/tmp').every((mount) => mount.readOnly), `${file}: the other mounts are read-only`);
    t.match(sidecar, { resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } } }, `${file}: resources`);
  }
});

t.test('probes: liveness /healthz and readiness /readyz on the metrics port', async (t) => {
  const deployment = find<Deployment>(await render('sidecar'), 'Deployment');
  const sidecar = container(deployment);
  t.same(sidecar.livenessProbe?.httpGet, { path: '/healthz', port: 'metrics' });
  t.same(sidecar.readinessProbe?.httpGet, { path: '/readyz', port: 'metrics' });
  t.same(sidecar.startupProbe?.httpGet, { path: '/healthz', port: 'metrics' });
  t.same(sidecar.ports?.find((port) => port.name === 'metrics'), { name: 'metrics', containerPort: 9464, protocol: 'TCP' });
  const metrics = find(await render('sidecar'), 'Service', `${FULLNAME}-metrics`) as K8sObject & { spec: { type: string; ports: Mapping[] } };
  t.equal(metrics.spec.type, 'ClusterIP');
  t.same(metrics.spec.ports, [{ name: 'metrics', port: 9464, targetPort: 'metrics', protocol: 'TCP' }]);
});

t.test('checksum annotations roll the pods when the configuration, the Secret or the applications change', async (t) => {
  const annotations = async (...sources: ValuesSource[]) => find<Deployment>(await render(...sources), 'Deployment').spec.template.metadata.annotations;
  const base = await annotations('applications');
  t.match(base, { 'checksum/config': /^[0-9a-f]{64}$/, 'checksum/secret': /^[0-9a-f]{64}$/, 'checksum/applications': /^[0-9a-f]{64}$/ });
  t.same(await annotations('applications'), base, 'the same values give the same checksums');
  const config = await annotations('applications', { config: { routes: { public: ['^/public/'] } } });
  t.not(config['checksum/config'], base['checksum/config'], 'a configuration change');
  t.equal(config['checksum/secret'], base['checksum/secret']);
  const secret = await annotations('applications', { secrets: { sessionSecret: 'another-session-secret-0123456789-abcdef' } });
  t.not(secret['checksum/secret'], base['checksum/secret'], 'a Secret change');
  t.equal(secret['checksum/config'], base['checksum/config']);
  const apps = await annotations('applications', { applications: { files: { 'hmac-job.hmac': 'a-new-hmac-key-0123456789-0123456789-01' } } });
  t.not(apps['checksum/applications'], base['checksum/applications'], 'an applications change');
  const external = await annotations('existing-secret');
  t.ok(external['checksum/config'] && !external['checksum/secret'] && !external['checksum/applications'], 'no checksum of Secrets the chart does not render');
});

t.test("secrets reach the sidecar through the chart's Secret or an existing one, never the ConfigMap", async (t) => {
  const rendered = await render('standalone');
  const secret = find(rendered, 'Secret', `${FULLNAME}-secrets`) as K8sObject & { data: Record<string, string>; type: string };
  t.equal(secret.type, 'Opaque');
  t.same(Object.keys(secret.data).sort(), ['client-secret', 'redis-password', 'session-secret']);
  t.equal(Buffer.from(secret.data['session-secret'] ?? '', 'base64').toString(), 'session-secret-0123456789-abcdefghijklmnop');
  const configMap = JSON.stringify(find(rendered, 'ConfigMap'));
  for (const value of ['client-secret-from-azure', 'session-secret-0123456789', 'redis-password-0123']) t.notOk(configMap.includes(value), 'no secret in the ConfigMap');
  const deployment = find<Deployment>(rendered, 'Deployment');
  t.same(deployment.spec.template.spec.volumes?.find((volume) => volume.name === 'secrets')?.secret, { secretName: `${FULLNAME}-secrets` });
  t.match(renderedConfig(rendered), {
    provider: { clientSecretFile: '/etc/oidc-sidecar/secrets/client-secret' },
    session: { secretFile: '/etc/oidc-sidecar/secrets/session-secret' },
    redis: { passwordFile: '/etc/oidc-sidecar/secrets/redis-password' },
  });

  const external = await render('existing-secret');
  t.notOk(external.objects.some((object) => object.kind === 'Secret'), 'no Secret rendered with existingSecret');
  const pod = find<Deployment>(external, 'Deployment').spec.template.spec;
  t.same(pod.volumes?.find((volume) => volume.name === 'secrets')?.secret, { secretName: 'portal-oidc' });
  t.same(pod.volumes?.find((volume) => volume.name === 'applications')?.secret, { secretName: 'portal-oidc-applications' });
  const config = renderedConfig(external) as { provider: Mapping; session: Mapping; redis?: Mapping; applicationsFile: string };
  t.equal(config.session.secretFile, '/etc/oidc-sidecar/secrets/cookie-key', 'the key name comes from secrets.keys');
  t.notOk('clientSecretFile' in config.provider, 'no client secret with private_key_jwt');
  t.notOk(config.redis, 'no Redis password without Redis');
  t.equal(config.applicationsFile, '/etc/oidc-sidecar/apps/applications.yaml');
  t.equal(container(find<Deployment>(external, 'Deployment')).image, 'ghcr.io/example/oidc-sidecar:0.1.0-rc.1');
  t.match(container(find<Deployment>(external, 'Deployment'), 'portal').image, /^registry\.example\.com\/legacy\/portal@sha256:[0-9a-f]{64}$/);
});

t.test('applications and their certificates come from a Secret mounted at /etc/oidc-sidecar/apps', async (t) => {
  const rendered = await render('applications');
  const secret = find(rendered, 'Secret', `${FULLNAME}-applications`) as K8sObject & { data: Record<string, string> };
  t.same(Object.keys(secret.data).sort(), ['applications.yaml', 'hmac-job.hmac', 'legacy-job.der', 'reporting-job.cer', 'token-signing-key.pem']);
  t.equal(secret.data['legacy-job.der'], 'MIIBszCCAVmgAwIBAgIU', 'binary files are passed through as base64');
  const list = parseYaml(Buffer.from(secret.data['applications.yaml'] ?? '', 'base64').toString()) as { clientId: string }[];
  t.same(
    list.map((app) => app.clientId),
    ['reporting-job', 'hmac-job'],
  );
  const sidecar = container(find<Deployment>(rendered, 'Deployment'));
  t.same(sidecar.volumeMounts?.find((mount) => mount.name === 'applications'), { name: 'applications', mountPath: '/etc/oidc-sidecar/apps', readOnly: true });
  t.equal(renderedConfig(rendered).applicationsFile, '/etc/oidc-sidecar/apps/applications.yaml');
  const { result } = loadAsSidecar(rendered);
  t.same(result.success && result.data.applications.map((app) => app.clientId), ['reporting-job', 'hmac-job'], 'the sidecar reads the list from the Secret');

  const inline = await render('sidecar', { config: { applications: [] }, applications: { files: { 'a.cer': 'PEM' } } });
  t.notOk('applicationsFile' in renderedConfig(inline), 'config.applications wins: only the files are mounted');
  t.ok(find(inline, 'Secret', `${FULLNAME}-applications`));
  const none = await render('sidecar');
  t.notOk(none.objects.some((object) => object.metadata.name === `${FULLNAME}-applications`), 'no applications Secret without applications');
});

t.test('Redis wiring: URL, Sentinel and Cluster reach config.redis, and egress opens their ports', async (t) => {
  const egressPorts = (rendered: Rendered) => {
    const policy = find(rendered, 'NetworkPolicy') as K8sObject & { spec: { egress: { ports: { port: number; protocol: string }[] }[] } };
    return [...new Set(policy.spec.egress.flatMap((rule) => rule.ports.filter((p) => p.protocol === 'TCP').map((p) => p.port)))].sort((a, b) => a - b);
  };
  const standalone = await render('standalone');
  t.same(egressPorts(standalone), [53, 443, 6379, 8080], 'Redis URL port, the IdP, the portal Service, DNS');

  const sentinel = await render('sentinel');
  t.match(renderedConfig(sentinel), {
    redis: {
      sentinel: { masterName: 'mymaster', nodes: ['redis-sentinel-0.redis:26379', 'redis-sentinel-1.redis:26379', 'redis-sentinel-2.redis:26379'] },
      tls: true,
      passwordFile: '/etc/oidc-sidecar/secrets/redis-password',
    },
  });
  t.notOk('url' in (renderedConfig(sentinel).redis as Mapping));
  t.same(egressPorts(sentinel), [53, 443, 6379, 8080, 8443, 26379], 'Sentinel and master ports, the IdP port from issuerUrl');

  const cluster = await render('cluster');
  t.same((renderedConfig(cluster).redis as Mapping).cluster, { nodes: ['redis-cluster-0.redis:6379', 'redis-cluster-1.redis:6379', 'redis-cluster-2.redis:6380'] });
  t.notOk('passwordFile' in (renderedConfig(cluster).redis as Mapping), 'no password wired when none is given');
  t.same(egressPorts(cluster), [53, 443, 6379, 6380], 'cluster node ports; no portal port in mode sidecar');
  t.equal((renderedConfig(cluster).upstream as Mapping).url, 'http://127.0.0.1:9090');
});

t.test('ServiceMonitor, Grafana dashboard, Ingress, HPA and PDB when enabled, and only then', async (t) => {
  const rendered = await render('observability');
  const monitor = find(rendered, 'ServiceMonitor') as K8sObject & { spec: Mapping };
  t.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
  t.equal(monitor.metadata.namespace, 'monitoring');
  t.equal(monitor.metadata.labels?.release, 'prometheus');
  t.match(monitor.spec, {
    namespaceSelector: { matchNames: [NAMESPACE] },
    endpoints: [{ port: 'metrics', path: '/metrics', interval: '30s', scrapeTimeout: '10s' }],
  });

  const ingress = find(rendered, 'Ingress') as K8sObject & { spec: Mapping };
  t.match(ingress.spec, {
    ingressClassName: 'nginx',
    tls: [{ secretName: 'portal-tls', hosts: ['portal.example.com'] }],
    rules: [{ host: 'portal.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: FULLNAME, port: { name: 'http' } } } }] } }],
  });

  const hpa = find(rendered, 'HorizontalPodAutoscaler') as K8sObject & { spec: Mapping };
  t.equal(hpa.apiVersion, 'autoscaling/v2');
  t.match(hpa.spec, {
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: FULLNAME },
    minReplicas: 2,
    maxReplicas: 6,
    metrics: [
      { resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
      { resource: { name: 'memory', target: { type: 'Utilization', averageUtilization: 80 } } },
    ],
  });
  t.notOk('replicas' in find<Deployment>(rendered, 'Deployment').spec, 'the HPA owns the replica count');
  t.same((find(rendered, 'PodDisruptionBudget') as K8sObject & { spec: Mapping }).spec.minAvailable, 1);
  t.notOk('maxUnavailable' in (find(rendered, 'PodDisruptionBudget') as K8sObject & { spec: Mapping }).spec);

  const dashboard = find(rendered, 'ConfigMap', `${FULLNAME}-dashboard`) as K8sObject & { data: Record<string, string> };
  t.equal(dashboard.metadata.labels?.grafana_dashboard, '1');
  t.equal(dashboard.metadata.annotations?.grafana_folder, 'Security');
  const json = JSON.parse(dashboard.data['oidc-sidecar.json'] ?? '') as { panels: { title: string; targets?: { expr: string }[] }[]; uid: string };
  t.equal(json.uid, 'oidc-sidecar');
  const expressions = json.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr).join('\n');
  for (const metric of [
    'oidc_sidecar_http_requests_total',
    'oidc_sidecar_http_request_duration_seconds_bucket',
    'oidc_sidecar_upstream_request_duration_seconds_bucket',
    'oidc_sidecar_upstream_errors_total',
    'oidc_sidecar_auth_events_total',
    'oidc_sidecar_sessions_created_total',
    'oidc_sidecar_sessions_ended_total',
    'oidc_sidecar_session_store_operation_duration_seconds_bucket',
    'oidc_sidecar_session_store_errors_total',
    'oidc_sidecar_token_refresh_total',
    'oidc_sidecar_idp_request_duration_seconds_bucket',
    'oidc_sidecar_build_info',
  ]) {
    t.ok(expressions.includes(metric), `the dashboard shows ${metric}`);
  }
  t.match(expressions, /status=~"5\.\."/, 'an error-rate (5xx) panel');
  t.match(expressions, /histogram_quantile\(0\.99, sum by \(le\) \(rate\(oidc_sidecar_http_request_duration_seconds_bucket/, 'latency quantiles');
  t.same(
    JSON.parse(await readFile(join(CHART, 'dashboards/oidc-sidecar.json'), 'utf8')),
    json,
    'the ConfigMap holds dashboards/oidc-sidecar.json',
  );

  const plain = await render('standalone');
  for (const kind of ['ServiceMonitor', 'Ingress', 'HorizontalPodAutoscaler']) t.notOk(kinds(plain).includes(kind), `no ${kind} unless enabled`);
  t.notOk(plain.objects.some((object) => object.metadata.name === `${FULLNAME}-dashboard`), 'no dashboard unless enabled');
  const noPdb = await render('standalone', { podDisruptionBudget: { enabled: false }, networkPolicy: { enabled: false } });
  t.notOk(kinds(noPdb).includes('PodDisruptionBudget'), 'PDB can be disabled');
  t.notOk(kinds(noPdb).includes('NetworkPolicy'), 'NetworkPolicy can be disabled');
});

t.test('values that cannot work fail to render with an explanation', async (t) => {
  const cases: [string, ValuesSource[], RegExp][] = [
    [
      'replicaCount > 1 with sessions in memory',
      ['sidecar', { replicaCount: 3 }],
      /execution error at \(oidc-sidecar\/templates\/[^)]+\): config\.session\.store is "memory" \(the default\), which keeps sessions inside one pod, but replicaCount is 3: .*Set config\.session\.store: redis/,
    ],
    ['autoscaling with sessions in memory', ['sidecar', { autoscaling: { enabled: true } }], /config\.session\.store is "memory".* but autoscaling is enabled/],
    [
      'autoscaling in mode sidecar without the portal requesting CPU',
      ['sidecar', { autoscaling: { enabled: true }, config: { session: { store: 'redis' }, redis: { url: 'redis://redis:6379' } } }],
      /autoscaling on cpu in mode sidecar needs portal\.resources\.requests\.cpu: Kubernetes computes a pod's utilization only when every container of it requests the resource/,
    ],
    [
      'autoscaling on memory in mode sidecar without the portal requesting memory',
      ['sidecar', { autoscaling: { enabled: true, targetMemoryUtilizationPercentage: 80 }, portal: { resources: { requests: { cpu: '500m' } } }, config: { session: { store: 'redis' }, redis: { url: 'redis://redis:6379' } } }],
      /autoscaling on memory in mode sidecar needs portal\.resources\.requests\.memory/,
    ],
    ['mode standalone without upstream.url', ['standalone', { config: { upstream: null } }], /config\.upstream\.url is required in mode standalone: the URL of the portal's Service/],
    ['mode standalone with a loopback upstream', ['standalone', { config: { upstream: { url: 'http://127.0.0.1:8080' } } }], /a loopback address, but in mode standalone the portal is not in the sidecar's pod/],
    ['mode sidecar without the portal image', ['sidecar', { portal: { image: { repository: '' } } }], /portal\.image\.repository is required in mode sidecar/],
    ['mode sidecar without the portal version', ['sidecar', { portal: { image: { tag: '' } } }], /portal\.image\.tag \(or portal\.image\.digest\) is required in mode sidecar/],
    ['no session secret', ['sidecar', { secrets: { sessionSecret: '' } }], /secrets\.sessionSecret is required: at least 32 bytes/],
    ['a short session secret', ['sidecar', { secrets: { sessionSecret: 'short' } }], /secrets\.sessionSecret is 5 bytes long: it must be at least 32 bytes/],
    ['no client secret', ['sidecar', { secrets: { clientSecret: '' } }], /secrets\.clientSecret is required: the client secret registered at the identity provider/],
    ['applications twice', ['applications', { config: { applications: [] } }], /applications are listed twice, in applications\.list and in config\.applications/],
    ['applications list with an existing Secret', ['existing-secret', { applications: { list: [{ clientId: 'x', grantTypes: ['client_certificate'] }] } }], /applications\.existingSecret is set: put them into that Secret/],
    ['both PDB bounds', ['sidecar', { podDisruptionBudget: { minAvailable: 1 } }], /podDisruptionBudget: set either minAvailable or maxUnavailable, not both/],
    ['metrics on loopback', ['sidecar', { config: { metrics: { host: '127.0.0.1' } } }], /config\.metrics\.host is 127\.0\.0\.1, a loopback address: the probes and Prometheus could not reach the port/],
    ['the portal on the sidecar port', ['sidecar', { portal: { port: 4180 } }], /portal\.port 4180 is also a port of the sidecar/],
    [
      'a Redis password in the URL',
      ['sidecar', { config: { session: { store: 'redis' }, redis: { url: 'rediss://:s3cret@redis.example.com:6380' } } }],
      /config\.redis\.url holds a user name or password, which would be stored in plain text in a ConfigMap: .*secrets\.redisPassword/,
    ],
  ];
  for (const [name, sources, message] of cases) {
    t.match(await renderError(...sources), message, name);
  }
  // A plain secret in config is refused by the schema; the template says why if the schema is skipped.
  t.match(await renderError('sidecar', { config: { session: { secret: 'x'.repeat(40) } } }), /config\.session\.secret would be stored in plain text in a ConfigMap: remove it from config and set secrets\.sessionSecret/);
});

t.test('values.schema.json accepts the defaults and rejects bad values with the key named', async (t) => {
  t.same(await schemaProblems(), [], "the chart's own values.yaml");
  const cases: [string, Mapping, string][] = [
    ['an unknown mode', { mode: 'daemonset' }, 'mode: must be equal to one of the allowed values: "sidecar", "standalone"'],
    ['no replicas', { replicaCount: 0 }, 'replicaCount: must be >= 1'],
    ['a fractional replica count', { replicaCount: 1.5 }, 'replicaCount: must be integer'],
    ['a misspelt top-level key', { replicas: 2 }, '(values): must NOT have additional properties "replicas"'],
    ['a misspelt secrets key', { secrets: { sessionsecret: 'x' } }, 'secrets: must NOT have additional properties "sessionsecret"'],
    ['a bad pull policy', { image: { pullPolicy: 'Sometimes' } }, 'image.pullPolicy: must be equal to one of the allowed values: "Always", "IfNotPresent", "Never"'],
    ['a bad digest', { image: { digest: 'latest' } }, 'image.digest: must match pattern "^(sha256:[a-f0-9]{64})?$"'],
    ['a client secret in config', { config: { provider: { clientSecret: 'plain' } } }, 'config.provider.clientSecret: must NOT be valid'],
    ['a Redis password in config', { config: { redis: { password: 'plain' } } }, 'config.redis.password: must NOT be valid'],
    ['an unknown session store', { config: { session: { store: 'postgres' } } }, 'config.session.store: must be equal to one of the allowed values: "memory", "redis"'],
    ['a port out of range', { config: { listen: { port: 70000 } } }, 'config.listen.port: must be <= 65535'],
    ['a bad Service type', { service: { type: 'External' } }, 'service.type: must be equal to one of the allowed values: "ClusterIP", "NodePort", "LoadBalancer"'],
    ['a bad scrape interval', { serviceMonitor: { interval: '30 seconds' } }, 'serviceMonitor.interval: must match pattern "^([0-9]+(ms|s|m|h))+$"'],
    ['a bad PDB bound', { podDisruptionBudget: { maxUnavailable: 'half' } }, 'podDisruptionBudget.maxUnavailable: must match exactly one schema in oneOf'],
    ['an autoscaling target above 100', { autoscaling: { targetCPUUtilizationPercentage: 150 } }, 'autoscaling.targetCPUUtilizationPercentage: must be <= 100'],
    ['an application with a plain secret', { applications: { list: [{ clientId: 'x', grantTypes: ['client_credentials'], clientSecret: 's' }] } }, 'applications.list.0.clientSecret: must NOT be valid'],
    ['an ingress path without a slash', { ingress: { hosts: [{ host: 'a', paths: [{ path: 'app' }] }] } }, 'ingress.hosts.0.paths.0.path: must match pattern "^/"'],
  ];
  for (const [name, values, problem] of cases) {
    const problems = await schemaProblems(values);
    t.ok(problems.includes(problem), `${name}: ${problems.join(' | ')}`);
  }
});

t.test('the README documents every value of values.yaml', async (t) => {
  const readme = await readFile(join(CHART, 'README.md'), 'utf8');
  const values = parseYaml(await readFile(join(CHART, 'values.yaml'), 'utf8')) as Mapping;
  const leaves: string[] = [];
  const walk = (node: unknown, path: string[]) => {
    const isMapping = typeof node === 'object' && node !== null && !Array.isArray(node);
    if (isMapping && Object.keys(node).length > 0 && !['config', 'resources', 'securityContext', 'podSecurityContext', 'strategy', 'labels', 'annotations'].includes(path.at(-1) ?? '') && !path.at(-1)?.endsWith('Probe')) {
      for (const [key, child] of Object.entries(node)) walk(child, [...path, key]);
    } else {
      leaves.push(path.join('.'));
    }
  };
  walk(values, []);
  t.ok(leaves.length > 60, `${leaves.length} values`);
  for (const leaf of leaves) t.ok(readme.includes(`| \`${leaf}\``), `README row for ${leaf}`);
});
