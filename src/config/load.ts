import { readFile } from 'node:fs/promises';
import { parse as parseYaml, parseDocument, YAMLError } from 'yaml';
import { z } from 'zod';
import { applicationsSchema, configSchema, type ApplicationConfig, type Config } from './schema.js';

/** Prefix of the environment variables that set configuration keys. */
const ENV_PREFIX = 'OIDC_SIDECAR_';
/** The environment variable naming the configuration file. */
const CONFIG_FILE_VARIABLE = 'OIDC_SIDECAR_CONFIG';

/** Keys whose value is a secret: they accept a `…File` twin and are redacted when printed. */
const SECRET_KEY = /(Secret|secret|password)$/;
const REDACTED_KEY = /(Secret|secret|password)$|^clientSecretHash$/;
const REDACTED = '[redacted]';
const FILE_TWIN_SUFFIX = 'File';
const ENV_FILE_TWIN_SUFFIX = '_FILE';

/** The configuration is unusable: one line per problem, each naming its key. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG_INVALID';

  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  /** YAML (or JSON) file; default `env.OIDC_SIDECAR_CONFIG`; neither = environment variables only. */
  file?: string;
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

export interface LoadedConfig {
  config: Config;
  /** Accepted but questionable settings, one sentence each, for the log. */
  warnings: string[];
}

type Mapping = Record<string, unknown>;

/** Collects problem lines; a key with a loading problem is not reported again by validation. */
interface Problems {
  lines: string[];
  keys: Set<string>;
  /** Key name → where its value came from when not the file (an environment variable, applicationsFile). */
  sources: Map<string, string>;
}

/**
 * Reads the file, applies the environment overrides and the `…File` twins, validates with the
 * schema and fills in the defaults. Throws a `ConfigError` listing every problem found.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const env = options.env ?? process.env;
  const file = options.file ?? (env[CONFIG_FILE_VARIABLE] || undefined);
  const tree = file === undefined ? {} : await readConfigFile(file);
  const problems: Problems = { lines: [], keys: new Set(), sources: new Map() };
  await resolveFileTwins(tree, problems);
  await applyEnvOverrides(tree, env, problems);
  await inlineApplicationsFile(tree, problems);
  const result = configSchema.safeParse(tree, { error: operatorMessage });
  if (!result.success) {
    for (const issue of result.error.issues) addIssue(problems, issue);
  }
  if (problems.lines.length > 0 || !result.success) throw new ConfigError(problems.lines);
  return { config: result.data, warnings: configWarnings(result.data) };
}

/** `configuration error:` and one indented line per problem, for a terminal or a log. */
export function formatConfigProblems(problems: readonly string[]): string {
  return ['configuration error:', ...problems.map((line) => `  ${line}`)].join('\n') + '\n';
}

/** A deep copy with every secret value (and any password inside a URL) replaced by "[redacted]". */
export function redactConfig<T>(config: T): T {
  return redactValue(config) as T;
}

/** The environment variable of a key path: `['provider', 'clientSecret']` → `OIDC_SIDECAR_PROVIDER__CLIENT_SECRET`. */
export function envVariableName(path: readonly string[]): string {
  return ENV_PREFIX + path.map((key) => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__');
}

/** The path of every leaf key of the schema, e.g. `['session', 'cookie', 'sameSite']`. */
export function configKeyPaths(): string[][] {
  return SETTABLE_KEYS.map((key) => [...key.path]);
}

// ---- the file ----------------------------------------------------------------------------------

async function readConfigFile(file: string): Promise<Mapping> {
  const source = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError([`${file}: cannot read the configuration file (${error.code ?? error.message})`]);
  });
  const document = parseDocument(source);
  if (document.errors.length > 0) throw new ConfigError(document.errors.map((error) => yamlProblem(file, error)));
  const content: unknown = document.toJS();
  if (content === null || content === undefined) return {};
  if (!isMapping(content)) throw new ConfigError([`${file}: expected a mapping of configuration keys at the top level`]);
  return withoutEmptyKeys(content);
}

/** A key left empty (`secure:`, or a section whose keys are all commented out) counts as unset. */
function withoutEmptyKeys(mapping: Mapping): Mapping {
  const entries = Object.entries(mapping).filter(([, value]) => value !== null);
  return Object.fromEntries(entries.map(([key, value]) => [key, isMapping(value) ? withoutEmptyKeys(value) : value]));
}

