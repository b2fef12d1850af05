import type { IncomingMessage, ServerResponse } from 'node:http';
import { renderPage, type PageContent } from './pages.js';

const NO_STORE = 'no-store';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': NO_STORE,
  });
  res.end(text);
}

export function sendHtml(res: ServerResponse, status: number, content: PageContent, headers: Record<string, string | string[]> = {}): void {
  const html = renderPage(content);
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': NO_STORE,
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
  });
  res.end(html);
}

export function redirect(res: ServerResponse, location: string, setCookies: string[] = []): void {
  const headers: Record<string, string | string[]> = { location, 'cache-control': NO_STORE, 'content-length': '0' };
  if (setCookies.length > 0) headers['set-cookie'] = setCookies;
  res.writeHead(302, headers);
  res.end();
}

/** The answer to a request without valid credentials that may not be redirected. */
export function sendUnauthorized(res: ServerResponse, realm: string): void {
  sendJson(
    res,
    401,
    { error: 'unauthorized', error_description: 'Authentication is required to access this resource.' },
    { 'www-authenticate': `Bearer realm="${realm}"` },
  );
}

/** True when the client prefers an HTML page to JSON. */
export function acceptsHtml(req: IncomingMessage): boolean {
  return req.headers.accept?.includes('text/html') ?? false;
}
