import { createSecretKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ApplicationConfig } from '../config/schema.js';
import { unreadableFile } from '../config/files.js';
import { RouteList } from '../server/paths.js';
import { costsLessThan, decoySecretHash } from './secret-hash.js';

export type GrantType = ApplicationConfig['grantTypes'][number];

/** A registered OAuth 2 application with its keys read and imported once (DESIGN.md §5). */
export interface Application {
  clientId: string;
  grantTypes: ReadonlySet<GrantType>;
  clientSecretHash?: string;
  /** The registered certificate's RSA public key: verifies RS* certificate tokens. */
  certificateKey?: KeyObject;
  /** Verifies HS* certificate tokens. */
  hmacKey?: KeyObject;
  /** What a certificate token's `iss` must name: the certificate subject's CN (the client id without a certificate). */
  issuerName: string;
  routes: RouteList;
  scopes: readonly string[];
}

/** A registered application's files could not be used; one line per problem, each naming its key. */
export class ApplicationsError extends Error {
  readonly code = 'ERR_APPLICATIONS_INVALID';

  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ApplicationsError';
  }
}

const MIN_HMAC_KEY_BYTES = 32;
const MIN_RSA_BITS = 2048;

/** The registered applications by client id, immutable: a reload builds a new registry. */
export class ApplicationRegistry {
  readonly #byClientId: ReadonlyMap<string, Application>;
  /**
   * What a secret presented for an unknown client id — or one `clientCredentialsHash` gives no hash
   * for — is checked against: a hash no secret matches, as expensive to check as the costliest hash
   * of this registry, so that the time taken does not tell registered ids from others. Made with the
   * registry, so a reload brings its own.
   */
  readonly decoySecretHash: string;
  /**
   * Client ids whose secret hash is cheaper to check than the costliest (the decoy's): `/oauth2/token`
   * refuses a wrong secret for them sooner than for an unknown id, which tells them apart.
   */
  readonly cheaperSecretHashes: readonly string[];

  private constructor(applications: Application[]) {
    this.#byClientId = new Map(applications.map((app) => [app.clientId, app]));
    const registered = [...this.#byClientId.values()].map((app) => ({ clientId: app.clientId, hash: clientCredentialsHash(app) }));
    this.decoySecretHash = decoySecretHash(registered.map(({ hash }) => hash));
    this.cheaperSecretHashes = registered.filter(({ hash }) => hash !== undefined && costsLessThan(hash, this.decoySecretHash)).map(({ clientId }) => clientId);
  }

  /** Reads every certificate and key file; throws an `ApplicationsError` listing every unusable one. */
  static async load(configs: readonly ApplicationConfig[]): Promise<ApplicationRegistry> {
    const loaded = await Promise.all(configs.map((config, index) => loadApplication(config, `applications[${index}]`)));
    const problems = loaded.flatMap((entry) => entry.problems);
    if (problems.length > 0) throw new ApplicationsError(problems);
    return new ApplicationRegistry(loaded.map((entry) => entry.application));
  }

  get(clientId: string): Application | undefined {
    return this.#byClientId.get(clientId);
  }

  get size(): number {
    return this.#byClientId.size;
  }
}

/** The hash `/oauth2/token` checks an application's secret against: none unless it is registered for client_credentials. */
export function clientCredentialsHash(app: Application | undefined): string | undefined {
  return app?.grantTypes.has('client_credentials') ? app.clientSecretHash : undefined;
}

/** The files an application list names, for watching. */
export function applicationFiles(configs: readonly ApplicationConfig[]): string[] {
  return configs.flatMap((config) => [config.certificateFile, config.hmacSecretFile]).filter((file) => file !== undefined);
}

async function loadApplication(config: ApplicationConfig, key: string): Promise<{ application: Application; problems: string[] }> {
  const problems: string[] = [];
  const report = (message: string) => void problems.push(`${key}.${message}`);
  const certificate = config.certificateFile === undefined ? undefined : await readCertificate(config.certificateFile, (m) => report(`certificateFile: ${m}`));
  const hmacKey = config.hmacSecretFile === undefined ? undefined : await readHmacKey(config.hmacSecretFile, (m) => report(`hmacSecretFile: ${m}`));
  const application = {
    clientId: config.clientId,
    grantTypes: new Set(config.grantTypes),
    clientSecretHash: config.clientSecretHash,
    certificateKey: certificate?.key,
    hmacKey,
    issuerName: certificate?.commonName ?? config.clientId,
    routes: new RouteList(config.routes),
    scopes: config.scopes,
  };
  return { application, problems };
}

async function readCertificate(file: string, report: (message: string) => void): Promise<{ key: KeyObject; commonName: string } | undefined> {
  const content = await readFile(file).catch((error: NodeJS.ErrnoException) => void report(unreadableFile(file, error)));
  if (content === undefined) return undefined;
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(content);
  } catch {
    return void report(`"${file}" is not a PEM or DER X.509 certificate`);
  }
  const key = certificate.publicKey;
  if (key.asymmetricKeyType !== 'rsa' || (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
    return void report(`"${file}" must hold an RSA key of at least ${MIN_RSA_BITS} bits (RS256/384/512 tokens)`);
  }
  const commonName = subjectCommonName(certificate.subject);
  if (commonName === undefined) return void report(`"${file}" has no subject common name (CN), which tokens name as their issuer`);
  return { key, commonName };
}

/**
 * The subject's CN as the certificate holds it. Node writes the subject one RDN a line, the
 * attributes of a multi-valued RDN joined by ` + `, and values escaped as RFC 4514 has it
 * (`CN=Acme\, Inc`): the escapes are undone, as tokens name the CN itself.
 */
function subjectCommonName(subject: string): string | undefined {
  for (const line of subject.split('\n')) {
    const attribute = rdnAttributes(line).find((entry) => entry.startsWith('CN='));
    if (attribute !== undefined) return unescapeAttributeValue(attribute.slice('CN='.length)) || undefined;
  }
  return undefined;
}

/** The `KEY=value` attributes of one RDN line: split at the unescaped ` + `. */
function rdnAttributes(line: string): string[] {
  const attributes: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\\') {
      current += line.slice(i, i + 2);
      i++;
    } else if (line.startsWith(' + ', i)) {
      attributes.push(current);
      current = '';
      i += 2;
    } else {
      current += line[i];
    }
  }
  return [...attributes, current];
}

/** `\,` → `,`; a run of `\HH` → the UTF-8 text of those bytes. */
function unescapeAttributeValue(value: string): string {
  return value.replace(/((?:\\[0-9A-Fa-f]{2})+)|\\(.)/gs, (_, hex: string | undefined, char: string | undefined) =>
    hex !== undefined ? Buffer.from(hex.replaceAll('\\', ''), 'hex').toString('utf8') : char!,
  );
}

/** The file's bytes without one trailing newline, like every other `…File` secret. */
async function readHmacKey(file: string, report: (message: string) => void): Promise<KeyObject | undefined> {
  const content = await readFile(file).catch((error: NodeJS.ErrnoException) => void report(unreadableFile(file, error)));
  if (content === undefined) return undefined;
  const key = content.subarray(0, content.length - trailingNewlineLength(content));
  if (key.length < MIN_HMAC_KEY_BYTES) return void report(`"${file}" must hold at least ${MIN_HMAC_KEY_BYTES} bytes`);
  return createSecretKey(key);
}

function trailingNewlineLength(content: Buffer): number {
  if (content.at(-1) !== 0x0a) return 0;
  return content.at(-2) === 0x0d ? 2 : 1;
}