/** The parser's own text quotes the offending source lines, which may hold a secret: keep only its first sentence. */
function yamlProblem(file: string, error: YAMLError): string {
  const reason = error.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '');
  const position = error.linePos ? `:${error.linePos[0].line}:${error.linePos[0].col}` : '';
  return `${file}${position}: YAML syntax error: ${reason}`;
}

// ---- the schema's keys -------------------------------------------------------------------------

interface SettableKey {
  path: string[];
  /** String and enum keys take an environment value as it is; the others parse it as YAML. */
  takesRawText: boolean;
  /** Text or a list (`clients.idpTokens.audience`): a YAML flow list (`[a, b]`), else the value as it is (`170086824411201793` is text). */
  textOrList: boolean;
}

const RAW_TEXT_TYPES = new Set(['string', 'enum', 'literal', 'template_literal']);

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) {
    return unwrap(schema.unwrap());
  }
  if (schema instanceof z.ZodPipe) return unwrap(schema.in);
  return schema;
}

/** Every leaf key of the schema, found by walking its object shapes (arrays and records are leaves). */
function settableKeys(schema: z.core.$ZodType, path: string[] = []): SettableKey[] {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodObject) {
    return Object.entries(inner.shape).flatMap(([key, child]) => settableKeys(child, [...path, key]));
  }
  const textOrList = inner instanceof z.ZodUnion && inner.options.some((option) => RAW_TEXT_TYPES.has(unwrap(option as z.core.$ZodType)._zod.def.type));
  return [{ path, takesRawText: RAW_TEXT_TYPES.has(inner._zod.def.type), textOrList }];
}

const SETTABLE_KEYS = settableKeys(configSchema);
const SECRET_KEYS = SETTABLE_KEYS.filter((key) => SECRET_KEY.test(key.path.at(-1) ?? ''));

interface EnvVariable {
  key: SettableKey;
  /** A `…_FILE` twin: the value names the file holding the secret. */
  namesFile: boolean;
}

const ENV_VARIABLES = new Map<string, EnvVariable>([
  ...SETTABLE_KEYS.map((key) => [envVariableName(key.path), { key, namesFile: false }] as const),
  ...SECRET_KEYS.map((key) => [envVariableName(key.path) + ENV_FILE_TWIN_SUFFIX, { key, namesFile: true }] as const),
]);

// ---- `…File` twins in the file -----------------------------------------------------------------

async function resolveFileTwins(tree: Mapping, problems: Problems): Promise<void> {
  for (const { path } of SECRET_KEYS) {
    const parent = mappingAt(tree, path.slice(0, -1));
    const key = path.at(-1) ?? '';
    const twin = key + FILE_TWIN_SUFFIX;
    if (parent === undefined || !(twin in parent)) continue;
    const secretPath = parent[twin];
    delete parent[twin];
    const keyName = formatKey(path);
    if (parent[key] !== undefined && parent[key] !== null) {
      addProblem(problems, keyName, `set either ${keyName} or ${keyName}${FILE_TWIN_SUFFIX}, not both`);
    } else if (typeof secretPath !== 'string' || secretPath === '') {
      addProblem(problems, keyName, `${keyName}${FILE_TWIN_SUFFIX} must be a file path`);
    } else {
      const secret = await readSecretFile(secretPath, `${keyName}${FILE_TWIN_SUFFIX}`, keyName, problems);
      if (secret !== undefined) parent[key] = secret;
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The file's text without one trailing newline; a problem naming the key and the path (never the
 * content) if unreadable, or if it is not text: raw random bytes read as UTF-8 would turn into
 * replacement characters, and a 16-byte key would pass for a 32-byte one.
 */
async function readSecretFile(file: string, namedBy: string, keyName: string, problems: Problems): Promise<string | undefined> {
  let content: Buffer;
  try {
    content = await readFile(file);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    addProblem(problems, keyName, `cannot read the file "${file}" named by ${namedBy} (${reason})`);
    return undefined;
  }
  try {
    return UTF8.decode(content).replace(/\r?\n$/, '');
  } catch {
    addProblem(problems, keyName, `the file "${file}" named by ${namedBy} is not text (UTF-8): write the secret as text, e.g. from \`openssl rand -base64 48\``);
    return undefined;
  }
}

// ---- environment overrides ---------------------------------------------------------------------

/**
 * What Kubernetes puts into every container of a namespace with a Service named `oidc-sidecar`
 * (service links: OIDC_SIDECAR_SERVICE_HOST, OIDC_SIDECAR_PORT_4180_TCP_ADDR, …): no configuration.
 */
const SERVICE_LINK = /^OIDC_SIDECAR_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$/;

/** Environment variables win over the file. An empty variable counts as unset. */
async function applyEnvOverrides(tree: Mapping, env: NodeJS.ProcessEnv, problems: Problems): Promise<void> {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === CONFIG_FILE_VARIABLE || SERVICE_LINK.test(name)) continue;
    const variable = ENV_VARIABLES.get(name);
    if (!variable) {
      addProblem(problems, undefined, `unknown environment variable ${name}: no configuration key has this name`);
      continue;
    }
    if (value === undefined || value === '') continue;
    const { key, namesFile } = variable;
    const override = namesFile ? await envSecretFile(key, name, value, env, problems) : envValue(key, name, value, problems);
    if (override === undefined) continue;
    setAt(tree, key.path, override);
    problems.sources.set(formatKey(key.path), name);
  }
}

