import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { unescapeHtml } from './html.js';

/**
 * Browsing without a browser, for tests: `navigate` makes one request the way a browser's top-level
 * navigation does (Node's `fetch` cannot: it always sends `Sec-Fetch-Mode: cors`), and the sign-in
 * and sign-out helpers use it to follow the IdP's redirects by hand, carry cookies in a CookieJar
 * and submit the IdP's forms like a user would.
 */

const MAX_HOPS = 20;

interface StoredCookie {
  name: string;
  value: string;
  /** The host it was set by, or the Domain attribute (then `domainMatch`). */
  host: string;
  domainMatch: boolean;
  path: string;
  expiresAt: number;
}

/** A minimal cookie store for tests: host, path and expiry are honoured; ports are not (as in browsers). */
export class CookieJar {
  #cookies: StoredCookie[] = [];

  /** Keeps every `Set-Cookie` of a response (a fetch Response, or the header lines) received for `url`. */
  store(response: Response | readonly string[], url: string | URL): void {
    const lines = 'headers' in response ? response.headers.getSetCookie() : response;
    for (const line of lines) this.#set(parseSetCookie(line, new URL(url)));
  }

  /** The `Cookie` header to send to `url`, or undefined when no cookie applies. */
  header(url: string | URL): string | undefined {
    const cookies = this.#matching(new URL(url));
    return cookies.length > 0 ? cookies.map(({ name, value }) => `${name}=${value}`).join('; ') : undefined;
  }

  /** The value of cookie `name` that would be sent to `url`. */
  get(name: string, url: string | URL): string | undefined {
    return this.#matching(new URL(url)).find((cookie) => cookie.name === name)?.value;
  }

  #set(cookie: StoredCookie): void {
    this.#cookies = this.#cookies.filter((old) => !(old.name === cookie.name && old.host === cookie.host && old.path === cookie.path));
    if (cookie.expiresAt > Date.now()) this.#cookies.push(cookie);
  }

  #matching(url: URL): StoredCookie[] {
    const now = Date.now();
    return this.#cookies.filter(
      (cookie) => cookie.expiresAt > now && hostMatches(cookie, url.hostname) && pathMatches(cookie.path, url.pathname),
    );
  }
}

function parseSetCookie(line: string, url: URL): StoredCookie {
  const [pair = '', ...attributes] = line.split(';').map((part) => part.trim());
  const separator = pair.indexOf('=');
  const cookie: StoredCookie = {
    name: pair.slice(0, separator),
    value: pair.slice(separator + 1),
    host: url.hostname,
    domainMatch: false,
    path: url.pathname.slice(0, url.pathname.lastIndexOf('/')) || '/',
    expiresAt: Infinity,
  };
  for (const attribute of attributes) applyAttribute(cookie, attribute);
  return cookie;
}

function applyAttribute(cookie: StoredCookie, attribute: string): void {
  const [key = '', value = ''] = attribute.split('=', 2);
  switch (key.toLowerCase()) {
    case 'path':
      if (value.startsWith('/')) cookie.path = value;
      break;
    case 'domain':
      cookie.host = value.replace(/^\./, '').toLowerCase();
      cookie.domainMatch = true;
      break;
    case 'expires':
      if (cookie.expiresAt === Infinity) cookie.expiresAt = Date.parse(value);
      break;
    case 'max-age':
      cookie.expiresAt = Date.now() + Number(value) * 1000;
      break;
  }
}

function hostMatches(cookie: StoredCookie, hostname: string): boolean {
  return hostname === cookie.host || (cookie.domainMatch && hostname.endsWith(`.${cookie.host}`));
}

