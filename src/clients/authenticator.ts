import type { IncomingHttpHeaders } from 'node:http';
import { decodeJwt, errors } from 'jose';
import type { RouteList } from '../server/paths.js';
import type { Clock } from '../session/store.js';
import { CERTIFICATE_TOKEN_HEADER, verifyCertificateToken } from './certificate-token.js';
import type { IdpTokenVerifier } from './idp-tokens.js';
import { bearerRefusals, certificateRefusals, type Refusal } from './reasons.js';
import type { ApplicationRegistry } from './registry.js';
import type { RevocationList } from './revocation.js';
import type { TokenIssuer } from './token-issuer.js';
import { tokenKey, VerifiedTokenCache } from './verified-cache.js';

/** Which header carried a machine credential: `Authorization: Bearer` or `X-ClientCertificate-Token`. */
export type MachineAuthMethod = 'bearer' | 'client-certificate';

/**
 * Who a machine request comes from, once its credential is verified. `method` is its
 * `X-Auth-Method` (DESIGN.md §4): `client-credentials` for a token the sidecar issued (client
 * credentials grant), `bearer` for the identity provider's, `client-certificate`.
 */
export interface MachineIdentity {
  clientId: string;
  method: MachineAuthMethod | 'client-credentials';
  /** Granted scopes (sidecar tokens, certificate tokens) or the IdP token's roles: `X-Forwarded-Roles`. */
  roles: readonly string[];
}

export interface CredentialFailure {
  method: MachineAuthMethod;
  refusal: Refusal;
  clientId?: string;
}

export type MachineAuthOutcome =
  | { status: 'absent' }
  /** `firstUse`: the credential was verified now rather than found in the cache. */
  | { status: 'authenticated'; identity: MachineIdentity; firstUse: boolean }
  | { status: 'refused'; failures: CredentialFailure[] };

/** A verified credential as cached: what the request needs, and what must still be checked per request. */
interface VerifiedCredential {
  identity: MachineIdentity;
  routes: RouteList;
  /** The `jti` of a sidecar token, checked against the revocation list. */
  jti?: string;
  revocationCheckedAt: number;
}

type Check = { ok: true; credential: VerifiedCredential; firstUse: boolean } | { ok: false; failure: CredentialFailure };
type Verification = { ok: true; credential: VerifiedCredential; expiresAtSeconds: number } | { ok: false; refusal: Refusal; clientId?: string };

export interface AuthenticatorOptions {
  registry: ApplicationRegistry;
  issuer: TokenIssuer;
  idp?: { verifier: IdpTokenVerifier; routes: RouteList };
  revocations: RevocationList;
  clock: Clock;
}

/** A verified credential is trusted this long at most before it is verified again (never past its `exp`). */
const CACHE_TTL_MS = 60_000;
const CACHE_MAX_ENTRIES = 10_000;
/**
 * How stale a cached sidecar token's "not revoked" may be: a revocation on another replica takes
 * effect here within this time (at once on the replica that revoked it), for one store read per
 * token and replica per interval instead of one per request.
 */