function envValue(key: SettableKey, name: string, value: string, problems: Problems): unknown {
  if (key.takesRawText || (key.textOrList && !value.trimStart().startsWith('['))) return value;
  try {
    return parseYaml(value);
  } catch (error) {
    const reason = error instanceof YAMLError ? error.code : 'unreadable';
    addProblem(problems, formatKey(key.path), `${name} is not a valid YAML value (${reason})`);
    return undefined;
  }
}

async function envSecretFile(key: SettableKey, name: string, file: string, env: NodeJS.ProcessEnv, problems: Problems): Promise<string | undefined> {
  const keyName = formatKey(key.path);
  const valueVariable = envVariableName(key.path);
  if (env[valueVariable]) {
    addProblem(problems, keyName, `set either ${valueVariable} or ${name}, not both`);
    return undefined;
  }
  return readSecretFile(file, name, keyName, problems);
}

// ---- applicationsFile --------------------------------------------------------------------------

/** Reads `applicationsFile` into `applications`. */
async function inlineApplicationsFile(tree: Mapping, problems: Problems): Promise<void> {
  const file = tree.applicationsFile;
  if (typeof file !== 'string' || file === '') return;
  if (tree.applications !== undefined) {
    addProblem(problems, 'applications', 'set either applications or applicationsFile, not both');
    return;
  }
  try {
    const content: unknown = parseYaml(await readFile(file, 'utf8'));
    tree.applications = content ?? [];
    problems.sources.set('applications', `applicationsFile ${file}`);
  } catch (error) {
    const reason = error instanceof YAMLError ? yamlProblem(file, error) : `cannot read "${file}" (${(error as NodeJS.ErrnoException).code})`;
    addProblem(problems, 'applications', `applicationsFile: ${reason}`);
  }
}

/**
 * Reads and validates an `applicationsFile` on its own, as `loadConfig` would: for reloading the
 * applications while the sidecar runs. Throws a `ConfigError` listing every problem found.
 */
export async function loadApplicationsFile(file: string): Promise<ApplicationConfig[]> {
  const tree: Mapping = { applicationsFile: file };
  const problems: Problems = { lines: [], keys: new Set(), sources: new Map() };
  await inlineApplicationsFile(tree, problems);
  const result = applicationsSchema.safeParse(tree.applications, { error: operatorMessage });
  if (!result.success) {
    for (const issue of result.error.issues) addIssue(problems, { ...issue, path: ['applications', ...issue.path] });
  }
  if (problems.lines.length > 0 || !result.success) throw new ConfigError(problems.lines);
  return result.data;
}

// ---- validation problems -----------------------------------------------------------------------

const TYPE_NAMES: Record<string, string> = {
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  int: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  string: 'a string',
};

/** Messages for an operator; they never quote the value, which may be a secret in the wrong place. */
const operatorMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      if (issue.expected === 'int' && typeof issue.input === 'number') return 'must be a whole number';
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, received ${typeName(issue.input)}`;
    case 'too_small':
      return boundMessage(issue.origin, 'at least', issue.minimum, issue.inclusive);
    case 'too_big':
      return boundMessage(issue.origin, 'at most', issue.maximum, issue.inclusive);
    case 'invalid_value':
      return `must be one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'invalid_key':
      // A record's key (an identity header's name, say): what is wrong with it, not "Invalid key".
      return issue.issues[0]?.message;
    default:
      return undefined;
  }
};

