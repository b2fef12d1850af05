import type { IncomingHttpHeaders } from 'node:http';
import { DEFAULT_IDENTITY_HEADERS } from '../config/schema.js';
import { hasUnverifiedEmail, type Claims, type Session } from '../session/session.js';

/** Headers the sidecar injects besides the configured identity headers (DESIGN.md §4). */
export const CLIENT_ID_HEADER = 'x-forwarded-client-id';
export const AUTH_METHOD_HEADER = 'x-auth-method';
export const ACCESS_TOKEN_HEADER = 'x-forwarded-access-token';

/** `identity.passAccessToken` / `identity.passIdToken`. */
export interface TokenForwarding {
  passAccessToken: boolean;
  passIdToken: boolean;
}

interface HeaderRule {
  /** Lower-case header name. */
  name: string;
  /** Claims tried in order; the first present one gives the value. */
  claims: string[];
  /** Only values that look like an e-mail address qualify (X-Forwarded-Email's `upn` fallback). */
  addressesOnly: boolean;
}

const EMAIL_ADDRESS = /^[^@\s]+@[^@\s]+$/;

/**
 * The identity-header plan, built once from configuration: which headers to strip from every
 * incoming request, and how to fill the configured ones from a user's claims.
 */
export class IdentityHeaders {
  readonly #rules: HeaderRule[];
  readonly #spoofable: Set<string>;
  readonly #tokens: TokenForwarding;
  readonly #bySession = new WeakMap<Session, Record<string, string>>();

  constructor(configured: Record<string, string | string[]>, tokens: TokenForwarding = { passAccessToken: false, passIdToken: false }) {
    this.#tokens = tokens;
    this.#rules = Object.entries(configured).map(([name, claims]) => ({
      name: name.toLowerCase(),
      claims: Array.isArray(claims) ? claims : [claims],
      addressesOnly: name.toLowerCase() === 'x-forwarded-email',
    }));
    // The default names are stripped even when a custom map leaves them out: a portal may still
    // trust them, and a client must never be able to set them.
    this.#spoofable = new Set([
      ...this.#rules.map((rule) => rule.name),
      ...Object.keys(DEFAULT_IDENTITY_HEADERS).map((name) => name.toLowerCase()),
      CLIENT_ID_HEADER,
      AUTH_METHOD_HEADER,
      ACCESS_TOKEN_HEADER,
    ]);
  }

  /**
   * Deletes from `headers` every header the sidecar may inject, in any case and with `_` for `-`
   * (Node already lower-cases names; `X_Forwarded_User` arrives as `x_forwarded_user`).
   */
  strip(headers: IncomingHttpHeaders): void {
    for (const name in headers) {
      if (this.#spoofable.has(name) || (name.includes('_') && this.#spoofable.has(name.replaceAll('_', '-')))) {
        delete headers[name];
      }
    }
  }

  /**
   * Every header a browser session's request carries to the portal: its identity headers,
   * `X-Auth-Method: session` and, when configured, its tokens. Built once per session object (the
   * session manager hands out the same object while the record is unchanged); do not modify.
   */
  forSession(session: Session): Readonly<Record<string, string>> {
    let headers = this.#bySession.get(session);
    if (!headers) {
      headers = this.fromClaims(session.claims);
      headers[AUTH_METHOD_HEADER] = 'session';
      if (this.#tokens.passAccessToken && session.accessToken) headers[ACCESS_TOKEN_HEADER] = session.accessToken;
      if (this.#tokens.passIdToken && session.idToken) headers.authorization = `Bearer ${session.idToken}`;
      this.#bySession.set(session, headers);
    }
    return headers;
  }

  /** The configured identity headers for `claims`, values encoded per DESIGN.md §4; absent claims omitted. */
  fromClaims(claims: Claims): Record<string, string> {
    const result: Record<string, string> = {};
    for (const rule of this.#rules) {
      const value = this.#valueFor(rule, claims);
      if (value !== undefined) result[rule.name] = value;
    }
    return result;
  }

  #valueFor(rule: HeaderRule, claims: Claims): string | undefined {
    for (const claim of rule.claims) {
      if (claim === 'email' && hasUnverifiedEmail(claims)) continue;
      const value = claims[claim];
      if (rule.addressesOnly && !(typeof value === 'string' && EMAIL_ADDRESS.test(value))) continue;
      const headerValue = claimHeaderValue(value);
      if (headerValue !== undefined) return headerValue;
    }
    return undefined;
  }
}

/**
 * A claim as a header value, encoded (encodeHeaderValue); a list as its items joined with `,`, a `,`
 * inside an item encoded as `%2C` — a group named `Users,Admins` must not read as two. Objects and
 * empty values count as absent.
 */
function claimHeaderValue(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : encodeHeaderValue(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    const items = value.filter((item) => typeof item === 'string' || typeof item === 'number').map((item) => encodeHeaderValue(String(item)).replaceAll(',', '%2C'));
    return items.length > 0 ? items.join(',') : undefined;
  }
  return undefined;
}

/**
 * The header map in force: the configured one, except that with Azure AD the default
 * `X-Forwarded-Subject` carries the user's object id (`oid`), as DESIGN.md §4 says.
 */
export function identityHeaderMap(configured: Record<string, string | string[]>, providerType: 'oidc' | 'azure'): Record<string, string | string[]> {
  if (providerType !== 'azure' || configured['X-Forwarded-Subject'] !== DEFAULT_IDENTITY_HEADERS['X-Forwarded-Subject']) return configured;
  return { ...configured, 'X-Forwarded-Subject': ['oid', 'sub'] };
}

/**
 * Percent-encodes `%`, control characters and every non-ASCII character (as UTF-8), so that
 * `decodeURIComponent(value)` gives back the exact claim and the header stays one clean line.
 */
export function encodeHeaderValue(text: string): string {
  let needsEncoding = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code >= 0x7f || code === 0x25) {
      needsEncoding = true;
      break;
    }
  }
  if (!needsEncoding) return text;
  let result = '';
  for (const char of text.toWellFormed()) {
    const code = char.codePointAt(0)!;
    result += code < 0x20 || code >= 0x7f || code === 0x25 ? encodeURIComponent(char) : char;
  }
  return result;
}