function pathMatches(cookiePath: string, requestPath: string): boolean {
  if (requestPath === cookiePath) return true;
  return requestPath.startsWith(cookiePath) && (cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/');
}

/** One response, not followed: `location` is absolute when present. */
export interface Page {
  url: string;
  status: number;
  headers: IncomingHttpHeaders;
  location?: string;
  body: string;
}

export interface NavigateOptions {
  /** Sent as `application/x-www-form-urlencoded` with POST (a form submission). */
  form?: URLSearchParams;
  /** Extra or replacing request headers. */
  headers?: Record<string, string>;
}

/**
 * One top-level navigation to `url`, as a browser makes it (`Accept: text/html…`,
 * `Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`, the jar's cookies), storing the cookies
 * it sets. Redirects are returned, not followed.
 */
export async function navigate(url: string, cookieJar = new CookieJar(), options: NavigateOptions = {}): Promise<Page> {
  const target = new URL(url);
  const body = options.form?.toString();
  const headers: Record<string, string> = {
    accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8',
    'sec-fetch-mode': 'navigate',
    'sec-fetch-dest': 'document',
    ...(body !== undefined && { 'content-type': 'application/x-www-form-urlencoded' }),
    ...options.headers,
  };
  const cookie = cookieJar.header(target);
  if (cookie) headers.cookie = cookie;
  const { setCookie, ...page } = await sendRequest(target, headers, body);
  cookieJar.store(setCookie, target);
  return page;
}

function sendRequest(target: URL, headers: Record<string, string>, body?: string): Promise<Page & { setCookie: string[] }> {
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(target, { method: body === undefined ? 'GET' : 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const { location, 'set-cookie': setCookie = [] } = res.headers;
        resolve({
          url: target.href,
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          setCookie,
          ...(location !== undefined && { location: new URL(location, target).href }),
        });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Signs in at the IdP: follows `authorizationUrl` (the URL a relying party redirected to), submits
 * the login form when one is shown (an existing IdP session needs none), and resolves with the URL
 * the IdP finally redirects to on another origin — the relying party's redirect URI with `code` and
 * `state` — without requesting it. Rejects, with the page's message, when the sign-in is refused.
 */
export async function signInWithoutBrowser(
  authorizationUrl: string,
  username: string,
  password: string,
  cookieJar = new CookieJar(),
): Promise<string> {
  return answerLoginForm(authorizationUrl, new URLSearchParams({ action: 'login', login: username, password }), cookieJar);
}

/** Like signInWithoutBrowser, but presses Cancel: resolves with the redirect carrying `error=access_denied`. */
export async function cancelSignInWithoutBrowser(authorizationUrl: string, cookieJar = new CookieJar()): Promise<string> {
  return answerLoginForm(authorizationUrl, new URLSearchParams({ action: 'cancel' }), cookieJar);
}

/**
 * Completes RP-initiated logout: opens `endSessionUrl` (the IdP's end_session endpoint with its
 * parameters), submits the confirmation form the page holds, and resolves with where the IdP
 * redirects afterwards (the `post_logout_redirect_uri` with `state`, or its own success page).
 */
export async function signOutWithoutBrowser(endSessionUrl: string, cookieJar = new CookieJar()): Promise<string> {
  const page = await navigate(endSessionUrl, cookieJar);
  const form = parseForm(page);
  if (!form) throw new Error(`sign-out page has no form: ${page.status} ${pageMessage(page.body)}`);
  const answer = await navigate(form.action, cookieJar, { form: form.fields });
  if (!answer.location) throw new Error(`sign-out did not complete: ${answer.status} ${pageMessage(answer.body)}`);
  return answer.location;
}

async function answerLoginForm(authorizationUrl: string, answer: URLSearchParams, jar: CookieJar): Promise<string> {
  const idpOrigin = new URL(authorizationUrl).origin;
  let page = await navigate(authorizationUrl, jar);
  let answered = false;
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    if (page.location) {
      if (new URL(page.location).origin !== idpOrigin) return page.location;
      page = await navigate(page.location, jar);
      continue;
    }
    const form = parseForm(page);
    if (answered || !form) throw new Error(`sign-in did not complete: ${page.status} ${pageMessage(page.body)}`);
    page = await navigate(form.action, jar, { form: answer });
    answered = true;
  }
  throw new Error(`sign-in did not complete: more than ${MAX_HOPS} redirects`);
}

/** The first form of a page: its absolute action URL and its hidden fields. */
function parseForm(page: Page): { action: string; fields: URLSearchParams } | undefined {
  const action = /<form\b[^>]*\baction="([^"]*)"/.exec(page.body)?.[1];
  if (action === undefined) return undefined;
  const hidden = [...page.body.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)"/g)];
  return {
    action: new URL(unescapeHtml(action), page.url).href,
    fields: new URLSearchParams(hidden.map(([, name = '', value = '']): [string, string] => [unescapeHtml(name), unescapeHtml(value)])),
  };
}

/** The page's alert text, else its first heading, for error messages. */
function pageMessage(html: string): string {
  const text = /role="alert">([^<]*)</.exec(html)?.[1] ?? /<h1>([^<]*)</.exec(html)?.[1] ?? html.slice(0, 200);
  return unescapeHtml(text.trim());
}
