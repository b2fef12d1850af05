import type { IncomingHttpHeaders } from 'node:http';

/**
 * True when an unauthenticated request may be answered with a redirect to the identity provider:
 * a top-level browser navigation (GET/HEAD, HTML accepted, not an API route, not XHR/fetch).
 * Everything else gets a 401, never a redirect.
 */
export function isBrowserNavigation(method: string | undefined, headers: IncomingHttpHeaders, isApiRoute: boolean): boolean {
  if (isApiRoute) return false;
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (!headers.accept?.includes('text/html')) return false;
  if (String(headers['x-requested-with']).toLowerCase() === 'xmlhttprequest') return false;
  const fetchMode = headers['sec-fetch-mode'];
  if (fetchMode !== undefined && fetchMode !== 'navigate') return false;
  return true;
}

/**
 * True for a request another site made the browser send (a link followed, an image, a form posted):
 * Fetch Metadata says so (a sibling subdomain counts as another site), or, from a browser without
 * it, an `Origin` or `Referer` of another origin. Requests typed in, bookmarked or sent by a program are not.
 */
export function isCrossSite(headers: IncomingHttpHeaders, ownOrigin: string): boolean {
  const site = headers['sec-fetch-site'];
  if (site !== undefined) return site === 'cross-site' || site === 'same-site';
  if (headers.origin !== undefined) return headers.origin !== ownOrigin;
  return headers.referer !== undefined && originOf(headers.referer) !== ownOrigin;
}

function originOf(url: string): string | undefined {
  return URL.parse(url)?.origin;
}
