import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/schema.js';
import { isBindingValue, TRANSACTION_TTL_MS } from '../oidc/transactions.js';
import { readCookie, serializeCookie, withoutCookies, type CookieAttributes } from './cookies.js';

const HOST_PREFIX = '__Host-';

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
  /** `name=`: a Cookie header holding only the session cookie starts with it. */
  readonly #sessionPrefix: string;

  constructor(config: Config) {
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
    // The binding must come back on the provider's top-level redirect, so it is never Strict.
    this.#bindingAttributes = {
      path: '/',
      secure,
      sameSite: cookie.sameSite === 'none' ? 'none' : 'lax',
      maxAgeSeconds: TRANSACTION_TTL_MS / 1000,
    };
  }

  readSession(req: IncomingMessage): string | undefined {
    return readCookie(req.headers.cookie, this.name);
  }

  /** The binding cookie's value; undefined when absent, or not one `newBindingValue` makes. */
  readBinding(req: IncomingMessage): string | undefined {
    const value = readCookie(req.headers.cookie, this.bindingName);
    return value !== undefined && isBindingValue(value) ? value : undefined;
  }

  session(value: string): string {
    return serializeCookie(this.name, value, this.#sessionAttributes);
  }

  clearSession(): string {
    return serializeCookie(this.name, '', { ...this.#sessionAttributes, maxAgeSeconds: 0 });
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