function boundMessage(origin: string, bound: 'at least' | 'at most', limit: number | bigint, inclusive = true): string | undefined {
  if (origin === 'string') return limit === 1 && bound === 'at least' ? 'must not be empty' : `must be ${bound} ${limit} characters long`;
  if (origin === 'array') return `must list ${bound} ${limit} item${limit === 1 ? '' : 's'}`;
  if (origin === 'number' || origin === 'int') {
    if (inclusive) return `must be ${bound} ${limit}`;
    return `must be ${bound === 'at least' ? 'greater' : 'less'} than ${limit}`;
  }
  return undefined;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value}`;
}

function addIssue(problems: Problems, issue: z.core.$ZodIssue): void {
  const source = sourceNote(problems.sources, issue.path);
  if (issue.code === 'unrecognized_keys') {
    for (const key of issue.keys) addProblem(problems, undefined, `unknown key "${formatKey([...issue.path, key])}"${source}`);
    return;
  }
  const keyName = formatKey(issue.path);
  if (problems.keys.has(keyName)) return;
  addProblem(problems, undefined, `${keyName || 'configuration'}: ${issue.message}${source}`);
}

/** ` (from OIDC_SIDECAR_…)` when the key, or a key above it, was not set by the file. */
function sourceNote(sources: ReadonlyMap<string, string>, path: readonly PropertyKey[]): string {
  for (let length = path.length; length > 0; length--) {
    const source = sources.get(formatKey(path.slice(0, length)));
    if (source !== undefined) return ` (from ${source})`;
  }
  return '';
}

function addProblem(problems: Problems, keyName: string | undefined, message: string): void {
  problems.lines.push(keyName === undefined ? message : `${keyName}: ${message}`);
  if (keyName !== undefined) problems.keys.add(keyName);
}

/** `['applications', 0, 'clientId']` → `applications[0].clientId`. */
function formatKey(path: readonly PropertyKey[]): string {
  return path.map((segment, index) => (typeof segment === 'number' ? `[${segment}]` : `${index === 0 ? '' : '.'}${String(segment)}`)).join('');
}

// ---- warnings ----------------------------------------------------------------------------------

/** Azure tenant values that let users of other tenants sign in. */
const MULTI_TENANT = new Set(['common', 'organizations', 'consumers']);

function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  const { session, provider } = config;
  if (session.idleTimeoutMinutes > 60) {
    warnings.push(`session.idleTimeoutMinutes is ${session.idleTimeoutMinutes}: an idle time-out above 60 minutes is not recommended`);
  }
  if (!session.cookie.secure && config.publicUrl.startsWith('https:')) {
    warnings.push('session.cookie.secure is false although publicUrl is https: browsers would also send the session cookie over plain http');
  }
  if (provider.clientAuth === 'private_key_jwt' && provider.clientSecret) {
    warnings.push('provider.clientSecret is ignored: provider.clientAuth is "private_key_jwt"');
  }
  if (provider.type === 'azure' && MULTI_TENANT.has(provider.azure.tenant!.toLowerCase()) && provider.azure.allowedTenants.length === 0) {
    warnings.push(`provider.azure.tenant is "${provider.azure.tenant}" and provider.azure.allowedTenants is empty: users of any Entra ID tenant can sign in`);
  }
  if (provider.type === 'azure' && session.refreshTokens && !provider.scopes.includes('offline_access')) {
    warnings.push('provider.scopes has no offline_access: Azure AD then issues no refresh token, and every session ends when its access token expires (about an hour) although session.refreshTokens is on');
  }
  const issuesTokens = config.applications.some((app) => app.grantTypes.includes('client_credentials'));
  if (issuesTokens && session.store === 'redis' && !config.clients.signingKeyFile) {
    warnings.push('clients.signingKeyFile is unset: each replica signs tokens with its own key generated at start, so other replicas reject them');
  }
  return warnings;
}

// ---- small tree helpers ------------------------------------------------------------------------

function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function mappingAt(tree: Mapping, path: readonly string[]): Mapping | undefined {
  let node: unknown = tree;
  for (const key of path) node = isMapping(node) ? node[key] : undefined;
  return isMapping(node) ? node : undefined;
}

/** Sets a leaf, creating the mappings above it; a non-mapping in the way is left for validation to report. */
function setAt(tree: Mapping, path: readonly string[], value: unknown): void {
  let node = tree;
  for (const key of path.slice(0, -1)) {
    if (node[key] === undefined || node[key] === null) node[key] = {};
    const child = node[key];
    if (!isMapping(child)) return;
    node = child;
  }
  node[path.at(-1) ?? ''] = value;
}

function redactValue(value: unknown, key?: string): unknown {
  if (key !== undefined && REDACTED_KEY.test(key) && value !== undefined) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redactValue(item));
  if (isMapping(value)) return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, redactValue(item, name)]));
  if (typeof value === 'string') return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*:)[^@]*@/i, `$1${REDACTED}@`);
  return value;
}