export const REVOCATION_RECHECK_MS = 1_000;
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Step 4 of the request pipeline (DESIGN.md §1, §5): `Authorization: Bearer` first (the sidecar's own
 * tokens, then the identity provider's), and only when it is absent or invalid the
 * `X-ClientCertificate-Token`. A credential is valid only on its application's routes.
 */
export class MachineAuthenticator {
  readonly #cache: VerifiedTokenCache<VerifiedCredential>;
  #registry: ApplicationRegistry;
  /** Bumped by every reload and revocation here. */
  #generation = 0;

  constructor(private readonly options: AuthenticatorOptions) {
    this.#registry = options.registry;
    this.#cache = new VerifiedTokenCache(CACHE_MAX_ENTRIES, options.clock);
  }

  /** The registered applications in use. */
  get registry(): ApplicationRegistry {
    return this.#registry;
  }

  /** Swaps in a reloaded registry; every cached verification is dropped (keys or routes may have changed). */
  useRegistry(registry: ApplicationRegistry): void {
    this.#registry = registry;
    this.#cache.clear();
    this.#generation++;
  }

  async authenticate(headers: IncomingHttpHeaders, path: string): Promise<MachineAuthOutcome> {
    const bearer = bearerCredential(headers.authorization);
    const certificateHeader = headers[CERTIFICATE_TOKEN_HEADER];
    const certificate = typeof certificateHeader === 'string' && certificateHeader !== '' ? certificateHeader : undefined;
    if (bearer === undefined && certificate === undefined) return { status: 'absent' };
    const failures: CredentialFailure[] = [];
    for (const [method, token] of [['bearer', bearer], ['client-certificate', certificate]] as const) {
      if (token === undefined) continue;
      const result = await this.#check(method, token, path);
      if (result.ok) return { status: 'authenticated', identity: result.credential.identity, firstUse: result.firstUse };
      failures.push(result.failure);
    }
    return { status: 'refused', failures };
  }

  /** Forgets a token this replica has cached (it was just revoked here). */
  forget(token: string): void {
    this.#cache.delete(cacheKey('bearer', token));
    this.#generation++;
  }

  async #check(method: MachineAuthMethod, token: string, path: string): Promise<Check> {
    const now = this.options.clock();
    const key = cacheKey(method, token);
    let credential = this.#cache.get(key);
    const firstUse = credential === undefined;
    if (!credential) {
      const generation = this.#generation;
      const verification = method === 'bearer' ? await this.#verifyBearer(token) : await this.#verifyCertificate(token);
      if (!verification.ok) return failed(method, verification.refusal, verification.clientId);
      credential = verification.credential;
      // A reload or a revocation while verifying must not be undone by caching what it ended.
      if (generation === this.#generation) this.#cache.set(key, credential, Math.min(verification.expiresAtSeconds * 1000, now + CACHE_TTL_MS));
    } else if (credential.jti !== undefined && now - credential.revocationCheckedAt >= REVOCATION_RECHECK_MS) {
      // Marked before the read: concurrent requests on the same token make one store read, not many.
      credential.revocationCheckedAt = now;
      if (await this.options.revocations.isRevoked(credential.jti)) {
        this.#cache.delete(key);
        return failed(method, bearerRefusals.revoked, credential.identity.clientId);
      }
    }
    if (!credential.routes.matches(path)) {
      return failed(method, method === 'bearer' ? bearerRefusals.route : certificateRefusals.route, credential.identity.clientId);
    }
    return { ok: true, credential, firstUse };
  }

  async #verifyBearer(token: string): Promise<Verification> {
    const issuer = unverifiedIssuer(token);
    if (issuer === null) return { ok: false, refusal: bearerRefusals.malformed };
    if (issuer === this.options.issuer.issuer) return this.#verifyIssuedToken(token);
    const idp = this.options.idp;
    if (!idp || issuer !== idp.verifier.issuer) return { ok: false, refusal: bearerRefusals.unknownIssuer };
    const result = await idp.verifier.verify(token);
    if (!result.ok) return result;
    const identity: MachineIdentity = { clientId: result.clientId, method: 'bearer', roles: result.roles };
    return { ok: true, credential: { identity, routes: idp.routes, revocationCheckedAt: 0 }, expiresAtSeconds: result.expiresAtSeconds };
  }

  async #verifyIssuedToken(token: string): Promise<Verification> {
    let claims;
    try {
      claims = await this.options.issuer.verify(token);
    } catch (error) {
      const { code, message } = error instanceof errors.JOSEError ? error : { code: 'invalid_token', message: 'the token is not acceptable' };
      return { ok: false, refusal: bearerRefusals.rejected(code, message) };
    }
    const app = this.#registry.get(claims.client_id);
    if (!app?.grantTypes.has('client_credentials')) return { ok: false, refusal: bearerRefusals.unknownClient, clientId: claims.client_id };
    if (await this.options.revocations.isRevoked(claims.jti)) return { ok: false, refusal: bearerRefusals.revoked, clientId: app.clientId };
    const roles = claims.scope.split(' ').filter((scope) => app.scopes.includes(scope));
    const credential = { identity: { clientId: app.clientId, method: 'client-credentials' as const, roles }, routes: app.routes, jti: claims.jti, revocationCheckedAt: this.options.clock() };
    return { ok: true, credential, expiresAtSeconds: claims.exp };
  }

  async #verifyCertificate(token: string): Promise<Verification> {
    const result = await verifyCertificateToken(token, this.#registry, Math.floor(this.options.clock() / 1000));
    if (!result.ok) return result;
    const { app, expiresAtSeconds } = result;
    const identity: MachineIdentity = { clientId: app.clientId, method: 'client-certificate', roles: app.scopes };
    return { ok: true, credential: { identity, routes: app.routes, revocationCheckedAt: 0 }, expiresAtSeconds };
  }
}

function failed(method: MachineAuthMethod, refusal: Refusal, clientId: string | undefined): Check {
  return { ok: false, failure: { method, refusal, clientId } };
}

/** The token of `Authorization: Bearer …`; `''` for a malformed Bearer header; undefined for none or another scheme. */
function bearerCredential(authorization: string | undefined): string | undefined {
  if (!authorization || !/^bearer(?: |$)/i.test(authorization)) return undefined;
  return BEARER.exec(authorization)?.[1] ?? '';
}

/** A token presented as a bearer token is never found as a verified certificate token, nor the other way round. */
function cacheKey(method: MachineAuthMethod, token: string): string {
  return `${method}:${tokenKey(token)}`;
}

/** The `iss` of a JWT before verification, to pick the verifier; null when it is not a JWT. */
function unverifiedIssuer(token: string): string | undefined | null {
  try {
    return decodeJwt(token).iss;
  } catch {
    return null;
  }
}
