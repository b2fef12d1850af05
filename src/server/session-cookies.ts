import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/schema.js';
import { TRANSACTION_TTL_MS } from '../oidc/transactions.js';
import { readCookie, serializeCookie, withoutCookies, type CookieAttributes } from './cookies.js';

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

  constructor(config: Config) {
    const cookie = config.session.cookie;
    const { secure } = cookie;
    this.name = cookie.name;
    this.bindingName = `${cookie.name}_csrf`;
    this.#ownNames = [this.name, this.bindingName];
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

  readBinding(req: IncomingMessage): string | undefined {
    return readCookie(req.headers.cookie, this.bindingName);
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

  /** Removes both cookies from the request before it goes to the portal. */
  stripFromRequest(req: IncomingMessage): void {
    const header = req.headers.cookie;
    if (!header?.includes(this.name)) return;
    const remaining = withoutCookies(header, this.#ownNames);
    if (remaining) req.headers.cookie = remaining;
    else delete req.headers.cookie;
  }
}
