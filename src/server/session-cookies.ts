import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/schema.js';
import { isBindingValue, TRANSACTION_TTL_MS } from '../oidc/transactions.js';
import { readCookie, readCookies, serializeCookie, withoutCookies, type CookieAttributes } from './cookies.js';

const HOST_PREFIX = '__Host-';
/** Session cookies of the same name looked at, at most: a few deployments sharing a parent domain. */
const MAX_SAME_NAME = 4;

/**
 * The sidecar's two cookies: the session ticket, and the browser binding that ties login
 * transactions to the browser that started them. Attributes are computed once from configuration.
 */
export class SessionCookies {
  readonly name: string;
  readonly bindingName: string;
  readonly #sessionAttributes: CookieAttributes;
  readonly #bindingAttributes: CookieAttributes;
  readonly #ownNames: readonly string[];
  /**
   * With `domain` set, a host-only cookie of the same name from before would be sent first and
   * hide the new one: it is ended with every session cookie set or cleared.
   */
  readonly #hostOnlyEnded: readonly string[];
  /** `name=`: a Cookie header holding only the session cookie starts with it. */
  readonly #sessionPrefix: string;

  /**
   * `isGenuine`: whether a session cookie value is signed with this sidecar's secret (Sessions, which
   * remembers the answer per value).
   */
  constructor(
    config: Config,
    private readonly isGenuine: (value: string) => boolean = () => true,
  ) {
    const cookie = config.session.cookie;
    const { secure } = cookie;
    this.name = cookie.name;
    // `__Host-`: a cookie no sibling subdomain can set (it would have to carry a Domain). The binding
    // is all that stops login CSRF: one planted from `evil.example.com` must not count.
    this.bindingName = secure && !cookie.name.startsWith(HOST_PREFIX) ? `${HOST_PREFIX}${cookie.name}_csrf` : `${cookie.name}_csrf`;
    this.#ownNames = [this.name, this.bindingName];
    this.#sessionPrefix = `${this.name}=`;
    this.#sessionAttributes = {
      path: '/',
      domain: cookie.domain,
      secure,
      sameSite: cookie.sameSite,
      maxAgeSeconds: cookie.type === 'persistent' ? config.session.maxLifetimeHours * 3600 : undefined,
    };
    this.#hostOnlyEnded = cookie.domain ? [serializeCookie(this.name, '', { ...this.#sessionAttributes, domain: undefined, maxAgeSeconds: 0 })] : [];
    // The binding must come back on the provider's top-level redirect, so it is never Strict.
    this.#bindingAttributes = {
      path: '/',
      secure,
      sameSite: cookie.sameSite === 'none' ? 'none' : 'lax',
      maxAgeSeconds: TRANSACTION_TTL_MS / 1000,
    };
  }

  /**
   * The session cookie's value. The browser sends every cookie of the name that applies, the
   * oldest first — one set for a parent domain by another deployment, say: the first one this
   * sidecar signed wins, so that the other does not send the user to sign in again and again.
   */
  readSession(req: IncomingMessage): string | undefined {
    const { cookie } = req.headers;
    const first = readCookie(cookie, this.name);
    if (first === undefined || this.isGenuine(first)) return first;
    // The first was just found not genuine: not checked again (an invalid value is not remembered).
    return readCookies(cookie, this.name, MAX_SAME_NAME).find((value, index) => index > 0 && this.isGenuine(value)) ?? first;
  }

  /** The binding cookie's value; undefined when absent, or not one `newBindingValue` makes. */
  readBinding(req: IncomingMessage): string | undefined {
    const value = readCookie(req.headers.cookie, this.bindingName);
    return value !== undefined && isBindingValue(value) ? value : undefined;
  }

  /** Set-Cookie values for a new session: its cookie, and the end of a host-only one left from before `domain` was set. */
  session(value: string): string[] {
    // The ending first: a client that keeps cookies by name alone keeps the session's.
    return [...this.#hostOnlyEnded, serializeCookie(this.name, value, this.#sessionAttributes)];
  }

  /** Set-Cookie values that end the session cookie (and a host-only one left from before `domain` was set). */
  clearSession(): string[] {
    return [...this.#hostOnlyEnded, serializeCookie(this.name, '', { ...this.#sessionAttributes, maxAgeSeconds: 0 })];
  }

  binding(value: string): string {
    return serializeCookie(this.bindingName, value, this.#bindingAttributes);
  }

  /** The Cookie header for the portal: the client's without the sidecar's two cookies; undefined when none is left. */
  withoutOwn(header: string | undefined): string | undefined {
    if (!header?.includes(this.name)) return header;
    if (!header.includes(';') && header.startsWith(this.#sessionPrefix)) return undefined;
    return withoutCookies(header, this.#ownNames) || undefined;
  }
}
